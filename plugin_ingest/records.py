"""One catalog record on its way through a load, and the read stage that makes batches of them.

An :class:`Item` carries a record from the catalog reader to its settlement: what was read,
the valid :class:`Product` (or why there is none), its enriched fields, content hash and
passage, its images once decoded, and the document or bulk operation it became.  Its
``status`` moves one way: pending -> write | unchanged | rejected, or straight to other (the
record belongs to another part of a partitioned load, :mod:`.parts`).

:func:`read_batches` is the first stage of a load (main thread): read, validate, reject
duplicates, enrich, and group the items into batches; :func:`mark_unchanged` then asks the
index which of a batch's products it already holds as they are.
"""
from __future__ import annotations

import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from opensearchpy import OpenSearch

from mappings import fields as F

from .bulk import BulkOp
from .catalog import Catalog, SourceRecord
from .enrich import ContentHash, Enricher
from .parts import Part
from .rejects import STAGE_READ, STAGE_VALIDATE
from .report import StageTimes
from .schema import K_ID, InvalidRecord, Limits, Product, product_id, validate
from .survey import Survey

__all__ = ["Item", "Batch", "ImageResult", "read_batches", "mark_unchanged", "raw_id", "PENDING", "WRITE", "UNCHANGED", "REJECTED",
           "OTHER"]

PENDING, WRITE, UNCHANGED, REJECTED, OTHER = "pending", "write", "unchanged", "rejected", "other"


@dataclass
class ImageResult:
    source: str
    pixels: np.ndarray | None = None
    ocr_text: str = ""
    error: str | None = None


@dataclass
class Item:
    rec: SourceRecord
    product: Product | None = None
    status: str = PENDING
    stage: str | None = None
    reason: str | None = None
    kind: str | None = None              # summary label of a rejection
    fields: dict[str, Any] | None = None
    chash: ContentHash | None = None
    passage: str = ""
    update_only: bool = False
    futures: list[Future] = field(default_factory=list)
    images_ok: list[ImageResult] = field(default_factory=list)
    image_problems: list[ImageResult] = field(default_factory=list)
    doc: dict[str, Any] | None = None
    op: BulkOp | None = None

    @property
    def pid(self) -> str | None:
        return self.product.id if self.product is not None else None

    def reject(self, stage: str, reason: str, kind: str) -> None:
        self.status, self.stage, self.reason, self.kind = REJECTED, stage, reason, kind
        self.futures = []
        self.images_ok = []


@dataclass
class Batch:
    items: list[Item]

    def to_encode(self) -> list[Item]:
        return [it for it in self.items if it.status == WRITE and not it.update_only]


def validation_kind(reason: str) -> str:
    return "missing id or title" if "(required)" in reason else "invalid value (type or limit)"


def read_kind(reason: str) -> str:
    if "UTF-8" in reason:
        return "invalid UTF-8"
    if reason.startswith("malformed CSV"):
        return "malformed CSV row"
    if reason.startswith("malformed JSON"):
        return "malformed JSON"
    return "unreadable record"


def raw_id(record: dict | None) -> str | None:
    """The id of a record that did not validate, when it has a usable one (for the rejects file)."""
    if not isinstance(record, dict):
        return None
    v = record.get(K_ID)
    return str(v) if isinstance(v, (str, int)) and not isinstance(v, bool) else None


def read_batches(catalog: Catalog, sv: Survey, enricher: Enricher, times: StageTimes, *, limits: Limits,
                 batch_size: int, batch_images: int, ocr: bool, offset: int = 0, line: int = 0,
                 part: Part | None = None) -> Iterator[Batch]:
    """Items from ``offset`` on, grouped so each batch has ``batch_size`` valid products or
    ``batch_images`` images.

    Counting images as well as products keeps memory flat on catalogs whose products carry
    dozens of photos (32 products x 33 photos once took 13 GB); a batch holds at most 8x
    ``batch_size`` items of this load in all, rejects included.  With ``part``, records of the
    other parts are neither validated nor kept: they pass through as bare positions (status
    other), so that they are settled in catalog order and the checkpoint can move past them.
    """
    csv_mode = catalog.fmt != "jsonl"
    items: list[Item] = []
    valid = images = own = 0
    records = catalog.records(offset, line)
    while True:
        t = time.perf_counter()
        rec = next(records, None)
        times.add("read", time.perf_counter() - t, 1 if rec is not None else 0)
        if rec is None:
            break
        if part is not None and not part.owns(product_id(rec.data, csv_mode=csv_mode, limits=limits)
                                              if rec.ok else None):
            items.append(Item(SourceRecord(rec.line, rec.end_offset, end_line=rec.end_line), status=OTHER))
            if len(items) - own >= 64 * batch_size:   # a part with few records of a long catalog
                yield Batch(items)
                items, valid, images, own = [], 0, 0, 0
            continue
        item = Item(rec)
        own += 1
        t = time.perf_counter()
        if not rec.ok:
            item.reject(STAGE_READ, rec.error, read_kind(rec.error))
        else:
            try:
                item.product = validate(rec.data, csv_mode=csv_mode, limits=limits)
            except InvalidRecord as exc:
                item.reject(STAGE_VALIDATE, str(exc), validation_kind(str(exc)))
            else:
                first = sv.duplicates.get(rec.line)
                if first is not None:
                    item.reject(STAGE_VALIDATE, f"duplicate id {item.product.id!r}: already on line {first}",
                                "duplicate id")
                else:
                    p = item.product
                    item.fields = enricher.fields(p)
                    item.passage = enricher.passage(p)
                    item.chash = enricher.content_hash(p, ocr=ocr)
                    item.status = WRITE
                    valid += 1
                    images += len(p.images)
        times.add("tokenize", time.perf_counter() - t, 1 if item.status == WRITE else 0)
        items.append(item)
        if valid >= batch_size or images >= batch_images or own >= 8 * batch_size:
            yield Batch(items)
            items, valid, images, own = [], 0, 0, 0
    if items:
        yield Batch(items)


def mark_unchanged(client: OpenSearch, index: str, batch: Batch, times: StageTimes) -> None:
    """Mark products whose stored content hash matches as unchanged (or as text-only changes)."""
    todo = [it for it in batch.items if it.status == WRITE]
    if not todo:
        return
    t = time.perf_counter()
    resp = client.mget(index=index, body={"ids": [it.pid for it in todo]}, _source_includes=[F.CONTENT_HASH])
    times.add("lookup", time.perf_counter() - t, len(todo))
    stored = {d["_id"]: ContentHash.parse((d.get("_source") or {}).get(F.CONTENT_HASH))
              for d in resp.get("docs", []) if d.get("found")}
    for it in todo:
        old = stored.get(it.pid)
        if old is None:
            continue
        if old == it.chash:
            it.status = UNCHANGED
        elif old.vectors == it.chash.vectors:
            it.update_only = True
