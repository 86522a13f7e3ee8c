"""Turning a request's text and photos into query vectors, through encoders given as protocols.

The builder itself only takes precomputed vectors; this step computes them for
callers that hold the models (the CLI, tests, a backend running the encoders
in-process).  It depends only on the shapes below, not on the model classes:

- ``text.encode([s], kind="query") -> ndarray (1, t)``: the query's text embedding (e5);
- ``project_text(vectors (n, t)) -> ndarray (n, d)``: text embeddings into the shared space
  (omit when the shared space is the text encoder's own, as ingest does without a text head);
- ``image.encode_many([PIL.Image, ...])``: raw backbone features, as an ``(n, f)`` array or an
  object with ``.features`` (and ``.errors`` for photos it could not read);
- ``project_image(features (n, f)) -> ndarray (n, d)``: features into the shared space;
- ``classify_image(features (n, f)) -> [[(category, probability), ...], ...]`` per image;
- ``ocr(PIL.Image) -> str``: text read off the photo (feeds brand recognition).

Every part is optional; what is missing is simply not computed (and the
builder then leaves out the retrievers that need it, with a note).
"""
from __future__ import annotations

import io
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import numpy as np

from .request import QueryImage, QueryVectors, RequestError, SearchRequest

__all__ = ["TextEncoderLike", "ImageEncoderLike", "Encoders", "QueryImageError", "decode_image", "encode",
           "encoders_from_dir"]


@runtime_checkable
class TextEncoderLike(Protocol):
    def encode(self, texts: Sequence[str], kind: str = "query") -> Any: ...


@runtime_checkable
class ImageEncoderLike(Protocol):
    def encode_many(self, images: Sequence[Any]) -> Any: ...


class QueryImageError(RequestError):
    """A query photo cannot be decoded as an image."""


@dataclass(frozen=True)
class Encoders:
    text: TextEncoderLike | None = None
    image: ImageEncoderLike | None = None
    project_image: Callable[[np.ndarray], Any] | None = None
    classify_image: Callable[[np.ndarray], Sequence[Sequence[tuple[str, float]]]] | None = None
    ocr: Callable[[Any], str] | None = None
    project_text: Callable[[np.ndarray], Any] | None = None
    problems: tuple[str, ...] = ()   # parts that could not be loaded, and why (for notes)


def decode_image(image: QueryImage) -> Any:
    """The photo as an RGB PIL image; anything PIL cannot read is a :class:`QueryImageError`."""
    from PIL import Image, UnidentifiedImageError

    label = image.name or "query image"
    try:
        with Image.open(io.BytesIO(image.data)) as im:
            im.load()
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise QueryImageError(f"{label} could not be decoded as an image ({len(image.data)} bytes): "
                              f"{exc}") from None
    except Image.DecompressionBombError as exc:
        raise QueryImageError(f"{label} is too large to decode: {exc}") from None


def _unit_mean(rows: np.ndarray) -> np.ndarray:
    """Mean of L2-normalized rows, renormalized: several photos of one product become one query."""
    rows = np.asarray(rows, dtype=np.float32)
    if rows.ndim == 1:
        rows = rows[None, :]
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    mean = (rows / norms).mean(axis=0)
    n = float(np.linalg.norm(mean))
    return mean / n if n > 0 else mean


