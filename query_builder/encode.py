"""Turning a request's text and photos into query vectors, through encoders given as protocols.

The builder itself only takes precomputed vectors; this step computes them for
callers that hold the models (the CLI, tests, a backend running the encoders
in-process).  It depends only on the shapes below, not on the model classes:

- ``text.encode([s], kind="query") -> ndarray (1, d)``: the query text in the shared space;
- ``image.encode_many([PIL.Image, ...]) -> ndarray (n, f)``: raw backbone features;
- ``project_image(features (n, f)) -> ndarray (n, d)``: features into the shared space;
- ``classify_image(features (n, f)) -> [[(category, probability), ...], ...]`` per image;
- ``ocr(PIL.Image) -> str``: text read off the photo (feeds brand recognition).

Every part is optional; what is missing is simply not computed (and the
builder then leaves out the retrievers that need it, with a note).
"""
from __future__ import annotations

import io
from dataclasses import dataclass, replace
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import numpy as np

from .request import QueryImage, QueryVectors, RequestError, SearchRequest

__all__ = ["TextEncoderLike", "ImageEncoderLike", "Encoders", "QueryImageError", "decode_image", "encode"]


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
        text_vec = tuple(float(x) for x in out.reshape(-1, out.shape[-1])[0])

    if request.images:
        pil = [decode_image(img) for img in request.images]
        feats = None
        if encoders.image is not None and (feature is None or image_vec is None or
                                           (not categories and encoders.classify_image is not None)):
            feats = np.asarray(encoders.image.encode_many(pil), dtype=np.float32)
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
