"""Product popularity from the events index, written where suggestions rank by it.

Popularity is the number of clicks on a product (``click`` events, :mod:`.events`), counted
over the whole events index (or one application / period) by a paged aggregation.  It is a
periodic aggregate, not a live counter: ``cmsearch suggest --refresh-popularity`` (from cron,
say hourly) recounts and rewrites the ``popularity`` field and the weights of the product's
``suggest`` entries, in the engine (one update-by-query, nothing read back), so suggestions
rank by popularity first and then by how the prefix matched (:mod:`analysis.suggestions`).
A product no longer clicked falls back to popularity 0.  A reload that re-writes a product's
text fields resets its suggestion weights until the next refresh.
"""
from __future__ import annotations

from typing import Any, Mapping

from analysis.suggestions import MAX_POPULARITY, WEIGHT_STEP
from mappings import fields

from .events import ACTION_NAME, APPLICATION, CLICK, DEFAULT_INDEX, TIMESTAMP

__all__ = ["click_counts", "refresh_popularity"]

_OBJECT_ID = "event_attributes.object.object_id"
_SCRIPT = """
int p = params.pop.containsKey(ctx._source[params.id]) ? params.pop[ctx._source[params.id]] : 0;
def entries = ctx._source[params.suggest];
if (entries != null) {
  if (!(entries instanceof List)) { entries = [entries]; ctx._source[params.suggest] = entries; }
  for (e in entries) { e.weight = e.weight % params.step + params.step * p; }
}
ctx._source[params.popularity] = p;
"""


def click_counts(client: Any, events_index: str = DEFAULT_INDEX, *, application: str | None = None,
                 since: str | None = None) -> dict[str, int]:
    """Clicks per product id (every product with at least one), by composite aggregation pages."""
    if not client.indices.exists(index=events_index):
        return {}
    filters: list[dict[str, Any]] = [{"term": {ACTION_NAME: CLICK}}]
    if application:
        filters.append({"term": {APPLICATION: application}})
    if since:
        filters.append({"range": {TIMESTAMP: {"gte": since}}})
    counts: dict[str, int] = {}
    after: Mapping[str, Any] | None = None
    while True:
        comp: dict[str, Any] = {"size": 1000, "sources": [{"id": {"terms": {"field": _OBJECT_ID}}}]}
        if after:
            comp["after"] = after
        resp = client.search(index=events_index, body={"size": 0, "query": {"bool": {"filter": filters}},
                                                       "aggs": {"clicks": {"composite": comp}}})
        agg = resp["aggregations"]["clicks"]
        for b in agg["buckets"]:
            counts[str(b["key"]["id"])] = int(b["doc_count"])
        after = agg.get("after_key")
        if not agg["buckets"] or not after:
            return counts


def refresh_popularity(client: Any, product_index: str, counts: Mapping[str, int]) -> int:
    """Write ``counts`` as the products' popularity and suggestion weights; returns products updated.

    Only products with clicks now or a popularity before are touched.
    """
    pop = {str(k): max(0, min(int(v), MAX_POPULARITY)) for k, v in counts.items() if int(v) > 0}
    should: list[dict[str, Any]] = [{"range": {fields.POPULARITY: {"gt": 0}}}]
    ids = list(pop)
    for i in range(0, len(ids), 10_000):    # a terms query holds at most 65,536 terms
        should.append({"terms": {fields.ID: ids[i:i + 10_000]}})
    body = {"query": {"bool": {"should": should, "minimum_should_match": 1}},
            "script": {"lang": "painless", "source": _SCRIPT,
                       "params": {"pop": pop, "step": WEIGHT_STEP, "id": fields.ID, "suggest": fields.SUGGEST,
                                  "popularity": fields.POPULARITY}}}
    resp = client.update_by_query(index=product_index, body=body, params={"conflicts": "proceed", "refresh": "true"})
    return int(resp.get("updated", 0))
