"""Document assembly: one product's fields and vectors -> the index document, and its bulk body.

Pure: no models, no cluster, no threads.  The load computes the vectors (text, per-image
shared-space vectors and raw features, the fused product vector, a predicted category) and
hands them here as plain arrays; what the index stores, and in which field, is decided only
here (field names from :mod:`mappings.fields`).

Vectors are stored rounded to ``decimals`` places: they are unit length, a difference of 1e-6
is far below anything ranking sees, and shorter numbers make smaller bulk requests.
"""
from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

import numpy as np

from engine.urls import redact_urls
from mappings import fields as F

from .fetch import source_kind

__all__ = ["product_document", "update_document", "serialize", "image_label", "short_source",
           "MAX_STORED_DATA_URI"]

MAX_STORED_DATA_URI = 64 * 1024


def image_label(source: str) -> str:
    """What ``images.url`` stores: the source, except that big data: URIs are not copied into the
    index and credentials in a URL (``https://user:pass@host/...``) never reach search results."""
    kind = source_kind(source)
    if kind == "data" and len(source) > MAX_STORED_DATA_URI:
        return source.split(",", 1)[0] + f",... ({len(source)} characters, not stored)"
    return redact_urls(source)


def short_source(source: str) -> str:
    """An image source short enough for a message."""
    return source if len(source) <= 120 else source[:100] + "..."


def _vector(v: Any, decimals: int) -> list[float]:
    return np.round(np.asarray(v, dtype=np.float64), decimals).tolist()


def product_document(fields: Mapping[str, Any], *, text_vector: Any, fused_vector: Any,
                     image_sources: Sequence[str] = (), image_features: Any = None, image_vectors: Any = None,
                     predicted_category: str | None = None, ocr_text: str = "", content_hash: str,
                     decimals: int = 6, keep_features: bool = True) -> dict[str, Any]:
    """The full index document of one product.

    ``fields`` are the enriched text and facet fields (:meth:`Enricher.fields`);
    ``image_sources`` the images that were encoded, in order, with one row each of
    ``image_features`` (raw backbone features) and, with heads, of ``image_vectors`` (shared
    space); ``ocr_text`` is already tokenized for the OCR field.  ``keep_features`` False: the
    index was created without raw image features (:class:`mappings.VectorOptions`), whose strict
    mapping would refuse them.
    """
    doc = dict(fields)
    doc[F.TEXT_VECTOR] = _vector(text_vector, decimals)
    doc[F.FUSED_VECTOR] = _vector(fused_vector, decimals)
    if len(image_sources):
        if image_features is None or len(image_features) != len(image_sources):
            raise ValueError("one feature row per image is needed")
        if image_vectors is not None and len(image_vectors) != len(image_sources):
            raise ValueError("one image vector per image is needed")
        images = []
        for n, source in enumerate(image_sources):
            entry: dict[str, Any] = {F.IMAGE_URL: image_label(source)}
            if keep_features:
                entry[F.IMAGE_FEATURE] = _vector(image_features[n], decimals)
            if image_vectors is not None:
                entry[F.IMAGE_VECTOR] = _vector(image_vectors[n], decimals)
            images.append(entry)
        doc[F.IMAGES] = images
        doc[F.IMAGE_URLS] = [im[F.IMAGE_URL] for im in images]
        if predicted_category is not None:
            doc[F.PREDICTED_CATEGORY] = predicted_category
    if ocr_text:
        doc[F.OCR_TEXT] = ocr_text
    doc[F.CONTENT_HASH] = content_hash
    return doc


def update_document(fields: Mapping[str, Any], content_hash: str) -> dict[str, Any]:
    """The partial update of a product whose vectors are unchanged (only text and facets moved)."""
    return {"doc": {**fields, F.CONTENT_HASH: content_hash}}


def serialize(doc: Mapping[str, Any]) -> str:
    """The bulk body of one document: compact JSON, non-ASCII kept (half the bytes for Chinese)."""
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
