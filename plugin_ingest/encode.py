"""The encoders as ingest uses them: one batch of passages and decoded images in, document vectors out.

:class:`ModelEncoders` wraps the run-time models (``models.text_encoder``,
``models.image_encoder``) and, when present, the trained heads (``models.heads``):

- with heads: ``text_vector`` = project_text(e5 passage vector), ``images.vector`` =
  project_image(feature), ``fused_vector`` = normalize(w_img * mean image vector + w_txt *
  text vector), ``predicted_category`` from the heads' classifier;
- without heads (the shared space is then e5's own text space): ``text_vector`` = the e5
  vector, only the raw ``images.feature`` per image (no ``images.vector``: there is no way
  into the shared space), ``fused_vector`` = the text vector.

Decoding and preprocessing (:meth:`prepare_image`) are separate from :meth:`encode_batch`
so the pipeline can run them in worker threads while the previous batch is being encoded;
onnxruntime releases the GIL, so the two really overlap.

:attr:`identity` names everything that determines the vectors (model files, heads files,
fusion weights, the passage format); it goes into each document's content hash, so a reload
after rebuilding the models or retraining the heads re-encodes every product.
"""
from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mappings import VectorDims
from mappings import fields as F

__all__ = ["ModelEncoders", "BatchVectors", "OcrReader", "EncoderSetupError", "unit", "resolve_heads_dir"]

PASSAGE_FORMAT = "passage-1"


class EncoderSetupError(RuntimeError):
    """The models or heads cannot be loaded for ingest."""


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


@dataclass
class BatchVectors:
    """Vectors of one batch: ``text[i]`` per passage, ``features[j]`` (and ``image_vectors[j]``) per image."""

    text: np.ndarray                      # [n, shared]
    features: np.ndarray                  # [m, image_feature], unit length
    image_vectors: np.ndarray | None      # [m, shared] (heads only)
    image_categories: list[tuple[str, float]] | None  # top-1 per image (heads with a classifier)


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:24]


def resolve_heads_dir(models_dir: Path, heads: str | Path | None) -> Path | None:
    """``--heads``: an explicit directory, ``"none"`` for no heads, or by default ``<models>/heads``
    when it holds a manifest."""
    if heads is not None and str(heads).lower() == "none":
        return None
    if heads is not None:
        return Path(heads)
    default = models_dir / "heads"
    return default if (default / "manifest.json").is_file() else None


