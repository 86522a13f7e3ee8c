"""Heads kept under the models directory by identity, so an index's heads can be found from the index.

``cmsearch train`` writes its heads where ``--out`` says (default ``<models>/heads``) and also
registers a copy at ``<models>/heads/<heads digest>/``. An index records the digest of the heads
that made it (:class:`models.identity.SpaceIdentity`), so search, eval and tune find those heads
by themselves instead of trusting a ``--heads`` flag that has to be repeated on every command.

One rule reads ``--heads`` for every command (:func:`resolve_heads`): ``"none"`` means no heads,
anything else is a directory, and no value means "the heads the index records" when there is
an index to ask, else ``<models>/heads`` when it holds heads.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .identity import SpaceIdentity, heads_digest

__all__ = ["HeadsNotFound", "NO_HEADS", "register_heads", "find_heads", "resolve_heads", "heads_dir_digest"]

NO_HEADS = "none"
_MANIFEST = "manifest.json"
_UNSET: Any = object()


class HeadsNotFound(RuntimeError):
    """The heads an index was made with are not in the registry (and none were named)."""


def registry_dir(models_dir: str | Path) -> Path:
    return Path(models_dir) / "heads"


def heads_dir_digest(heads_dir: str | Path) -> str | None:
    """The digest of the heads in ``heads_dir``; None when it holds no readable heads manifest."""
    try:
        return heads_digest(json.loads((Path(heads_dir) / _MANIFEST).read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None


def register_heads(models_dir: str | Path, heads_dir: str | Path) -> Path:
    """Copy ``heads_dir`` to ``<models>/heads/<digest>/`` (once; atomic) and return that folder."""
    digest = heads_dir_digest(heads_dir)
    if digest is None:
        raise HeadsNotFound(f"no heads manifest in {heads_dir}")
    target = registry_dir(models_dir) / digest
    if heads_dir_digest(target) == digest:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{digest}-", dir=target.parent))
    try:
        for f in Path(heads_dir).iterdir():
            if f.is_file():
                shutil.copy2(f, tmp / f.name)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def find_heads(models_dir: str | Path, digest: str) -> Path | None:
    """The registered heads of this digest (or ``<models>/heads`` itself when it holds them)."""
    for d in (registry_dir(models_dir) / digest, registry_dir(models_dir)):
        if heads_dir_digest(d) == digest:
            return d
    return None


def resolve_heads(models_dir: str | Path, value: str | Path | None, recorded: SpaceIdentity | None = _UNSET
                  ) -> Path | None:
    """The heads directory a command should load (None: no heads).

    ``value`` is the ``--heads`` option. ``recorded`` is the identity the target index records
    (None: it records none); leave it out when there is no index to ask (training, creating).
    """
    if value is not None and str(value).strip().lower() == NO_HEADS:
        return None
    if value is not None:
        return Path(value)
    if recorded is _UNSET or recorded is None:
        default = registry_dir(models_dir)
        return default if (default / _MANIFEST).is_file() else None
    if recorded.heads is None:
        return None
    found = find_heads(models_dir, recorded.heads)
    if found is None:
        raise HeadsNotFound(
            f"the index was made with heads {recorded.heads}, which are not in {registry_dir(models_dir)}/"
            f"{recorded.heads} (`cmsearch train` registers them there); pass --heads DIR with those heads")
    return found