def encode(request: SearchRequest, encoders: Encoders) -> SearchRequest:
    """The request with its vectors (and photo categories / OCR text) filled in.

    Vectors the request already carries are kept; only missing ones are computed.
    Photos are decoded first, so a broken upload fails before any model runs.
    """
    have = request.vectors or QueryVectors()
    text_vec = have.text
    image_vec = have.image
    feature = have.image_feature
    categories = request.image_categories
    image_text = request.image_text

    if text_vec is None and encoders.text is not None and request.text and request.text.strip():
        out = np.asarray(encoders.text.encode([request.text], kind="query"), dtype=np.float32)
        out = out.reshape(-1, out.shape[-1])[:1]
        if encoders.project_text is not None:
            out = np.asarray(encoders.project_text(out), dtype=np.float32)
        text_vec = tuple(float(x) for x in out[0])

    if request.images:
        pil = [decode_image(img) for img in request.images]
        feats = None
        if encoders.image is not None and (feature is None or image_vec is None or
                                           (not categories and encoders.classify_image is not None)):
            res = encoders.image.encode_many(pil)
            errors = getattr(res, "errors", None)
            if errors:
                err = errors[0]
                raise QueryImageError(f"query image could not be encoded: {getattr(err, 'reason', err)}")
            feats = np.asarray(getattr(res, "features", res), dtype=np.float32)
            if feats.ndim != 2 or feats.shape[0] != len(pil):
                raise ValueError(f"image encoder returned shape {feats.shape} for {len(pil)} images")
        if feats is not None:
            if feature is None:
                feature = tuple(float(x) for x in _unit_mean(feats))
            if image_vec is None and encoders.project_image is not None:
                image_vec = tuple(float(x) for x in _unit_mean(np.asarray(encoders.project_image(feats))))
            if not categories and encoders.classify_image is not None:
                per_image = encoders.classify_image(feats)
                summed: dict[str, float] = {}
                for preds in per_image:
                    for label, prob in preds:
                        summed[str(label)] = summed.get(str(label), 0.0) + float(prob) / len(pil)
                categories = tuple(sorted(summed.items(), key=lambda kv: (-kv[1], kv[0])))
        if not image_text and encoders.ocr is not None:
            image_text = " ".join(t for t in (encoders.ocr(im) for im in pil) if t)

    vectors = QueryVectors(text=text_vec, image=image_vec, image_feature=feature)
    return replace(request, vectors=vectors if vectors else None, image_categories=categories,
                   image_text=image_text)


def encoders_from_dir(models_dir: str | Path | None = None, heads_dir: str | Path | None = None, *,
                      threads: int | None = None, ocr: bool = False, classify_top: int = 5) -> Encoders:
    """The project's run-time models as :class:`Encoders`, each part only if it can be loaded.

    - text and image encoders from ``models_dir`` (default: ``$CMSEARCH_MODELS_DIR`` or
      ``~/.cache/cmsearch/models``), per its ``manifest.json``;
    - projection heads and the category classifier from ``heads_dir`` (default:
      ``<models_dir>/heads``), as trained by ``cmsearch train``;
    - OCR (rapidocr) when ``ocr`` is set and installed.

    What cannot be loaded is listed in ``problems``; the searcher then runs the retrievers it
    can (lexical always) and says which were skipped.
    """
    problems: list[str] = []
    try:
        from models.manifest import default_models_dir, load_manifest
    except ImportError as exc:  # pragma: no cover - models is part of this project
        return Encoders(problems=(f"models package unavailable: {exc}",))
    mdir = Path(models_dir) if models_dir else Path(default_models_dir())
    text = image = heads = None
    try:
        manifest = load_manifest(mdir)
    except Exception as exc:  # noqa: BLE001 - any reason a manifest is unusable is reported the same way
        manifest = None
        problems.append(f"no usable model manifest in {mdir}: {exc}")
    if manifest is not None:
        try:
            from models.text_encoder import TextEncoder
            text = TextEncoder(mdir, manifest["text"], threads=threads)
        except Exception as exc:  # noqa: BLE001
            problems.append(f"text encoder not loaded: {exc}")
        try:
            from models.image_encoder import ImageEncoder
            image = ImageEncoder(mdir, manifest["image"], threads=threads)
        except Exception as exc:  # noqa: BLE001
            problems.append(f"image encoder not loaded: {exc}")
    try:
        from models.heads import Heads
        heads = Heads.load(Path(heads_dir) if heads_dir else mdir / "heads", threads=threads or 1)
    except Exception as exc:  # noqa: BLE001
        problems.append(f"projection heads not loaded (no text->image or image->text search): {exc}")
    reader = None
    if ocr:
        try:
            from plugin_ingest.encode import OcrReader
            reader = OcrReader(threads=threads or 1).read
        except Exception as exc:  # noqa: BLE001
            problems.append(f"OCR not available: {exc}")
    project_text = None
    classify = None
    if heads is not None:
        if not heads.text_head_is_identity:
            project_text = heads.project_text
        if heads.has_classifier:
            def classify(features, _h=heads, _k=classify_top):
                return _h.classify(features, k=_k)
    return Encoders(text=text, image=image, project_image=heads.project_image if heads is not None else None,
                    classify_image=classify, ocr=reader, project_text=project_text, problems=tuple(problems))
