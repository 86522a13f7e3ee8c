"""Pure parts of issue 13 (floors, long queries, collapse, suggestions): bodies and folding, no node."""
from __future__ import annotations

import pytest

from analysis import Tokenizer, Vocabulary
from mappings import fields
from query_builder import Profile, ProfileError, QueryVectors, SearchRequest, build_search, load_profile, understand
from analysis import suggestions as sa
from query_builder import suggest as sg
from query_builder.bodies import VARIANTS
from query_builder.dsl import Knn
from query_builder.results import Hit
from query_builder.search_flow import fold_variants

VOCAB = Vocabulary(brands=["莲花"], category_paths=["服装>连衣裙"])
TK = Tokenizer(VOCAB.words())
VEC = (0.1, 0.2, 0.3, 0.4)


def _built(profile: Profile, text: str = "深色 连衣裙", **kw):
    req = SearchRequest(text=text, vectors=QueryVectors(text=VEC), **kw)
    return build_search(req, profile, understand(req, profile, TK, VOCAB), vocabulary=VOCAB)


def _floored(**changes) -> Profile:
    d = load_profile("hybrid_minmax").to_dict()
    for r in d["retrievers"]:
        if r["kind"] in ("text_knn", "text_image_knn"):
            r["min_score"] = 0.9
    d.update(changes)
    return Profile.from_dict(d)


def _walk(node):
    if isinstance(node, dict):
        for k, v in node.items():
            yield k, v
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)


# --- floors -----------------------------------------------------------------------------------
def test_radial_knn_sends_min_score_instead_of_k():
    assert Knn("f", VEC, 100, min_score=0.9).to_dict() == {"knn": {"f": {"vector": list(VEC), "min_score": 0.9}}}
    assert Knn("f", VEC, 100).to_dict()["knn"]["f"]["k"] == 100


def test_floored_profile_builds_radial_knn_in_every_floored_sub_query_and_nested_one():
    built = _built(_floored())
    knns = {k: v for sub in built.sub_queries for k, v in _walk(sub.query.to_dict()) if k == "knn"}
    assert knns and all("min_score" in spec and "k" not in spec for v in knns.values() for spec in [next(iter(v.values()))])
    assert built.floored and all(s.k == 0 for s in built.sub_queries)   # no nested-shortfall retry on a radial list
    nested = [v for s in built.sub_queries for k, v in _walk(s.query.to_dict()) if k == "nested"]
    assert nested and "min_score" in next(iter(nested[0]["query"]["knn"].values()))
    unfloored = build_search(SearchRequest(text="深色 连衣裙", vectors=QueryVectors(text=VEC)), _floored(),
                             understand(SearchRequest(text="深色 连衣裙"), _floored(), TK, VOCAB), floors="none")
    assert not unfloored.floored and "min_score" not in json_of(unfloored)


def json_of(built) -> str:
    import json

    return json.dumps(built.body())


def test_no_words_floor_applies_only_at_that_level():
    d = load_profile("hybrid_minmax").to_dict()
    for r in d["retrievers"]:
        if r["kind"] == "text_knn":
            r["no_words_min_score"] = 0.95
    p = Profile.from_dict(d)
    req = SearchRequest(text="深色 连衣裙", vectors=QueryVectors(text=VEC))
    u = understand(req, p, TK, VOCAB)
    normal, strict = build_search(req, p, u), build_search(req, p, u, floors="no_words")
    assert not normal.floored and '"min_score"' not in json_of(normal)
    assert strict.floored and '"min_score": 0.95' in json_of(strict)
    assert strict.count_body()["query"]["bool"]["minimum_should_match"] == 1
    with pytest.raises(ValueError, match="floors"):
        build_search(req, p, u, floors="high")


