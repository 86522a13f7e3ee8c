"""The evaluation-results index: one document per (run, profile, query or mean, metric).

One flat document per number is what Dashboards charts without scripting: "metric per profile
over time" is an average of ``value`` over a date histogram of ``timestamp``, split by
``profile`` and filtered to ``scope: mean`` and one ``metric``; "worst queries" is a terms
aggregation on ``query_text`` ordered by the average ``value`` ascending, filtered to
``scope: query``.  The field names below are the ones ``dashboards/saved_objects.ndjson``
references, and ``tests/test_dashboards.py`` checks them against a live index.
"""
from __future__ import annotations

from typing import Any, Iterator

from opensearchpy import OpenSearch

from .index_util import bulk_write, ensure_index
from .runner import EvalRun

__all__ = ["DEFAULT_INDEX", "RUN_ID", "DATASET", "PRODUCT_INDEX", "PROFILE", "METRIC", "SCOPE", "QUERY_ID",
           "QUERY_TEXT", "VALUE", "QUERIES", "TIMESTAMP", "SCOPE_MEAN", "SCOPE_QUERY", "index_body", "documents",
           "write_run"]

DEFAULT_INDEX = "cmsearch-eval"

RUN_ID = "run_id"
DATASET = "dataset"              # the judgment set's name
PRODUCT_INDEX = "product_index"  # the product index that was searched
PROFILE = "profile"
METRIC = "metric"                # "ndcg@10", "recall@100", "mrr", ...
SCOPE = "scope"                  # "mean" (one per profile and metric) or "query"
QUERY_ID = "query_id"            # "_mean" on mean rows
QUERY_TEXT = "query_text"        # the query text (or "[image] file.jpg"); "_mean" on mean rows
VALUE = "value"
QUERIES = "queries"              # how many queries a mean is over (1 on query rows)
TIMESTAMP = "timestamp"

SCOPE_MEAN = "mean"
SCOPE_QUERY = "query"
MEAN_ID = "_mean"


def index_body() -> dict[str, Any]:
    return {
        "settings": {"index": {"number_of_shards": 1, "number_of_replicas": 0}},
        "mappings": {
            "dynamic": "strict",
            "properties": {
                RUN_ID: {"type": "keyword"},
                DATASET: {"type": "keyword"},
                PRODUCT_INDEX: {"type": "keyword"},
                PROFILE: {"type": "keyword"},
                METRIC: {"type": "keyword"},
                SCOPE: {"type": "keyword"},
                QUERY_ID: {"type": "keyword"},
                QUERY_TEXT: {"type": "keyword", "ignore_above": 512,
                             "fields": {"text": {"type": "text"}}},
                VALUE: {"type": "double"},
                QUERIES: {"type": "integer"},
                TIMESTAMP: {"type": "date"},
            },
        },
    }


def documents(run: EvalRun, product_index: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """``(doc id, source)`` for every mean and every per-query number of ``run``.

    Ids are derived from the run, so writing the same run twice overwrites instead of doubling it.
    """
    base = {RUN_ID: run.run_id, DATASET: run.dataset, PRODUCT_INDEX: product_index, TIMESTAMP: run.timestamp}
    for p, s in run.summaries.items():
        for m, v in s.means.items():
            if v != v:   # no query scored: nothing to chart
                continue
            yield (f"{run.run_id}|{p}|{SCOPE_MEAN}|{m}",
                   {**base, PROFILE: p, METRIC: m, SCOPE: SCOPE_MEAN, QUERY_ID: MEAN_ID, QUERY_TEXT: MEAN_ID,
                    VALUE: float(v), QUERIES: s.queries})
    for r in run.results:
        for m, v in r.metrics.items():
            yield (f"{run.run_id}|{r.profile}|{SCOPE_QUERY}|{r.query_id}|{m}",
                   {**base, PROFILE: r.profile, METRIC: m, SCOPE: SCOPE_QUERY, QUERY_ID: r.query_id,
                    QUERY_TEXT: r.query_text, VALUE: float(v), QUERIES: 1})


def write_run(client: OpenSearch, run: EvalRun, index: str = DEFAULT_INDEX, *, product_index: str = "") -> int:
    """Create the results index if needed and write the run; returns the number of documents."""
    ensure_index(client, index, index_body())
    return bulk_write(client, index, documents(run, product_index))
