"""Run-time alignment heads: project backbone outputs into the shared text-image space.

Ingest and the query builder use this with onnxruntime and numpy only (no torch). The heads
directory is written by ``cmsearch train`` (:mod:`models.training.export`) and holds a manifest
plus one small ONNX graph per head:

- image_head.onnx : raw image feature [n, 1280] -> shared vector [n, D], unit length
- text_head.onnx  : e5 text vector  [n, 384]  -> shared vector [n, D]; absent when the text
                    head is the identity (the shared space is then e5's own text space, so
                    text->text search keeps e5's multilingual quality)
- classifier.onnx : raw image feature -> probabilities over the catalog's category paths

File hashes in the manifest are checked on load so that a half-copied or mixed-up directory
fails loudly instead of returning vectors from the wrong space.

Example::

    heads = Heads.load(default_heads_dir())
    img = heads.project_image(image_encoder.encode(photos))            # [n, D]
    txt = heads.project_text(text_encoder.encode(titles, kind="passage"))
    doc_vec = heads.fuse(img, txt, w_img=0.5, w_txt=0.5)
    heads.classify(image_features, k=3)          # [[("Fruit > Apple > Pink Lady", 0.81), ...]]
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
from .manifest import sha256_file

MANIFEST = "manifest.json"
FORMAT = "cmsearch-heads"


class HeadsError(RuntimeError):
    """The heads directory is missing, incomplete, or does not match its manifest."""


def default_heads_dir() -> Path:
    """<models dir>/heads, where the models dir is CMSEARCH_MODELS_DIR or ~/.cache/cmsearch/models."""
    try:
        from models.manifest import default_models_dir
        base = Path(default_models_dir())
    except ImportError:  # the encoders' module is optional for the heads themselves
        base = Path(os.environ.get("CMSEARCH_MODELS_DIR") or Path.home() / ".cache" / "cmsearch" / "models")
    return base / "heads"


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)




def _as_2d(x, dim: int, what: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float32)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or a.shape[1] != dim:
        raise ValueError(f"{what} must be [n, {dim}], got shape {tuple(np.shape(x))}")
    return a


class _Graph:
    """One ONNX graph with one input and one output."""

    def __init__(self, path: Path, threads: int):
        from .runtime import onnx_session

        self.session = onnx_session(path, threads)
        self.input = self.session.get_inputs()[0].name
        self.output = self.session.get_outputs()[0].name

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if len(x) == 0:
            dim = self.session.get_outputs()[0].shape[-1]
            return np.zeros((0, int(dim)), dtype=np.float32)
        return self.session.run([self.output], {self.input: np.ascontiguousarray(x, dtype=np.float32)})[0]


class Heads:
    """The trained heads of one catalog, loaded from a heads directory."""

    def __init__(self, directory: Path, manifest: dict, image_head: _Graph, text_head: _Graph | None,
                 classifier: _Graph | None):
        self.directory = directory
        self.manifest = manifest
        self._image = image_head
        self._text = text_head
        self._classifier = classifier
        spaces = manifest["spaces"]
        self.dim = int(spaces["shared"]["dim"])
        self.image_feature_dim = int(spaces["image_feature"]["dim"])
        self.text_dim = int(manifest["text_head"]["in_dim"])
        cls = manifest.get("classifier") or {}
        self.categories: list[str] = list(cls.get("categories", []))
        self._sep = cls.get("separator", " > ")

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, directory: str | Path | None = None, *, threads: int = 1, verify: bool = True) -> "Heads":
        """Open a heads directory (default :func:`default_heads_dir`); checks file hashes."""
        d = Path(directory) if directory is not None else default_heads_dir()
        mpath = d / MANIFEST
        if not mpath.is_file():
            raise HeadsError(f"no heads at {d} (missing {MANIFEST}); run `cmsearch train CATALOG` first")
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
        if manifest.get("format") != FORMAT:
            raise HeadsError(f"{mpath} is not a heads manifest (format={manifest.get('format')!r})")
        for fname, sha in (manifest.get("files") or {}).items():
            f = d / fname
            if not f.is_file():
                raise HeadsError(f"{f} is listed in the manifest but missing")
            if verify and sha256_file(f) != sha:
                raise HeadsError(f"{f} does not match the sha256 in {mpath}; retrain or recopy the directory")
        image = _Graph(d / manifest["image_head"]["file"], threads)
        tfile = manifest["text_head"].get("file")
        text = _Graph(d / tfile, threads) if tfile else None
        cinfo = manifest.get("classifier")
        classifier = _Graph(d / cinfo["file"], threads) if cinfo else None
        return cls(d, manifest, image, text, classifier)

    # ------------------------------------------------------------------ projections
    @property
    def text_head_is_identity(self) -> bool:
        return self._text is None

    def project_image(self, features) -> np.ndarray:
        """Raw image features [n, F] -> unit vectors [n, D] in the shared space."""
        return _unit(self._image(_as_2d(features, self.image_feature_dim, "image features")))

    def project_text(self, vectors) -> np.ndarray:
        """Text-encoder vectors [n, T] -> unit vectors [n, D] (identity + renormalise if fixed)."""
        x = _as_2d(vectors, self.text_dim, "text vectors")
        return _unit(x if self._text is None else self._text(x))

    def fuse(self, image_vecs, text_vecs, w_img: float = 0.5, w_txt: float = 0.5) -> np.ndarray:
        """Product vector: normalize(w_img * image + w_txt * text), both already in the shared space.

        A product without an image passes a zero row and gets its text vector back (and the
        other way round). For several images, pass their mean (it is renormalised here).
        """
        img = _as_2d(image_vecs, self.dim, "image vectors")
        txt = _as_2d(text_vecs, self.dim, "text vectors")
        if img.shape[0] != txt.shape[0]:
            raise ValueError(f"{img.shape[0]} image rows but {txt.shape[0]} text rows")
        return _unit(float(w_img) * _unit(img) + float(w_txt) * _unit(txt))  # zero rows stay zero

    # ------------------------------------------------------------------ categories
    @property
    def has_classifier(self) -> bool:
        return self._classifier is not None

    def category_probs(self, features, level: str | int = "leaf") -> tuple[list[str], np.ndarray]:
        """(category names, probabilities [n, C]) at a level: "leaf", "top", or depth 1, 2, ...

        Coarser levels sum the leaf probabilities of each ancestor, so all levels come from one
        classifier and agree with each other.
        """
        if self._classifier is None:
            raise HeadsError("these heads have no category classifier (the catalog had no categories)")
        probs = self._classifier(_as_2d(features, self.image_feature_dim, "image features"))
        if level == "leaf":
            return list(self.categories), probs
        depth = 1 if level == "top" else int(level)
        if depth < 1:
            raise ValueError(f"level must be 'leaf', 'top' or a depth >= 1, not {level!r}")
        names: list[str] = []
        index: dict[str, int] = {}
        cols = []
        for path in self.categories:
            anc = self._sep.join(path.split(self._sep)[:depth])
            if anc not in index:
                index[anc] = len(names)
                names.append(anc)
            cols.append(index[anc])
        agg = np.zeros((probs.shape[0], len(names)), dtype=np.float32)
        np.add.at(agg.T, np.asarray(cols), probs.T)
        return names, agg

    def classify(self, features, k: int = 5, level: str | int = "leaf") -> list[list[tuple[str, float]]]:
        """Top-k (category path, probability) per image, most probable first."""
        names, probs = self.category_probs(features, level)
        k = max(1, min(int(k), len(names)))
        out = []
        for row in probs:
            top = np.argsort(-row, kind="stable")[:k]
            out.append([(names[i], float(row[i])) for i in top])
        return out

    def __repr__(self) -> str:
        return (f"Heads({str(self.directory)!r}, dim={self.dim}, image_head={self.manifest['image_head']['kind']}, "
                f"text_head={self.manifest['text_head']['kind']}, categories={len(self.categories)})")


__all__: Sequence[str] = ("Heads", "HeadsError", "default_heads_dir")
