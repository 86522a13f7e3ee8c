"""Min-max lower bounds (``fusion.lower_bounds``): neural-search 3.2+'s semantics by hand, the
profile option's validation, the pipeline body per running sub-query, and routing.

The hand-computed cases follow neural-search's MinMaxScoreNormalizationTechnique and
bounds/LowerBound (3.2+): per score, the min it is normalized against is the bound (``apply``:
when max and score are above it; ``clip``: unless max is below it) or the list's own min.
"""
from __future__ import annotations

from dataclasses import replace

import pytest
from test_search_live import catalog, searcher, text_request  # noqa: F401 - catalog is a fixture

from analysis import AliasTable, Tokenizer, Vocabulary
from query_builder import (FusionSpec, Profile, ProfileError, QueryVectors, RankedList, SearchError, SearchRequest,
                           build_search, detect_fusion, fuse, load_profile, normalize_scores, understand)
from query_builder import calls, fusion_probe
from query_builder.bodies import profile_pipelines
from query_builder.results import hit_id
from query_builder.fusion_methods import MIN_SCORE, LowerBound, min_max_bounded
from query_builder.fusion_probe import FusionCapabilities
from query_builder.search_pipelines import search_pipeline

APPROX = dict(rel=1e-6, abs=1e-7)   # the bounded path computes with the server's Java floats


def bounded(scores, mode, min_score):
    return min_max_bounded(scores, LowerBound(mode, min_score))


# --- semantics -------------------------------------------------------------------------------
def test_apply_normalizes_above_the_bound_against_the_bound():
    # lo 0.5, hi 0.9, bound 0.6: 0.9 -> 0.3/0.3, 0.8 -> 0.2/0.3, 0.7 -> 0.1/0.3;
    # 0.5 is not above the bound: against the list's min, (0.5-0.5)/0.4 = 0 -> 0.001
    assert bounded([0.9, 0.8, 0.7, 0.5], "apply", 0.6) == pytest.approx([1.0, 2 / 3, 1 / 3, MIN_SCORE], **APPROX)


def test_apply_bound_below_the_list_keeps_a_far_list_from_being_stretched():
    # the motivating case: cosine-like scores 0.9, 0.6, 0.3 with a bound at 0: 1, 2/3, 1/3,
    # where plain min-max gives 1, 0.5, 0.001
    assert bounded([0.9, 0.6, 0.3], "apply", 0.0) == pytest.approx([1.0, 2 / 3, 1 / 3], **APPROX)
    assert normalize_scores([0.9, 0.6, 0.3], "min_max") == pytest.approx([1.0, 0.5, MIN_SCORE])


def test_apply_score_at_or_below_the_bound_uses_the_lists_min_even_above_a_score_over_it():
    # 0.61 > bound: (0.61-0.6)/(0.9-0.6) = 1/30; 0.59 <= bound: (0.59-0.5)/(0.9-0.5) = 0.225
    out = bounded([0.9, 0.61, 0.59, 0.5], "apply", 0.6)
    assert out == pytest.approx([1.0, 0.01 / 0.3, 0.09 / 0.4, MIN_SCORE], rel=1e-5)
    assert out[2] > out[1]   # the server's non-monotonic edge, kept so both paths rank alike
    # a score equal to the bound is not above it: (0.6-0.5)/(0.9-0.5)
    assert bounded([0.9, 0.6, 0.5], "apply", 0.6) == pytest.approx([1.0, 0.25, MIN_SCORE], rel=1e-6)


def test_apply_with_the_max_at_or_below_the_bound_is_plain_min_max():
    assert bounded([0.5, 0.4, 0.3], "apply", 0.6) == pytest.approx([1.0, 0.5, MIN_SCORE], **APPROX)
    assert bounded([0.6, 0.4, 0.2], "apply", 0.6) == pytest.approx([1.0, 0.5, MIN_SCORE], **APPROX)


def test_clip_floors_every_score_below_the_bound():
    # bound 0.6: 0.9 -> 1, 0.8 -> 0.2/0.3, 0.6 -> 0 -> 0.001, 0.5 (below) -> 0.001
    assert bounded([0.9, 0.8, 0.6, 0.5], "clip", 0.6) == pytest.approx([1.0, 2 / 3, MIN_SCORE, MIN_SCORE], **APPROX)


