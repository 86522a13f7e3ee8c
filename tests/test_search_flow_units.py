"""The search flow's cluster calls, driven by hand (no node): what one search asks of the cluster."""
from __future__ import annotations

import numpy as np

from analysis import Vocabulary
from mappings import fields
from query_builder import QueryVectors, SearchRequest
from query_builder.search_flow import IndexSpace, SearcherCore


def _vec(seed: int, dim: int) -> tuple[float, ...]:
    v = np.random.default_rng(seed).standard_normal(dim)
    return tuple(float(x) for x in v / np.linalg.norm(v))


def _server_calls(hits: list[dict], *, index_has_features: bool = True) -> list:
    """The calls of one server-side text search whose hybrid query answers ``hits``."""
    core = SearcherCore(None, "hybrid_minmax", index="products")
    request = SearchRequest(text="red chair", vectors=QueryVectors(text=_vec(0, 8)))
    built = core._build(request, Vocabulary(brands=[], category_paths=[]),
                        IndexSpace((0.5, 0.5), None, index_has_features))
    assert built.image_probe is not None     # text -> image is among the retrievers
    flow = core._run_server(built, "server", None)
    calls = [next(flow)]                     # PUT the search pipeline
    calls.append(flow.send({}))              # the hybrid search
    try:
        calls.append(flow.send({"hits": {"total": {"value": len(hits)}, "hits": hits}}))
        flow.send({"hits": {"hits": []}})
    except StopIteration:
        pass
    return calls


def _hit(pid: str, urls: list[str]) -> dict:
    return {"_score": 1.0, "fields": {fields.ID: [pid], **({fields.IMAGE_URLS: urls} if urls else {})}}


def test_a_page_of_single_image_products_needs_no_best_image_round_trip():
    calls = _server_calls([_hit("a", ["a.jpg"]), _hit("b", []), _hit("c", ["c.jpg"])])
    assert [c.api for c in calls] == ["transport", "search"]


def test_only_products_with_several_images_are_asked_for_their_best_one():
    calls = _server_calls([_hit("a", ["a.jpg"]), _hit("b", ["b1.jpg", "b2.jpg"]), {"_id": "c", "_score": 0.5}])
    assert [c.api for c in calls] == ["transport", "search", "search"]
    probe = calls[2].kwargs["body"]
    assert probe["size"] == 2          # b (two images) and c (image count unknown), not a
    assert "'b'" in repr(probe) and "'c'" in repr(probe) and "'a'" not in repr(probe)