def test_the_no_words_count_keeps_the_k_nearest_above_the_floor_not_a_radial_search():
    """A radial search costs in proportion to the products above its floor, which grows with the
    catalog: the count asks each k-NN retriever for its k nearest and keeps those above the floor."""
    d = load_profile("hybrid_minmax").to_dict()
    for r in d["retrievers"]:
        if "no_words_min_score" in r:
            r["no_words_min_score"] = 0.9
    p = Profile.from_dict(d)
    req = SearchRequest(text="深色 连衣裙", vectors=QueryVectors(text=VEC))
    strict = build_search(req, p, understand(req, p, TK, VOCAB), floors="no_words")
    clauses = strict.count_body()["query"]["bool"]["should"]   # each retriever's query, boosts beside it
    text, image = (c["bool"]["must"][0]["function_score"] for c in clauses[1:])
    assert text["min_score"] == 0.9 and text["query"]["knn"]["text_vector"]["k"] == 100
    assert "min_score" not in text["query"]["knn"]["text_vector"]
    inner = image["query"]["nested"]["query"]["knn"]
    assert image["min_score"] == 0.9 and all("k" in v and "min_score" not in v for v in inner.values())


def test_shipped_profile_without_floors_keeps_k():
    built = _built(load_profile("dense_text"))
    assert not built.floored and '"k": 100' in json_of(built)


@pytest.mark.parametrize("key", ["min_score", "no_words_min_score"])
@pytest.mark.parametrize("bad", [0, -0.1, 1.5, "0.9", True])
def test_bad_min_score_is_refused(bad, key):
    with pytest.raises(ProfileError, match=key):
        Profile.from_dict({"name": "x", "retrievers": [{"kind": "text_knn", key: bad}]})


def test_min_score_on_the_lexical_retriever_is_refused():
    with pytest.raises(ProfileError, match="minimum_should_match"):
        Profile.from_dict({"name": "x", "retrievers": [{"kind": "lexical", "min_score": 0.5}]})


def test_no_match_and_collapse_values_are_checked():
    with pytest.raises(ProfileError, match="no_match"):
        Profile.from_dict({"name": "x", "retrievers": ["lexical"], "no_match": "junk"})
    with pytest.raises(ProfileError, match="collapse"):
        Profile.from_dict({"name": "x", "retrievers": ["lexical"], "collapse": "title"})


def test_total_body_is_always_sent_with_track_total_hits():
    built = _built(_floored().with_(fusion=type(_floored().fusion)(mode="client")))
    lines = built.msearch_body("idx")
    assert lines[-1]["track_total_hits"] is True and lines[-1]["size"] == 0 and "aggs" not in lines[-1]


# --- long queries ------------------------------------------------------------------------------
LONG = "莲花 深色 连衣裙 修身 显瘦 长袖 秋冬 新款 女装 气质 通勤"


def _multi_match(built):
    return next(v for s in built.sub_queries for k, v in _walk(s.query.to_dict()) if k == "multi_match")


def test_long_query_gets_its_minimum_match_and_weighted_text_knn():
    p = load_profile("hybrid_minmax").with_(verbose_minimum_should_match="30%", verbose_text_weight=0.5)
    built = _built(p, LONG)
    assert _multi_match(built)["minimum_should_match"] == "30%"
    w = dict(zip(built.retrievers, built.weights))
    assert "text_knn" in w and w["text_knn"] == pytest.approx(0.125 / (0.40 + 0.125 + 0.025), abs=1e-5)
    short = _built(p, "深色 连衣裙")
    assert _multi_match(short)["minimum_should_match"] == p.lexical.minimum_should_match


def test_long_query_with_text_weight_zero_leaves_text_knn_out():
    built = _built(load_profile("hybrid_minmax").with_(verbose_text_weight=0.0), LONG)
    assert built.retrievers == ("lexical",)


# --- collapse ----------------------------------------------------------------------------------
def test_single_retriever_collapses_in_the_engine_with_variants():
    body = _built(load_profile("bm25").with_(collapse=fields.GROUP, collapse_variants=2)).body()
    assert body["collapse"] == {"field": fields.GROUP, "inner_hits": {
        "name": VARIANTS, "size": 3, "_source": False, "docvalue_fields": [fields.ID]}}
    assert fields.GROUP in body["docvalue_fields"]


def test_hybrid_fetches_the_candidate_list_to_fold_and_sends_no_collapse():
    built = _built(_floored(collapse=fields.SERIES), offset=10, size=5)
    body = built.body()
    assert "collapse" not in body and body["from"] == 0 and body["size"] == built.depth
    assert built.collapse_client_side and fields.SERIES in body["docvalue_fields"]