def test_clip_with_the_max_below_the_bound_is_plain_min_max():
    assert bounded([0.5, 0.4, 0.3], "clip", 0.6) == pytest.approx([1.0, 0.5, MIN_SCORE], **APPROX)


def test_clip_with_the_max_equal_to_the_bound_gives_the_max_one_and_the_rest_the_floor():
    # effective min == max: 1.0 for the max, every other score is below the bound
    assert bounded([0.6, 0.4], "clip", 0.6) == [1.0, MIN_SCORE]


def test_ignore_is_plain_min_max_exactly():
    scores = [10.0, 6.0, 2.0]
    assert bounded(scores, "ignore", 5.0) == normalize_scores(scores, "min_max") == [1.0, 0.5, MIN_SCORE]


def test_equal_scores_give_one_whatever_the_bound():
    for mode in ("apply", "clip", "ignore"):
        assert bounded([0.7], mode, 0.9) == [1.0]
        assert bounded([0.7, 0.7], mode, 0.2) == [1.0, 1.0]
    assert min_max_bounded([], LowerBound()) == []


def test_negative_bounds_and_scores():
    # apply at -1 over 2, 0, -0.5: (s+1)/3
    assert bounded([2.0, 0.0, -0.5], "apply", -1.0) == pytest.approx([1.0, 1 / 3, 0.5 / 3], **APPROX)


def test_a_score_equal_to_the_bound_is_equal_as_the_servers_floats_are():
    """A bound of 0.599999997 is the Java float 0.6 on the server, so a score of 0.6 is not above
    it: normalized against the list's min, (0.6-0.5)/(0.9-0.5), not (0.6-0.599999997)/(0.9-0.599999997)."""
    assert bounded([0.9, 0.6, 0.5], "apply", 0.599999997) == pytest.approx([1.0, 0.25, MIN_SCORE], rel=1e-6)
    assert bounded([0.9, 0.6], "clip", 0.6) == [1.0, MIN_SCORE]


def test_defaults_are_apply_at_zero():
    assert LowerBound() == LowerBound("apply", 0.0)


def test_fuse_applies_each_retrievers_own_bound():
    lexical = RankedList("lexical", (("a", 12.0), ("b", 8.0), ("c", 4.0)))
    dense = RankedList("text_knn", (("b", 0.9), ("c", 0.6), ("a", 0.3)))
    spec = FusionSpec(lower_bounds={"text_knn": {"mode": "apply", "min_score": 0.0}})
    fused = {d.id: d for d in fuse([lexical, dense], [0.5, 0.5], spec)}
    # lexical plain: a 1, b 0.5, c 0.001; text_knn bounded at 0: b 1, c 2/3, a 1/3
    assert fused["a"].normalized == pytest.approx((1.0, 1 / 3), **APPROX)
    assert fused["b"].normalized == pytest.approx((0.5, 1.0), **APPROX)
    assert fused["c"].normalized == pytest.approx((MIN_SCORE, 2 / 3), **APPROX)
    assert fused["b"].score == pytest.approx(0.75) and fused["a"].score == pytest.approx(2 / 3)
    assert [d.id for d in fuse([lexical, dense], [0.5, 0.5], spec)] == ["b", "a", "c"]
    # without the bound, a and b tie at 0.75 and the unbounded text_knn score of a is the floor
    plain = {d.id: d for d in fuse([lexical, dense], [0.5, 0.5], FusionSpec())}
    assert plain["a"].normalized == (1.0, MIN_SCORE)


# --- the profile option --------------------------------------------------------------------
@pytest.mark.parametrize("bounds, message", [
    ([{"mode": "apply"}], "must be an object by retriever kind"),
    ({"txt_knn": {}}, "lower_bounds.txt_knn: unknown retriever"),
    ({"text_knn": {"mode": "floor"}}, "lower_bounds.text_knn: lower bound mode 'floor'; allowed"),
    ({"text_knn": {"min_score": "0.6"}}, "lower_bounds.text_knn: lower bound min_score must be a number"),
    ({"text_knn": {"min_score": True}}, "min_score must be a number"),
    ({"text_knn": {"min_score": 20000}}, r"within \[-10000, 10000\]"),
    ({"text_knn": {"min_score": float("nan")}}, "min_score must be a number"),
    ({"text_knn": {"max_score": 1}}, r"lower_bounds.text_knn: unknown key\(s\) \['max_score'\]"),
    ({"text_knn": 0.6}, "lower_bounds.text_knn must be an object"),
])
def test_bad_bounds_are_named(bounds, message):
    with pytest.raises(ProfileError, match=message):
        FusionSpec(lower_bounds=bounds)


