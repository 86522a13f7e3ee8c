"""What a cluster can do, found by trying it (plugin names differ between distributions and the
class-path node, so they are no evidence)."""
from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass

from opensearchpy import OpenSearch
from opensearchpy.exceptions import OpenSearchException, TransportError

_PROBE_DIM = 2


@dataclass(frozen=True)
class Capabilities:
    version: str
    knn: bool        # knn_vector with the Lucene HNSW engine, knn query with a filter
    hybrid: bool     # neural-search hybrid query through a normalization-processor pipeline
    rrf: bool        # neural-search score-ranker-processor (RRF)

    def as_dict(self) -> dict:
        return asdict(self)


def _try(fn) -> bool:
    try:
        fn()
        return True
    except (OpenSearchException, TransportError):
        return False


def detect(client: OpenSearch) -> Capabilities:
    """Probe ``client``'s cluster with a throw-away index, then remove it.

    kNN is tried here; server-side fusion (hybrid + normalization, RRF) is tried by the query
    builder's own probe, the one its ``Searcher`` routes by, against the throw-away index.
    """
    from query_builder.capabilities import detect_fusion

    version = client.info()["version"]["number"]
    index = f"cmsearch-probe-{uuid.uuid4().hex[:12]}"
    hybrid = rrf = False
    try:
        knn = _try(lambda: _knn_probe(client, index))
        if knn:
            fusion = detect_fusion(client, index)
            hybrid, rrf = fusion.hybrid, fusion.rrf
    finally:
        _try(lambda: client.indices.delete(index=index))
    return Capabilities(version=version, knn=knn, hybrid=hybrid, rrf=rrf)


def _knn_probe(client: OpenSearch, index: str) -> None:
    client.indices.create(index=index, body={
        "settings": {"index": {"knn": True, "number_of_shards": 1, "number_of_replicas": 0}},
        "mappings": {"properties": {
            "k": {"type": "keyword"},
            "v": {"type": "knn_vector", "dimension": _PROBE_DIM,
                  "method": {"name": "hnsw", "engine": "lucene", "space_type": "cosinesimil"}}}}})
    client.index(index=index, id="1", body={"k": "a", "v": [1.0, 0.0]}, refresh=True)
    res = client.search(index=index, body={"query": {"knn": {"v": {
        "vector": [1.0, 0.1], "k": 1, "filter": {"term": {"k": "a"}}}}}})
    if not res["hits"]["hits"]:
        raise TransportError(500, "knn probe returned no hit")