def _hit(i):
    return Hit(id=i, title=i, brand="", category="", price=None, image_url=None, score=1.0)


def test_fold_keeps_the_best_of_each_group_and_pages_after_folding():
    built = _built(_floored(collapse=fields.GROUP, collapse_variants=1), offset=1, size=2)
    groups = {"a": "g1", "b": "g1", "c": "g2", "d": None, "e": "g1", "f": "g3"}
    raw = [({"fields": {fields.GROUP: [g]} if g else {}}, 1.0) for g in groups.values()]
    page = fold_variants([_hit(i) for i in groups], raw, built)
    # folded: a(+b), c, d, f -> offset 1, size 2 -> c, d
    assert [(h.id, h.variants) for h in page] == [("c", ()), ("d", ())]
    first = fold_variants([_hit(i) for i in groups], raw, _built(_floored(collapse=fields.GROUP, collapse_variants=1)))
    assert first[0].id == "a" and first[0].variants == ("b",)     # at most collapse_variants


def test_fold_of_engine_collapse_reads_inner_hits():
    built = _built(load_profile("bm25").with_(collapse=fields.GROUP))
    inner = {"inner_hits": {VARIANTS: {"hits": {"hits": [{"fields": {fields.ID: [x]}} for x in ("a", "b", "c")]}}}}
    (hit,) = fold_variants([_hit("a")], [(inner, 1.0)], built)
    assert hit.variants == ("b", "c")


# --- suggestions -------------------------------------------------------------------------------
def test_suggestion_key_folds_case_width_spaces_and_punctuation():
    assert sa.suggestion_key("Lian Yi-Qun") == "lianyiqun"
    assert sa.suggestion_key("ＮＩＫＥ 运动鞋!") == "nike运动鞋"
    assert sa.suggestion_key(" ,.-") == ""


def test_suggest_body_has_one_completion_suggester_per_kind():
    body = sg.suggest_body("Lian yi", 5)
    assert set(body["suggest"]) == set(sg.KINDS)
    for kind, s in body["suggest"].items():
        assert s["prefix"] == "lianyi"
        assert s["completion"] == {"field": fields.SUGGEST, "size": 5, "skip_duplicates": True,
                                   "contexts": {fields.SUGGEST_CONTEXT: [kind]}}
    assert sg.suggest_body("!!", 5) is None
    assert set(sg.suggest_body("x", 3, (sg.BRAND,))["suggest"]) == {sg.BRAND}


@pytest.mark.parametrize("size,kinds", [(0, sg.KINDS), (101, sg.KINDS), (5, ("colour",)), (5, ())])
def test_suggest_body_refuses_bad_size_or_kind(size, kinds):
    with pytest.raises(ValueError):
        sg.suggest_body("x", size, kinds)


def test_entries_weigh_popularity_before_match():
    entries = sa.suggest_entries(["莲花", "深色", "连衣裙"], ["莲花"], "连衣裙", popularity=3)
    weights = {(e["contexts"][fields.SUGGEST_CONTEXT][0], e["weight"]) for e in entries}
    assert weights == {(sg.TITLE, 3 * 8 + 3), (sg.TITLE, 3 * 8 + 1), (sg.BRAND, 3 * 8 + 2),
                       (sg.CATEGORY, 3 * 8 + 2)}
    # the least popular product's best match still ranks below any more popular product
    assert max(e["weight"] for e in sa.suggest_entries(["a"], popularity=0)) < \
        min(e["weight"] for e in sa.suggest_entries(["a"], popularity=1))
    later = next(e for e in entries if e["weight"] == 3 * 8 + 1)["input"]
    assert "深色连衣裙" in later and "连衣裙" in later


def test_entries_have_the_shared_pinyin_and_initials():
    assert sa.suggest_entries(["运动鞋"])[0]["input"] == ["运动鞋", "yundongxie", "ydx"]
    # the same phrase-aware reading ingest writes into the pinyin fields (银行 is yin hang)
    assert sa.pinyin_forms("银行卡") == ("yinhangka", "yhk")
    assert sa.pinyin_forms("iPhone 15 手机") == ("iphone15shouji", "iphone15sj")
    assert sa.pinyin_forms("Nike") == ()
    assert "pinyin-" in sa.suggest_identity()


