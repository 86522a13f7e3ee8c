"""What a cluster can do, found by trying it (plugin names differ between distributions and the
class-path node, so they are no evidence)."""
from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from typing import Any, Callable

from opensearchpy import OpenSearch
from opensearchpy.exceptions import OpenSearchException, TransportError

_PROBE_DIM = 2


@dataclass(frozen=True)
class Capabilities:
    version: str
    knn: bool            # knn_vector with the Lucene HNSW engine, knn query with a filter
    hybrid: bool | None  # neural-search hybrid query through a normalization-processor pipeline (None: not probed)
    rrf: bool | None     # neural-search score-ranker-processor (RRF) (None: not probed)
    normalizations: tuple[str, ...] | None = None  # fusion methods that run server-side (None: not probed)
    weighted_rrf: bool | None = None    # RRF honours per-query weights (neural-search 3.1+)

    def as_dict(self) -> dict:
        return asdict(self)


def _try(fn) -> bool:
    try:
        fn()
        return True
    except (OpenSearchException, TransportError):
        return False


def detect(client: OpenSearch, fusion_probe: Callable[[OpenSearch, str], Any] | None = None) -> Capabilities:
    """Probe ``client``'s cluster with a throw-away index, then remove it.

    kNN is tried here.  Server-side fusion is the query builder's business, and the engine
    layer does not import it: the caller hands in its probe (``query_builder.detect_fusion``,
    the one a ``Searcher`` routes by), which is run against the throw-away index and whose
    ``hybrid`` and ``rrf`` (and what newer neural-search adds: the server-side normalizations,
    weighted RRF) are reported; without one they are None (not probed).
    """
    version = client.info()["version"]["number"]
    index = f"cmsearch-probe-{uuid.uuid4().hex[:12]}"
    found: dict[str, Any] = {}
    try:
        knn = _try(lambda: _knn_probe(client, index))
        if fusion_probe is not None:
            found = {"hybrid": False, "rrf": False, "normalizations": (), "weighted_rrf": False}
            if knn:
                fusion = fusion_probe(client, index)
                found = {"hybrid": bool(fusion.hybrid), "rrf": bool(fusion.rrf),
                         "normalizations": tuple(sorted(fusion.normalizations)),
                         "weighted_rrf": "rrf" in fusion.weighted}
    finally:
        _try(lambda: client.indices.delete(index=index))
    return Capabilities(version=version, knn=knn, hybrid=found.get("hybrid"), rrf=found.get("rrf"),
                        normalizations=found.get("normalizations"), weighted_rrf=found.get("weighted_rrf"))


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
