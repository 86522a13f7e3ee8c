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


COUNT = {"query": {"match_all": {}}, "size": 0, "track_total_hits": True}


def _finish(flow, response):
    try:
        flow.send(response)
    except StopIteration as done:
        return done.value
    raise AssertionError("the flow asked for more")


def test_the_real_match_count_and_the_hybrid_search_go_in_one_msearch():
    core = SearcherCore(None, "hybrid_minmax", index="products")
    flow = core._counted_search({"query": {"hybrid": {}}}, {"search_pipeline": "p"}, COUNT)
    call = next(flow)
    lines = call.kwargs["body"]
    assert call.api == "msearch" and lines[1] == COUNT and lines[3]["search_pipeline"] == "p"
    hits = {"hits": {"total": {"value": 2}, "hits": []}}
    assert _finish(flow, {"responses": [{"hits": {"total": {"value": 7}}}, hits]}) == (7, hits)


def test_a_cluster_that_refuses_a_pipeline_inside_msearch_is_asked_the_count_alone_from_then_on():
    """Before 2.18 an msearch body could not name its search pipeline: the search is then sent on
    its own (by the caller), and later counts stop trying."""
    core = SearcherCore(None, "hybrid_minmax", index="products")
    flow = core._counted_search({"query": {"hybrid": {}}}, {"search_pipeline": "p"}, COUNT)
    next(flow)
    refused = {"error": {"type": "parsing_exception", "reason": "Unknown key for a VALUE_STRING in [search_pipeline]."},
               "status": 400}
    assert _finish(flow, {"responses": [{"hits": {"total": {"value": 7}}}, refused]}) == (7, None)
    flow = core._counted_search({"query": {"hybrid": {}}}, {"search_pipeline": "p"}, COUNT)
    call = next(flow)
    assert call.api == "search" and call.kwargs["body"] == COUNT
    assert _finish(flow, {"hits": {"total": {"value": 7}}}) == (7, None)
    # a search without a pipeline still rides with its count
    assert next(core._counted_search({"query": {"match": {}}}, {}, COUNT)).api == "msearch"


def test_a_failed_search_inside_the_msearch_is_sent_again_alone_so_its_error_is_read_as_before():
    core = SearcherCore(None, "hybrid_minmax", index="products")
    flow = core._counted_search({"query": {"hybrid": {}}}, {"search_pipeline": "p"}, COUNT)
    next(flow)
    past = {"error": {"type": "illegal_argument_exception", "reason": "Reached end of search result"}, "status": 400}
    assert _finish(flow, {"responses": [{"hits": {"total": {"value": 7}}}, past]}) == (7, None)
    assert core._pipeline_in_msearch     # not a refusal of the pipeline key