def test_bounds_are_a_min_max_option():
    with pytest.raises(ProfileError, match="lower_bounds are a min_max option; normalization is 'z_score'"):
        FusionSpec(normalization="z_score", lower_bounds={"text_knn": {}})


def test_a_bound_for_a_retriever_the_profile_lacks_is_an_error():
    with pytest.raises(ProfileError, match=r"lower_bounds name retrievers it does not have: \['text_knn'\]"):
        Profile.from_dict({"name": "p", "retrievers": [{"kind": "lexical"}, {"kind": "fused_knn"}],
                           "fusion": {"lower_bounds": {"text_knn": {"mode": "clip", "min_score": 0.6}}}})


def test_a_profile_without_bounds_writes_what_it_always_did():
    p = load_profile("hybrid_minmax")
    assert list(p.to_dict()["fusion"]) == ["normalization", "combination", "rank_constant", "mode"]
    assert p.fusion.lower_bounds == () and p.fusion.label == "min_max + arithmetic_mean"


def test_bounds_round_trip_and_name_themselves():
    p = _bounded(load_profile("hybrid_minmax"), text_knn=("clip", 0.6))
    d = p.to_dict()
    assert d["fusion"]["lower_bounds"] == {"text_knn": {"mode": "clip", "min_score": 0.6}}
    assert Profile.from_dict(d) == p and hash(p.fusion) == hash(Profile.from_dict(d).fusion)
    assert p.fusion.label == "min_max + arithmetic_mean (lower bounds text_knn clip 0.6)"
    assert p.fusion.lower_bound("text_knn") == LowerBound("clip", 0.6) and p.fusion.lower_bound("lexical") is None


def test_defaults_fill_a_bound_given_in_part():
    assert FusionSpec(lower_bounds={"text_knn": {}}).lower_bound("text_knn") == LowerBound("apply", 0.0)
    assert FusionSpec(lower_bounds={"text_knn": {"mode": "clip"}}).lower_bound("text_knn") == LowerBound("clip", 0.0)


# --- pipeline bodies follow the sub-queries that run ---------------------------------------
VOCAB = Vocabulary(brands=["ikea"], category_paths=["家居>家具>椅子"], aliases=AliasTable.from_dict({}),
                   terms={"红色": 4, "椅子": 5})
TOKENIZER = Tokenizer(VOCAB.words())
VEC = (0.1, 0.2, 0.3, 0.4)


def _bounded(p: Profile, **bounds: tuple[str, float]) -> Profile:
    return p.with_(fusion=replace(p.fusion, lower_bounds={k: {"mode": m, "min_score": s}
                                                          for k, (m, s) in bounds.items()}))


def _built(p: Profile, request: SearchRequest):
    return build_search(request, p, understand(request, p, TOKENIZER, VOCAB), vocabulary=VOCAB)


def _normalization(pipeline) -> dict:
    return pipeline.body["phase_results_processors"][0]["normalization-processor"]["normalization"]


def test_the_pipeline_has_one_bound_per_running_sub_query_in_order():
    p = _bounded(load_profile("hybrid_minmax"), text_knn=("clip", 0.6), text_image_knn=("apply", 0.55))
    built = _built(p, SearchRequest(text="红色 椅子", vectors=QueryVectors(text=VEC)))
    assert built.retrievers == ("lexical", "text_knn", "text_image_knn")
    assert _normalization(built.pipeline) == {"technique": "min_max", "parameters": {"lower_bounds": [
        {"mode": "ignore"}, {"mode": "clip", "min_score": 0.6}, {"mode": "apply", "min_score": 0.55}]}}
    plain = _built(load_profile("hybrid_minmax"), SearchRequest(text="红色 椅子", vectors=QueryVectors(text=VEC)))
    assert built.pipeline.name != plain.pipeline.name
    assert _normalization(plain.pipeline) == {"technique": "min_max"}


