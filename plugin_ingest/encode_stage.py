"""The encoder stage of a load: one batch's images settled, its products embedded, their documents built.

Embedding is the expensive step of a load, so the ingestor runs it on a thread of its own, a
whole batch per call (one batched run of each encoder).  A product whose images failed is
rejected here when the load says so (``image_errors="reject"``), else written with the images
that worked and a content hash marked incomplete, so that a later load retries its images.
A batch's pixels are dropped once it is encoded, which keeps a load's memory flat.
"""
from __future__ import annotations

import time
from typing import Any

from .documents import product_document, short_source
from .enrich import Enricher
from .records import WRITE, Batch
from .rejects import STAGE_IMAGE
from .report import StageTimes

__all__ = ["encode_batch"]


def encode_batch(batch: Batch, space: Any, enricher: Enricher, times: StageTimes, *, image_errors: str,
                 dry_run: bool, decimals: int, keep_features: bool) -> None:
    """Give every product of ``batch`` still to be written its document (``item.doc``), or a reject.

    ``space``: a :class:`models.space.Space` (its ``embed_products`` and ``category_label``); not
    used on a dry run, which only settles the images."""
    todo = batch.to_encode()
    for it in todo:
        results = [f.result() for f in it.futures]
        it.futures = []
        bad = [r for r in results if r.error]
        if bad and image_errors == "reject":
            reason = "; ".join(f"image {short_source(r.source)}: {r.error}" for r in bad)
            it.reject(STAGE_IMAGE, reason, "image unreadable or missing")
            continue
        it.images_ok = [r for r in results if not r.error]
        it.image_problems = bad
    todo = [it for it in todo if it.status == WRITE]
    if dry_run or not todo:
        for it in todo:
            for r in it.images_ok:
                r.pixels = None
        return
    t = time.perf_counter()
    vecs = space.embed_products([it.passage for it in todo], [[r.pixels for r in it.images_ok] for it in todo])
    times.add("encode", time.perf_counter() - t, len(todo))
    for i, it in enumerate(todo):
        k = len(it.images_ok)
        img_vecs = vecs.image_vectors[i] if vecs.image_vectors is not None else None
        category = space.category_label(vecs.categories[i][0]) if k and vecs.categories[i] is not None else None
        ocr_text = " ".join(r.ocr_text for r in it.images_ok if r.ocr_text)
        chash = it.chash.incomplete() if it.image_problems else it.chash
        it.doc = product_document(
            it.fields, text_vector=vecs.text[i], fused_vector=vecs.fused[i],
            image_sources=[r.source for r in it.images_ok], image_features=vecs.features[i],
            image_vectors=img_vecs, predicted_category=category,
            ocr_text=enricher.tokenizer.field_text(ocr_text) if ocr_text else "",
            content_hash=str(chash), decimals=decimals, keep_features=keep_features)
        for r in it.images_ok:
            r.pixels = None