def test_parse_merges_kinds_by_weight_then_kind_and_drops_duplicates():
    def opt(score, **src):
        return {"_score": score, "_source": src}
    resp = {"suggest": {
        sg.TITLE: [{"options": [opt(11, **{fields.ID: "p1", fields.TITLE_RAW: "莲花 连衣裙"}),
                                opt(3, **{fields.ID: "p2", fields.TITLE_RAW: "莲花 连衣裙"})]}],
        sg.BRAND: [{"options": [opt(11, **{fields.BRAND: "莲花"})]}],
        sg.CATEGORY: [{"options": [opt(18, **{fields.CATEGORY_LEAF: "服装>连衣裙"})]}]}}
    out = sg.parse_suggestions(resp, 10)
    assert [(s.kind, s.text, s.product_id) for s in out] == [
        (sg.CATEGORY, "连衣裙", ""), (sg.TITLE, "莲花 连衣裙", "p1"), (sg.BRAND, "莲花", "")]
    assert len(sg.parse_suggestions(resp, 2)) == 2


# --- floors belong to the space ----------------------------------------------------------------
def test_space_floors_fill_the_shipped_profiles_and_nothing_else():
    from types import SimpleNamespace

    from query_builder.search_flow import SearcherCore

    p = load_profile("hybrid_minmax")
    assert {r.kind: r.no_words_min_score for r in p.retrievers if r.no_words_min_score} == \
        {"text_knn": "space", "text_image_knn": "space"}
    assert not any(r.floored for r in p.retrievers)        # not filled in: no floor
    filled = p.with_floors({"text_knn": 0.9, "image_text_knn": 0.5})
    got = {r.kind: r.no_words_floor for r in filled.retrievers}
    assert got["text_knn"] == 0.9 and got["text_image_knn"] is None and got["image_text_knn"] is None
    core = SearcherCore(None, "hybrid_minmax", SimpleNamespace(floors={"text_knn": 0.93, "text_image_knn": 0.6}))
    assert {r.kind: r.no_words_floor for r in core.profile.retrievers if r.floored} == \
        {"text_knn": 0.93, "text_image_knn": 0.6}
    assert not any(r.floored for r in SearcherCore(None, "hybrid_minmax").profile.retrievers)


def test_a_floor_is_a_number_or_the_spaces():
    with pytest.raises(ProfileError, match="'space'"):
        Profile.from_dict({"name": "x", "retrievers": [{"kind": "text_knn", "no_words_min_score": "spaces"}]})
    with pytest.raises(ProfileError, match="lexical"):
        Profile.from_dict({"name": "x", "retrievers": [{"kind": "lexical", "no_words_min_score": "space"}]})


def test_space_floors_come_from_the_encoder_and_the_heads():
    from models.floors import space_floors

    e5 = {"text": {"name": "intfloat/multilingual-e5-small"}}
    assert space_floors(e5, None) == {"text_knn": 0.935}
    heads = {"text_head": {"file": None}, "floors": {"text_image_knn": 0.61}}
    assert space_floors(e5, heads) == {"text_knn": 0.935, "text_image_knn": 0.61}
    # a trained text head moves the text space: the encoder's figure no longer holds
    assert space_floors(e5, {"text_head": {"file": "text_head.onnx"}, "floors": {"text_image_knn": 0.61}}) == \
        {"text_image_knn": 0.61}
    assert space_floors({"text": {"name": "another/encoder"}}, None) == {}


def test_the_text_image_floor_is_above_every_nonsense_best_photo():
    import numpy as np

    from models.training.floors import nonsense_queries, text_image_floor

    assert nonsense_queries() == nonsense_queries() and len(set(nonsense_queries())) == 64
    rng = np.random.default_rng(3)
    unit = lambda m: m / np.linalg.norm(m, axis=1, keepdims=True)   # noqa: E731
    q, photos = unit(rng.normal(size=(64, 16))), unit(rng.normal(size=(200, 16)))
    out = text_image_floor(q, photos)
    best = ((1 + q @ photos.T) / 2).max(axis=1)
    assert best.max() < out["text_image_knn"] <= best.max() + 0.004
    assert out["nonsense_best_max"] == round(float(best.max()), 4)