class ModelEncoders:
    """The text encoder, the image encoder and optional heads, used together."""

    def __init__(self, text_encoder: Any, image_encoder: Any, heads: Any | None, models_manifest: dict, *,
                 w_img: float | None = None, w_txt: float | None = None) -> None:
        self.text = text_encoder
        self.image = image_encoder
        self.heads = heads
        self.models_manifest = models_manifest
        fusion = (heads.manifest.get("fusion") or {}) if heads is not None else {}
        self.w_img = float(w_img if w_img is not None else fusion.get("w_img", 0.5))
        self.w_txt = float(w_txt if w_txt is not None else fusion.get("w_txt", 0.5))
        if self.w_img < 0 or self.w_txt < 0 or self.w_img + self.w_txt <= 0:
            raise EncoderSetupError(f"fusion weights must be >= 0 and not both 0 (got {self.w_img}, {self.w_txt})")
        self.dims = VectorDims.from_manifest(heads.manifest if heads is not None else models_manifest)
        text_dim = int(getattr(text_encoder, "dim", models_manifest["text"]["dim"]))
        if heads is None and self.dims.shared != text_dim:
            raise EncoderSetupError(
                f"the model manifest's shared space is {self.dims.shared}-d but the text encoder gives "
                f"{text_dim}-d vectors; this model set needs its heads (pass --heads)")
        from models.manifest import manifest_files

        files = sorted(manifest_files({k: v for k, v in models_manifest.items() if k != "heads"}))
        heads_files = sorted((heads.manifest.get("files") or {}).items()) if heads is not None else None
        self.identity = _digest({"models": files, "heads": heads_files, "w": [self.w_img, self.w_txt],
                                 "passage": PASSAGE_FORMAT,
                                 "text_variant": getattr(text_encoder, "variant", None),
                                 "image_variant": getattr(image_encoder, "variant", None)})

    @classmethod
    def load(cls, models_dir: str | Path | None = None, heads_dir: str | Path | None = None, *,
             threads: int | None = None, w_img: float | None = None, w_txt: float | None = None) -> "ModelEncoders":
        """Open the models of ``models_dir`` (default: the user's models dir) and the heads.

        ``heads_dir``: see :func:`resolve_heads_dir`.
        """
        from models.image_encoder import ImageEncoder
        from models.manifest import ManifestError, default_models_dir, load_manifest
        from models.text_encoder import TextEncoder

        mdir = Path(models_dir) if models_dir else default_models_dir()
        try:
            manifest = load_manifest(mdir)
        except ManifestError as exc:
            raise EncoderSetupError(str(exc)) from None
        hdir = resolve_heads_dir(mdir, heads_dir)
        heads = None
        if hdir is not None:
            from models.heads import Heads, HeadsError
            try:
                heads = Heads.load(hdir, threads=1)
            except HeadsError as exc:
                raise EncoderSetupError(str(exc)) from None
        try:
            text = TextEncoder.from_dir(mdir, threads=threads)
            image = ImageEncoder.from_dir(mdir, threads=threads)
        except (OSError, KeyError, ValueError, RuntimeError) as exc:
            raise EncoderSetupError(f"cannot load the encoders from {mdir}: {exc}") from None
        return cls(text, image, heads, manifest, w_img=w_img, w_txt=w_txt)

    @property
    def has_heads(self) -> bool:
        return self.heads is not None

    def describe(self) -> str:
        h = f"heads {self.heads.directory}" if self.heads is not None else "no heads (text space only)"
        return (f"shared {self.dims.shared}-d, image features {self.dims.image_feature}-d, {h}, "
                f"fusion w_img={self.w_img:g} w_txt={self.w_txt:g}")

    # -- per image, in worker threads ------------------------------------------------------
    def prepare_image(self, img: Any) -> np.ndarray:
        """Decoded RGB image -> the image network's input array."""
        return self.image.preprocess(img)

    # -- per batch ------------------------------------------------------------------------
    def encode_batch(self, passages: Sequence[str], pixels: Sequence[np.ndarray]) -> BatchVectors:
        if passages:
            e5 = self.text.encode(list(passages), kind="passage", batch_size=max(1, len(passages)))
            text = self.heads.project_text(e5) if self.heads is not None else unit(e5)
        else:
            text = np.zeros((0, self.dims.shared), np.float32)
        image_vectors = None
        categories = None
        if len(pixels):
            feats, _ = self.image.encode_arrays(np.stack(pixels))
            feats = unit(feats)
            if self.heads is not None:
                image_vectors = self.heads.project_image(feats)
                if self.heads.has_classifier:
                    categories = [top[0] for top in self.heads.classify(feats, k=1)]
        else:
            feats = np.zeros((0, self.dims.image_feature), np.float32)
            if self.heads is not None:
                image_vectors = np.zeros((0, self.dims.shared), np.float32)
        return BatchVectors(text=text, features=feats, image_vectors=image_vectors, image_categories=categories)

    def fuse(self, text_vec: np.ndarray, image_vecs: np.ndarray | None) -> np.ndarray:
        """The product vector: text and the mean of its image vectors, weighted, renormalized."""
        if self.heads is None or image_vecs is None or len(image_vecs) == 0:
            return unit(text_vec)
        mean = unit(unit(image_vecs).mean(axis=0))
        return self.heads.fuse(mean[None, :], text_vec[None, :], self.w_img, self.w_txt)[0]

    def category_label(self, path: str) -> str:
        """A classifier label ("A > B") written as the index writes category paths ("A>B")."""
        sep = ((self.heads.manifest.get("classifier") or {}).get("separator") if self.heads is not None else None) \
            or " > "
        return F.SEP.join(p.strip() for p in path.split(sep.strip()) if p.strip())


class OcrReader:
    """Text read off product photos with rapidocr (PP-OCR, ONNX, bundled models).

    Loaded on first use (about a second); onnxruntime sessions are safe to call from several
    threads.  :attr:`seconds` and :attr:`images` give the cost per image for the summary.
    """

    def __init__(self, threads: int = 1, min_score: float = 0.5) -> None:
        self.threads = threads
        self.min_score = min_score
        self._engine = None
        self._lock = threading.Lock()

    def _get(self):
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    import logging

                    from rapidocr import RapidOCR

                    self._engine = RapidOCR(params={
                        "Global.log_level": "error",
                        "EngineConfig.onnxruntime.intra_op_num_threads": self.threads,
                        "EngineConfig.onnxruntime.inter_op_num_threads": 1,
                    })
                    logging.getLogger("RapidOCR").setLevel(logging.ERROR)
        return self._engine

    @property
    def identity(self) -> str:
        try:
            from importlib.metadata import version
            return f"rapidocr-{version('rapidocr')}"
        except Exception:  # noqa: BLE001 - a missing dist-info is not a reason to fail
            return "rapidocr"

    def read(self, img: Any) -> str:
        """The photo's text lines joined by spaces (lines below ``min_score`` dropped)."""
        res = self._get()(img)
        txts = getattr(res, "txts", None) or ()
        scores = getattr(res, "scores", None) or ()
        lines = [t for t, s in zip(txts, scores) if t and (s is None or s >= self.min_score)]
        return " ".join(lines)
