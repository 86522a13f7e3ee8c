"""A minimal reader of the ingest catalog format (JSONL), for training only.

Training needs far less than ingest does: an id, the text fields that describe a product, its
category path and its image files. Records that lack an id or title are skipped and counted,
not fatal: ingest is where every bad record gets reported with its line and reason, and the
pair-count refusal in :mod:`.pairs` catches a catalog that is mostly unusable.
Image URLs are kept as "unusable" (no network at training time) so the refusal message can
say why a catalog has no pairs.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

DEFAULT_TEXT_FIELDS = ("title", "brand", "category", "description")


@dataclass(frozen=True)
class TrainingProduct:
    """What training needs from one catalog record."""

    id: str
    title: str
    description: str = ""
    brand: str = ""
    category: tuple[str, ...] = ()
    images: tuple[str, ...] = ()          # absolute local paths
    skipped_images: tuple[str, ...] = ()  # URLs / missing files, with nothing to train on
    attributes: dict = field(default_factory=dict, compare=False, hash=False)

    def text(self, fields: Sequence[str] = DEFAULT_TEXT_FIELDS, max_chars: int = 1000) -> str:
        """The text side of the product's pairs: the chosen fields joined by '. '.

        The category path is written "A > B > C" as customers read it; empty fields are
        left out so a missing brand does not leave a stray separator.
        """
        parts = []
        for name in fields:
            if name == "category":
                value = " > ".join(self.category)
            elif name in ("title", "description", "brand"):
                value = getattr(self, name)
            else:  # any attribute, e.g. "title_zh"; lists are joined with commas
                value = self.attributes.get(name, "")
                if isinstance(value, (list, tuple)):
                    value = ", ".join(map(str, value))
            value = " ".join(str(value).split())
            if value:
                parts.append(value.rstrip("."))
        return ". ".join(parts)[:max_chars]


@dataclass
class CatalogReport:
    """Counts of what the reader had to leave out, for the refusal and summary messages."""

    records: int = 0
    skipped_records: list[str] = field(default_factory=list)
    image_urls: int = 0
    missing_images: int = 0


def category_path(value) -> tuple[str, ...]:
    """A category as a tuple of names: "A > B > C" or ["A", "B", "C"] both accepted."""
    if value is None:
        return ()
    if isinstance(value, str):
        parts = value.split(">")
    elif isinstance(value, (list, tuple)):
        parts = [str(v) for v in value]
    else:
        return ()
    return tuple(p.strip() for p in parts if p and p.strip())


def _resolve_images(values, base: Path, report: CatalogReport) -> tuple[list[str], list[str]]:
    if isinstance(values, str):
        values = [values]
    ok, skipped = [], []
    for v in values or []:
        if isinstance(v, dict):  # tolerate {"path": ...} / {"url": ...} objects
            v = v.get("path") or v.get("url") or ""
        v = str(v).strip()
        if not v:
            continue
        if "://" in v:
            report.image_urls += 1
            skipped.append(v)
            continue
        p = Path(v)
        p = p if p.is_absolute() else (base / p)
        if p.is_file():
            ok.append(str(p.resolve()))
        else:
            report.missing_images += 1
            skipped.append(str(p))
    return ok, skipped


def parse_record(rec: dict, base: Path, report: CatalogReport) -> TrainingProduct | None:
    """One JSON object -> TrainingProduct, or None (counted in the report) when unusable."""
    pid, title = rec.get("id"), rec.get("title")
    if pid is None or not isinstance(title, str) or not title.strip():
        report.skipped_records.append(f"record {report.records}: needs 'id' and 'title'")
        return None
    images, skipped = _resolve_images(rec.get("images") or rec.get("image"), base, report)
    attrs = rec.get("attributes") if isinstance(rec.get("attributes"), dict) else {}
    return TrainingProduct(
        id=str(pid), title=title.strip(),
        description=str(rec.get("description") or "").strip(),
        brand=str(rec.get("brand") or "").strip(),
        category=category_path(rec.get("category")),
        images=tuple(images), skipped_images=tuple(skipped), attributes=attrs)


def read_catalog(path: str | Path) -> tuple[list[TrainingProduct], CatalogReport]:
    """Read a JSONL catalog; relative image paths resolve against the catalog's folder."""
    path = Path(path)
    base = path.parent
    report = CatalogReport()
    products: list[TrainingProduct] = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            report.records += 1
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                report.skipped_records.append(f"line {lineno}: not JSON ({exc.msg})")
                continue
            if not isinstance(rec, dict):
                report.skipped_records.append(f"line {lineno}: not a JSON object")
                continue
            p = parse_record(rec, base, report)
            if p is not None:
                products.append(p)
    return products, report


def products_from_records(records: Iterable[dict], base: str | Path = ".") -> list[TrainingProduct]:
    """The same parsing for records already in memory (tests, benchmarks)."""
    report = CatalogReport()
    out = []
    for rec in records:
        report.records += 1
        p = parse_record(rec, Path(base), report)
        if p is not None:
            out.append(p)
    return out
