"""Text and image encoders: build-time export to ONNX (``models.export``, needs torch) and
run-time encoders (onnxruntime only).

Importing this package, or any run-time module in it, never imports torch: ingest and the
query builder run on machines that only have onnxruntime. The names below are loaded lazily
so ``import models`` stays cheap::

    from models import ImageEncoder, TextEncoder, load_manifest, default_models_dir
    d = default_models_dir()               # $CMSEARCH_MODELS_DIR or ~/.cache/cmsearch/models
    img = ImageEncoder.from_dir(d).encode(["photo.jpg"])          # [1, 1280]
    txt = TextEncoder.from_dir(d).encode(["酸奶"], kind="query")   # [1, 384]
"""
from __future__ import annotations

import importlib

_LAZY = {
    "ImageEncoder": "image_encoder", "EncodeResult": "image_encoder", "preprocess": "image_encoder",
    "ImageDecodeError": "images", "load_image": "images",
    "ManifestError": "manifest", "load_manifest": "manifest", "default_models_dir": "manifest",
    "write_manifest": "manifest",
    "TextEncoder": "text_encoder",
    "build_models": "build",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