def test_a_request_whose_running_retrievers_have_no_bound_gets_todays_pipeline():
    """A photo request runs the image retrievers only: the text bounds do not apply, and the
    pipeline is byte for byte the one of the profile without bounds."""
    p = _bounded(load_profile("hybrid_minmax"), text_knn=("clip", 0.6))
    photo = SearchRequest(vectors=QueryVectors(image=VEC))
    built, plain = _built(p, photo), _built(load_profile("hybrid_minmax"), photo)
    assert "text_knn" not in built.retrievers and built.is_fused
    assert built.pipeline == plain.pipeline


def test_profile_pipelines_carry_the_bounds_of_each_retriever_set():
    p = _bounded(load_profile("hybrid_minmax"), text_knn=("clip", 0.6))
    plain = {x.name: x for x in profile_pipelines(load_profile("hybrid_minmax"))}
    pipes = profile_pipelines(p)
    assert len(pipes) == len(plain)
    with_bounds = [x for x in pipes if "parameters" in _normalization(x)]
    assert with_bounds and all(x.name in plain for x in pipes if x not in with_bounds)
    for x in with_bounds:
        bounds = _normalization(x)["parameters"]["lower_bounds"]
        assert {"mode": "clip", "min_score": 0.6} in bounds and len(bounds) == len(
            x.body["phase_results_processors"][0]["normalization-processor"]["combination"]["parameters"]["weights"])


def test_a_bounded_pipeline_needs_the_sub_queries_kinds():
    spec = FusionSpec(lower_bounds={"text_knn": {}})
    with pytest.raises(ValueError, match="needs the kind of each sub-query"):
        search_pipeline("p", spec, (0.5, 0.5))
    assert search_pipeline("p", FusionSpec(), (0.5, 0.5)) == search_pipeline("p", FusionSpec(), (0.5, 0.5),
                                                                               ("lexical", "text_knn"))


# --- routing --------------------------------------------------------------------------------
CAPS = FusionCapabilities(hybrid=True, normalizations=frozenset({"min_max"}),
                          combinations=frozenset({"arithmetic_mean"}))


def test_bounds_go_server_side_only_where_the_probe_found_them():
    spec = FusionSpec(lower_bounds={"text_knn": {"mode": "clip", "min_score": 0.6}})
    ok, why = CAPS.supports(spec, (0.5, 0.5))
    assert not ok and "does not honour lower_bounds" in why and "client-side" in why
    assert replace(CAPS, lower_bounds=True).supports(spec, (0.5, 0.5)) == (True, "")
    assert CAPS.supports(FusionSpec(), (0.5, 0.5)) == (True, "")
    ok, why = replace(CAPS, premade=True).supports(spec, (0.5, 0.5))
    assert not ok and "not known" in why and "client-side" in why


def test_bounds_of_retrievers_that_do_not_run_do_not_keep_a_search_client_side():
    spec = FusionSpec(lower_bounds={"text_knn": {"mode": "clip", "min_score": 0.6}})
    assert CAPS.supports(spec, (0.5, 0.5), ("lexical", "image_text_knn")) == (True, "")
    assert not CAPS.supports(spec, (0.5, 0.5), ("lexical", "text_knn"))[0]


def test_the_searcher_routes_by_the_bounds_of_the_retrievers_that_run():
    """A photo request of a profile with text bounds only runs unbounded retrievers: it is fused
    server-side on a cluster without bounds, and a text request of the same profile is not."""
    from query_builder.search_flow import SearcherCore

    p = _bounded(load_profile("hybrid_minmax"), text_knn=("clip", 0.6))
    core = SearcherCore(None, p, index="products")
    photo = _built(p, SearchRequest(vectors=QueryVectors(image=VEC, image_feature=VEC)))
    assert "text_knn" not in photo.retrievers and photo.is_fused
    assert core._route(photo, CAPS) == ("server", None)
    text = _built(p, SearchRequest(text="红色 椅子", vectors=QueryVectors(text=VEC)))
    path, why = core._route(text, CAPS)
    assert path == "client" and "lower_bounds" in why


