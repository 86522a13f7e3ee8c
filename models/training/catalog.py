"""A minimal reader of the ingest catalog format (JSONL), for training only.

Training needs far less than ingest does: an id, the text fields that describe a product, its
category path and its image files. Records that lack an id or title are skipped and counted,
not fatal: ingest is where every bad record gets reported with its line and reason, and the
pair-count refusal in :mod:`.pairs` catches a catalog that is mostly unusable.
Image URLs are kept as "unusable" (no network at training time) so the refusal message can
say why a catalog has no pairs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..passage import DEFAULT_TEXT_FIELDS, PASSAGE_MAX_CHARS, passage_text


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

    def text(self, fields: Sequence[str] = DEFAULT_TEXT_FIELDS, max_chars: int = PASSAGE_MAX_CHARS) -> str:
        """The text side of the product's pairs: its passage (:func:`models.passage.passage_text`).

        The field name ``attributes`` (training views only) stands for the values of all the
        product's text attributes that its title does not already say (colour, size, type ...).
        """
        if "attributes" not in fields:
            return passage_text(self, fields, max_chars)
        parts = [passage_text(self, [f], max_chars) if f != "attributes" else self.attribute_text()
                 for f in fields]
        return ". ".join(p for p in parts if p)[:max_chars]

    def attribute_text(self) -> str:
        title = self.title.lower()
        out = []
        for value in self.attributes.values():
            if isinstance(value, (list, tuple)):
                value = ", ".join(str(v) for v in value if isinstance(v, str))
            if not isinstance(value, str):
                continue
            value = " ".join(value.split()).rstrip(".")
            if value and value.lower() not in title and value not in out:
                out.append(value)
        return ". ".join(out)


@dataclass
class CatalogReport:
    """Counts of what the reader had to leave out, for the refusal and summary messages."""

    records: int = 0
    skipped_records: list[str] = field(default_factory=list)
    image_urls: int = 0
    missing_images: int = 0


def _resolve_images(values: tuple[str, ...], base: Path, report: CatalogReport) -> tuple[list[str], list[str]]:
    ok, skipped = [], []
    for v in values:
        if "://" in v or v.startswith("data:"):
            report.image_urls += 1   # no network at training time
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


def read_catalog(path: str | Path) -> tuple[list[TrainingProduct], CatalogReport]:
    """Read a catalog (JSONL or CSV) with ingest's own reader and schema.

    Records ingest would reject are skipped and counted here (ingest is where each is reported
    with its line and reason); relative image paths resolve against the catalog's folder.
    """
    from plugin_ingest.catalog import Catalog
    from plugin_ingest.schema import InvalidRecord, validate

    catalog = Catalog(path)
    csv_mode = catalog.fmt != "jsonl"
    report = CatalogReport()
    products: list[TrainingProduct] = []
    for rec in catalog.records():
        report.records += 1
        if not rec.ok:
            report.skipped_records.append(f"line {rec.line}: {rec.error}")
            continue
        try:
            prod = validate(rec.data, csv_mode=csv_mode)
        except InvalidRecord as exc:
            report.skipped_records.append(f"line {rec.line}: {exc}")
            continue
        images, skipped = _resolve_images(prod.images, catalog.base_dir, report)
        products.append(TrainingProduct(
            id=prod.id, title=prod.title.strip(), description=prod.description.strip(),
            brand=prod.brand.strip(), category=prod.category, images=tuple(images),
            skipped_images=tuple(skipped), attributes=dict(prod.attributes)))
    return products, report
