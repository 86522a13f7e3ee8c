"""Reading an index's brand and category vocabulary: the cluster edge of :mod:`analysis.vocabulary`.

:class:`analysis.Vocabulary` is pure (built from lists); this module reads those lists from
the index's own keyword fields, so the vocabulary never drifts from the data.  Ingest and the
searchers call it and hand the plain vocabulary down.

The reading is written once, as :func:`vocabulary_searches`: a generator that yields the
search bodies to run on the index and is sent each response.  :func:`read_vocabulary` drives it
with a blocking client; a searcher over another kind of client (asyncio) drives the same
generator its own way.
"""
from __future__ import annotations

from typing import Any, Generator, Mapping

from analysis import AliasTable, Vocabulary
from mappings import fields

__all__ = ["PAGE_SIZE", "VocabularySearches", "vocabulary_searches", "read_vocabulary"]

PAGE_SIZE = 1000
# the index's words read for spelling corrections: the commonest this many (a terms
# aggregation by document count), which bounds the read on a catalog of any size
MAX_TERMS = 50_000

# yields a search body for the index, is sent its response, returns the vocabulary
VocabularySearches = Generator[dict[str, Any], Mapping[str, Any], Vocabulary]


def vocabulary_searches(aliases: AliasTable | None = None, *, page_size: int = PAGE_SIZE,
                        max_terms: int = MAX_TERMS) -> VocabularySearches:
    """Every brand and category path of an index, by paged composite aggregations (no ``terms``
    size limit cuts a term off), and its commonest ``max_terms`` words; an empty index gives an
    empty vocabulary."""
    brands = yield from _all_terms(fields.BRAND, page_size)
    paths = yield from _all_terms(fields.CATEGORY_PATH, page_size)
    resp = yield {"size": 0, "aggs": {"terms": {"terms": {"field": fields.TERMS, "size": max_terms}}}}
    buckets = ((resp.get("aggregations") or {}).get("terms") or {}).get("buckets") or []
    terms = {str(b["key"]): int(b["doc_count"]) for b in buckets}
    return Vocabulary(brands=brands, category_paths=paths, aliases=aliases, terms=terms)


def read_vocabulary(client: Any, index: str, aliases: AliasTable | None = None, *,
                    page_size: int = PAGE_SIZE) -> Vocabulary:
    """The vocabulary of ``index`` read with a blocking client; engine errors propagate."""
    searches = vocabulary_searches(aliases, page_size=page_size)
    try:
        body = next(searches)
        while True:
            body = searches.send(client.search(index=index, body=body))
    except StopIteration as done:
        return done.value


def _all_terms(field_name: str, page_size: int) -> Generator[dict[str, Any], Mapping[str, Any], list[str]]:
    out: list[str] = []
    after = None
    while True:
        comp: dict[str, Any] = {"size": page_size, "sources": [{"v": {"terms": {"field": field_name}}}]}
        if after:
            comp["after"] = after
        resp = yield {"size": 0, "aggs": {"terms": {"composite": comp}}}
        agg = (resp.get("aggregations") or {}).get("terms") or {}
        buckets = agg.get("buckets") or []
        out.extend(str(b["key"]["v"]) for b in buckets)
        after = agg.get("after_key")
        if not buckets or not after or len(buckets) < page_size:
            return out
