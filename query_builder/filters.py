"""Filters as query clauses, identical for every retriever.

The same clause list goes into the lexical ``bool.filter`` and into every k-NN
clause's own ``filter`` (efficient filtering: the graph search only visits
matching products, so a filtered k-NN still returns k of them, instead of
returning k products and then throwing the non-matching ones away).
"""
from __future__ import annotations

from collections import OrderedDict

from analysis import Vocabulary, normalize_brand
from mappings import fields

from .dsl import Bool, Query, Range, Terms
from .request import Filters, NumberRange

__all__ = ["filter_clauses", "filter_query"]


def _range(field_name: str, r: NumberRange) -> Range:
    return Range(field_name, gte=r.min, lte=r.max)


def filter_clauses(filters: Filters, vocabulary: Vocabulary | None = None) -> tuple[Query, ...]:
    """One clause per filter name (AND between names, OR within one).

    Brand names are normalized the way ingest normalizes them (and expanded to
    every indexed spelling when a vocabulary is known); category names may be
    full paths, leaf names or aliases.
    """
    out: list[Query] = []
    if filters.brand:
        values: list[str] = []
        for b in filters.brand:
            values.extend(vocabulary.brand_values(b) if vocabulary is not None else (normalize_brand(b),))
        out.append(Terms(fields.BRAND, tuple(dict.fromkeys(values))))
    if filters.category:
        paths: list[str] = []
        for c in filters.category:
            paths.extend(vocabulary.categories_named(c) if vocabulary is not None else (c,))
        out.append(Terms(fields.CATEGORY_PATH, tuple(dict.fromkeys(paths))))
    if filters.series:
        out.append(Terms(fields.SERIES, filters.series))
    if filters.price is not None:
        out.append(_range(fields.PRICE, filters.price))
    if filters.rating is not None:
        out.append(_range(fields.RATING, filters.rating))
    if filters.attribute:
        by_key: OrderedDict[str, list[str]] = OrderedDict()
        for a in filters.attribute:
            key, _, value = a.partition("=")
            by_key.setdefault(key.strip(), []).append(f"{key.strip()}={value.strip()}")
        for values in by_key.values():
            out.append(Terms(fields.ATTR_TERMS, tuple(values)))
    if filters.id:
        out.append(Terms(fields.ID, filters.id))
    return tuple(out)


def filter_query(clauses: tuple[Query, ...]) -> Query | None:
    """The clauses as one query for a k-NN ``filter`` (None when there are none)."""
    if not clauses:
        return None
    return Bool(filter=clauses)
