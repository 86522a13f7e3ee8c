"""Facets over the matched set: brand, category levels, price ranges.

Aggregation names are the field names themselves (from :mod:`mappings.fields`),
so a response's facet is found under the field it counts.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from mappings import fields

from .profile import FacetSpec
from .request import CATEGORY_FACET

__all__ = ["FacetBucket", "Facets", "facet_aggs", "parse_facets"]


def facet_aggs(wanted: tuple[str, ...], spec: FacetSpec) -> dict[str, Any]:
    """The ``aggs`` object for the requested facets (empty when none are wanted)."""
    aggs: dict[str, Any] = {}
    if fields.BRAND in wanted:
        aggs[fields.BRAND] = {"terms": {"field": fields.BRAND, "size": spec.size}}
    if CATEGORY_FACET in wanted:
        for level in fields.CATEGORY_LEVEL_FIELDS:
            aggs[level] = {"terms": {"field": level, "size": spec.size}}
    if fields.PRICE in wanted:
        ranges = []
        for lo, hi in spec.price_ranges:
            r: dict[str, float] = {}
            if lo is not None:
                r["from"] = lo
            if hi is not None:
                r["to"] = hi
            ranges.append(r)
        aggs[fields.PRICE] = {"range": {"field": fields.PRICE, "ranges": ranges}}
    return aggs


@dataclass(frozen=True)
class FacetBucket:
    value: str
    count: int
    low: float | None = None   # price buckets only: [low, high)
    high: float | None = None


@dataclass(frozen=True)
class Facets:
    brand: tuple[FacetBucket, ...] = ()
    category: tuple[tuple[FacetBucket, ...], ...] = ()   # one tuple per level, top level first
    price: tuple[FacetBucket, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.brand or any(self.category) or self.price)

    def to_dict(self) -> dict[str, Any]:
        def b(x: FacetBucket) -> dict[str, Any]:
            d: dict[str, Any] = {"value": x.value, "count": x.count}
            if x.low is not None or x.high is not None:
                d["from"], d["to"] = x.low, x.high
            return d
        return {fields.BRAND: [b(x) for x in self.brand],
                CATEGORY_FACET: [[b(x) for x in level] for level in self.category],
                fields.PRICE: [b(x) for x in self.price]}


def _price_label(lo: float | None, hi: float | None) -> str:
    def n(v: float) -> str:
        return str(int(v)) if float(v).is_integer() else str(v)
    if lo is None:
        return f"< {n(hi)}"          # type: ignore[arg-type]
    if hi is None:
        return f">= {n(lo)}"
    return f"{n(lo)}-{n(hi)}"


def parse_facets(aggregations: Mapping[str, Any] | None) -> Facets:
    """Facets from a search response's ``aggregations`` (missing ones stay empty)."""
    aggs = aggregations or {}

    def terms(name: str) -> tuple[FacetBucket, ...]:
        return tuple(FacetBucket(str(bk["key"]), int(bk["doc_count"]))
                     for bk in (aggs.get(name) or {}).get("buckets", []))

    levels = tuple(terms(level) for level in fields.CATEGORY_LEVEL_FIELDS if level in aggs)
    price = tuple(FacetBucket(_price_label(bk.get("from"), bk.get("to")), int(bk["doc_count"]),
                              bk.get("from"), bk.get("to"))
                  for bk in (aggs.get(fields.PRICE) or {}).get("buckets", []))
    return Facets(brand=terms(fields.BRAND), category=levels, price=price)
