"""The space that made an index, loaded for searching it: what a backend does at startup.

An index records the identity of the space that embedded its products (mapping ``_meta``).
A searcher must embed queries in that same space, so the heads are looked up by the digest
the index records (``<models>/heads/<digest>``, registered by ``cmsearch train``) and the
fusion weights are the ones the products were fused with.  Loading is lenient, as search is:
what cannot be loaded is listed in the space's ``problems`` and the searcher runs the
retrievers it can.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from opensearchpy.exceptions import AuthorizationException, NotFoundError

__all__ = ["recorded_space", "space_for_index"]


def recorded_space(client: Any, index: str) -> Any:
    """The :class:`models.identity.SpaceIdentity` ``index`` records; None when it records none;
    ``...`` when there is no such index, or this user may not read its mapping (the searcher then
    says so in its notes)."""
    from models.identity import SpaceIdentity

    try:
        mapping = client.indices.get_mapping(index=index)[index]["mappings"]
    except (NotFoundError, AuthorizationException):
        return ...
    try:
        return SpaceIdentity.from_mapping(mapping)
    except ValueError:
        return None


def space_for_index(client: Any, index: str, models_dir: str | Path | None = None, heads: str | Path | None = None,
                    *, threads: int | None = None) -> Any:
    """A :class:`models.space.Space` for searching ``index``: the heads and fusion weights it records.

    ``heads`` overrides the recorded heads (a directory, or ``"none"``).  Raises
    :class:`models.heads_registry.HeadsNotFound` when the recorded heads are not registered,
    and :class:`models.space.SpaceError` when the models cannot be read at all.
    """
    from models.heads_registry import resolve_heads
    from models.manifest import default_models_dir
    from models.space import Space

    mdir = Path(models_dir) if models_dir else default_models_dir()
    recorded = recorded_space(client, index)
    if recorded is ...:   # no such index: the searcher says so; the default space meanwhile
        return Space.load(mdir, resolve_heads(mdir, heads), strict=False, threads=threads)
    known = recorded is not None
    return Space.load(mdir, resolve_heads(mdir, heads, recorded), strict=False, threads=threads,
                      w_img=recorded.w_img if known else None, w_txt=recorded.w_txt if known else None)
