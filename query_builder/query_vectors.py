"""A request's text and photos -> its query vectors, through the one space (:class:`models.space.Space`).

The builder itself takes only vectors; this step computes them for callers that hold the
models (the CLI, tests, a backend running the encoders in-process). Photos are decoded by the
space, with the decoder product photos went through at ingest, so a transparent cut-out or a
phone photo with an EXIF rotation lands where its product does. What the space cannot compute
(a part that did not load) is left out, and the builder then skips the retrievers that need it.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

from .request import QueryVectors, RequestError, SearchRequest

__all__ = ["QueryImageError", "encode"]


class QueryImageError(RequestError):
    """A query photo cannot be decoded as an image."""


def _vec(x: Any) -> tuple[float, ...] | None:
    return None if x is None else tuple(float(v) for v in x)


def encode(request: SearchRequest, space: Any, ocr: Callable[[Any], str] | None = None) -> SearchRequest:
    """The request with its vectors (and photo categories / OCR text) filled in.

    Vectors the request already carries are kept; only missing ones are computed.
    """
    from models.images import ImageDecodeError

    have = request.vectors or QueryVectors()
    want_text = have.text is None and bool(request.text and request.text.strip())
    want_image = bool(request.images) and (have.image is None or have.image_feature is None
                                           or not request.image_categories or (ocr and not request.image_text))
    if not want_text and not want_image:
        return request
    try:
        emb = space.embed_query(text=request.text if want_text else None,
                                images=[im.data for im in request.images] if want_image else (),
                                names=[im.name or "query image" for im in request.images] if want_image else None)
    except ImageDecodeError as exc:
        raise QueryImageError(f"{exc.item} could not be decoded as an image: {exc.reason}") from None
    vectors = QueryVectors(text=have.text if have.text is not None else _vec(emb.text),
                           image=have.image if have.image is not None else _vec(emb.image),
                           image_feature=have.image_feature if have.image_feature is not None
                           else _vec(emb.image_feature))
    image_text = request.image_text
    if not image_text and ocr is not None and emb.decoded:
        image_text = " ".join(t for t in (ocr(im) for im in emb.decoded) if t)
    return replace(request, vectors=vectors if vectors else None,
                   image_categories=request.image_categories or emb.categories, image_text=image_text)
