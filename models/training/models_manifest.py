"""Record trained heads in the models manifest, so ingest and queries find and trust them.

The models manifest (``<models dir>/manifest.json``) has a ``heads`` slot for this. When the
heads are written inside the models directory, their entry names the folder and the sha256 of
the heads manifest, and ``spaces.shared`` is set to the heads' shared space: with a trained text
head that space is no longer the e5 space, and ``cmsearch index create`` takes the index's vector
dims from ``spaces.shared``. Heads written elsewhere (experiments) leave the manifest untouched.
"""
from __future__ import annotations

from pathlib import Path

from ..manifest import sha256_file
from .export import MANIFEST


def record_heads(models_dir: str | Path, heads_dir: str | Path, heads_manifest: dict) -> Path | None:
    """Update <models_dir>/manifest.json; returns its path, or None when heads_dir is outside."""
    from models.manifest import load_manifest, write_manifest

    models_dir, heads_dir = Path(models_dir).resolve(), Path(heads_dir).resolve()
    try:
        rel = heads_dir.relative_to(models_dir)
    except ValueError:
        return None
    manifest = load_manifest(models_dir)
    manifest["heads"] = {
        "dir": str(rel),
        "manifest": str(rel / MANIFEST),
        "manifest_sha256": sha256_file(heads_dir / MANIFEST),
        "image_head": heads_manifest["image_head"]["kind"],
        "text_head": heads_manifest["text_head"]["kind"],
        "dim": heads_manifest["spaces"]["shared"]["dim"],
        "categories": len((heads_manifest.get("classifier") or {}).get("categories", [])),
        "created": heads_manifest.get("created"),
    }
    shared = dict(heads_manifest["spaces"]["shared"])
    shared["note"] = shared.pop("what", "shared text-image space of the trained heads")
    manifest["spaces"]["shared"] = shared
    return write_manifest(models_dir, manifest)
