"""Reading an index's brand and category vocabulary: the cluster edge of :mod:`analysis.vocabulary`.

:class:`analysis.Vocabulary` is pure (built from lists); this module reads those lists from
the index's own keyword fields, so the vocabulary never drifts from the data.  The searcher
and ingest call it and hand the plain vocabulary down.
"""
from __future__ import annotations

from typing import Any, Iterator

from analysis import AliasTable, Vocabulary
from mappings import fields

__all__ = ["read_vocabulary"]


def read_vocabulary(client: Any, index: str, aliases: AliasTable | None = None, *,
                    page_size: int = 1000) -> Vocabulary:
    """Every brand and category path of ``index``, as a :class:`Vocabulary` with ``aliases``.

    Uses composite aggregations, paged, so no term is silently cut off by a ``terms`` size
    limit.  An empty index gives an empty vocabulary; engine errors propagate.
    """
    return Vocabulary(brands=_all_terms(client, index, fields.BRAND, page_size),
                      category_paths=_all_terms(client, index, fields.CATEGORY_PATH, page_size),
                      aliases=aliases)


def _all_terms(client: Any, index: str, field_name: str, page_size: int) -> Iterator[str]:
    after = None
    while True:
        comp: dict[str, Any] = {"size": page_size, "sources": [{"v": {"terms": {"field": field_name}}}]}
        if after:
            comp["after"] = after
        resp = client.search(index=index, body={"size": 0, "aggs": {"terms": {"composite": comp}}})
        agg = (resp.get("aggregations") or {}).get("terms") or {}
        buckets = agg.get("buckets") or []
        for b in buckets:
            yield str(b["key"]["v"])
        after = agg.get("after_key")
        if not buckets or not after or len(buckets) < page_size:
            return