# --- live, on the 2.19 test node (the 3.5 node has no neural-search: the server-side path with
# bounds cannot run here) -------------------------------------------------------------------
BOUNDS = {"text_knn": ("clip", 0.75), "text_image_knn": ("apply", 0.5)}


@pytest.mark.engine
def test_2_19_takes_lower_bounds_but_ignores_them_so_the_probe_says_no(os_client, catalog):
    caps = detect_fusion(os_client, catalog[0])
    assert caps.hybrid and "min_max" in caps.normalizations
    assert not caps.lower_bounds
    left = os_client.transport.perform_request("GET", "/_search/pipeline")
    assert not [name for name in left if name.startswith("cmsearch-probe-")]
    # what the probe measured: 2.19 accepts an apply-at-0 bound, and the second hit still gets
    # plain min-max's 0.001 of the first's score (0.5 where the bound counts)
    body = {"phase_results_processors": [{"normalization-processor": {
        "normalization": {"technique": "min_max", "parameters": {"lower_bounds": [
            {"mode": "apply", "min_score": 0.0}, {"mode": "ignore"}]}},
        "combination": {"technique": "arithmetic_mean", "parameters": {"weights": [0.5, 0.5]}}}}]}
    os_client.transport.perform_request("PUT", "/_search/pipeline/cmsearch-test-bounds", body=body)
    try:
        doc = calls.run_sync(os_client, fusion_probe._first_id(catalog[0]))
        share = calls.run_sync(os_client, fusion_probe._second_hit_share(catalog[0], "cmsearch-test-bounds",
                                                                         caps.pagination_depth, doc))
    finally:
        os_client.transport.perform_request("DELETE", "/_search/pipeline/cmsearch-test-bounds")
    assert share == pytest.approx(0.001, abs=1e-5)


@pytest.mark.engine
def test_a_bounded_profile_on_2_19_is_fused_client_side_with_the_note_as_the_mirror_ranks(os_client, catalog):
    caps = detect_fusion(os_client, catalog[0])
    p = _bounded(load_profile("hybrid_minmax"), **BOUNDS)
    s = searcher(os_client, catalog, p, caps)
    request = text_request("红色 椅子", ["red", "chair"], size=10)
    res = s.search(request)
    assert res.fusion_path == "client"
    assert any("does not honour lower_bounds" in n for n in res.notes), res.notes

    # the mirror by hand: every retriever's own list, its own bound, the weighted arithmetic mean
    built = s.prepare(request)
    assert built.retrievers == ("lexical", "text_knn", "text_image_knn")
    lines = built.msearch_body(catalog[0])[:-2]
    responses = os_client.msearch(body=lines)["responses"]
    fused: dict[str, float] = {}
    for kind, weight, resp in zip(built.retrievers, built.weights, responses):
        hits = resp["hits"]["hits"]
        bound = LowerBound(*BOUNDS[kind]) if kind in BOUNDS else None
        for h, n in zip(hits, min_max_bounded([float(h["_score"]) for h in hits], bound)):
            fused[hit_id(h)] = fused.get(hit_id(h), 0.0) + weight * n / sum(built.weights)
    expected = sorted(fused.items(), key=lambda kv: -kv[1])[:10]
    assert [h.score for h in res.hits] == pytest.approx([v for _, v in expected], rel=1e-6)
    got = {h.id: h.score for h in res.hits}
    for doc, score in expected:   # only ties may swap
        assert got.get(doc) == pytest.approx(score, rel=1e-6), (doc, [h.id for h in res.hits])

    # and the bounds count here: without them the same search scores otherwise
    plain = load_profile("hybrid_minmax")
    unbounded = searcher(os_client, catalog, plain.with_(fusion=replace(plain.fusion, mode="client")), caps)
    assert [h.score for h in unbounded.search(request).hits] != pytest.approx([h.score for h in res.hits])


@pytest.mark.engine
def test_server_fusion_demanded_with_bounds_2_19_ignores_is_an_error(os_client, catalog):
    caps = detect_fusion(os_client, catalog[0])
    p = _bounded(load_profile("hybrid_minmax"), **BOUNDS)
    p = p.with_(fusion=replace(p.fusion, mode="server"))
    with pytest.raises(SearchError, match="does not honour lower_bounds"):
        searcher(os_client, catalog, p, caps).search(text_request("红色 椅子", ["red", "chair"]))
