"""Settling: each record counted exactly once, and what the rejects file must say about it.

Settling happens in catalog order on the writer thread, after the bulk request that carried the
record's document answered: a document OpenSearch refused becomes a reject here, with its
reason; a product kept without some of its images gets ``"rejected": false`` entries.  That
single place is what makes ``read = indexed + rejected + unchanged`` hold (``+ other parts`` in a
load of one part: the records another part's load counts).
"""
from __future__ import annotations

from .bulk import BulkOutcome
from .documents import image_label
from .records import OTHER, REJECTED, UNCHANGED, WRITE, Item, raw_id
from .rejects import STAGE_IMAGE, STAGE_INDEX, STAGE_VALIDATE, RejectsWriter
from .report import Counts

__all__ = ["settle"]

MAX_LISTED_LEFT_OUT = 100   # images left out that one rejects entry names (the count is always exact)


def settle(it: Item, outcome: BulkOutcome | None, counts: Counts, rejects: RejectsWriter, *, max_images: int) -> None:
    """Count ``it`` and write its rejects entries; ``outcome`` is its bulk result (None: not sent)."""
    c = counts
    c.read += 1
    if it.status == OTHER:
        c.other_parts += 1
        return
    record = it.rec.data
    if it.status == WRITE and it.op is not None and outcome is not None and not outcome.ok:
        it.reject(STAGE_INDEX, f"OpenSearch refused the document (status {outcome.status}): {outcome.error}",
                  "refused by OpenSearch")
    if it.status == REJECTED:
        c.rejected += 1
        c.rejected_by[it.kind or it.stage] += 1
        rejects.write(line=it.rec.line, product_id=it.pid or raw_id(record), stage=it.stage, reason=it.reason,
                      record=record, raw=it.rec.raw, end_line=it.rec.end_line)
        return
    _left_out(it, counts, rejects, max_images)
    if it.status == UNCHANGED:
        c.unchanged += 1
        return
    c.indexed += 1
    if it.update_only:
        c.updated_text_only += 1
    c.images += len(it.images_ok)
    for r in it.image_problems:
        c.images_dropped += 1
        rejects.write(line=it.rec.line, product_id=it.pid, stage=STAGE_IMAGE, rejected=False,
                      reason=f"image left out, product indexed without it: {r.error}", image=r.source)


def _left_out(it: Item, counts: Counts, rejects: RejectsWriter, max_images: int) -> None:
    """Images past the per-product limit: the product is kept with the first ones, the rest named."""
    left = it.product.images_left_out if it.product is not None else ()
    if not left:
        return
    counts.images_dropped += len(left)
    shown = [image_label(s)[:300] for s in left[:MAX_LISTED_LEFT_OUT]]
    if len(left) > len(shown):
        shown.append(f"... and {len(left) - len(shown)} more")
    rejects.write(line=it.rec.line, product_id=it.pid, stage=STAGE_VALIDATE, rejected=False,
                  reason=f"{len(left)} image(s) left out, product indexed with its first {len(it.product.images)} "
                         f"(at most {max_images} images per product)",
                  images_left_out=shown)
