"""Building requests, without a node: golden bodies per shipped profile, validation, safety.

Golden files live in tests/golden/<profile>.json.  After a deliberate change to
what the builder emits, regenerate them with::

    UPDATE_GOLDEN=1 pytest tests/test_query_builder.py

and review the diff like code.
"""
from __future__ import annotations

import ast
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest

from analysis import AliasTable, Tokenizer, Vocabulary
from mappings import fields
from query_builder import (BuildError, Filters, NumberRange, Profile, ProfileError, QueryImage, QueryVectors,
                           RequestError, SearchRequest, build_search, fused_query_vector, load_profile,
                           shipped_profiles, understand)

GOLDEN = Path(__file__).with_name("golden")
REPO = Path(__file__).resolve().parents[1]

ALIASES = AliasTable.from_dict({
    "brands": {"sk-ii": ["sk2", "神仙水"], "estee lauder": ["雅诗兰黛"]},
    "categories": {"数码>手机": ["phone"], "家居>家具>椅子": ["chair"]},
})
VOCAB = Vocabulary(brands=["sk-ii", "estee lauder", "ikea", "apple"],
                   category_paths=["家居>家具>椅子", "家居>家具>桌子", "数码>手机", "数码>手机配件>手机壳"],
                   aliases=ALIASES,
                   # the index's own words: these are words, never pinyin or typos
                   terms={"phone": 3, "case": 2, "红色": 4, "椅子": 5, "实木": 1})
TOKENIZER = Tokenizer(VOCAB.words())

# small deterministic vectors: golden files stay readable, and the builder does not care about size
TEXT_VEC = (0.1, 0.2, 0.3, 0.4)
IMAGE_VEC = (0.4, 0.3, 0.2, 0.1)
FEATURE = (0.5, 0.0, 0.25, 0.0, 0.25, 0.0)

CASES = {
    "text": SearchRequest(text="红色 椅子 雅诗兰黛", vectors=QueryVectors(text=TEXT_VEC),
                          facets=("brand", "category", "price")),
    "photo": SearchRequest(vectors=QueryVectors(image=IMAGE_VEC, image_feature=FEATURE),
                           image_categories=(("椅子", 0.8), ("桌子", 0.15)), image_text="SK-II 230ml"),
    "text_photo_filtered": SearchRequest(
        text="phone case", vectors=QueryVectors(text=TEXT_VEC, image=IMAGE_VEC, image_feature=FEATURE),
        filters=Filters(brand=("Apple",), category=("数码",), price=NumberRange(10, 500),
                        attribute=("color=red", "color=blue", "size=xl")),
        offset=10, size=5, context_product_ids=("p9",)),
}


def _built(profile: Profile, request: SearchRequest):
    u = understand(request, profile, TOKENIZER, VOCAB)
    return build_search(request, profile, u, vocabulary=VOCAB)


def _snapshot(profile: Profile) -> dict:
    out = {}
    for name, req in CASES.items():
        try:
            b = _built(profile, req)
        except BuildError as exc:
            out[name] = {"error": str(exc)}
            continue
        p = b.pipeline
        out[name] = {"retrievers": list(b.retrievers), "weights": list(b.weights), "body": b.body(),
                     "params": b.params(), "pipeline": None if p is None else {"name": p.name, "body": p.body},
                     "facet_body": b.facet_body(), "notes": list(b.notes)}
    return out


@pytest.mark.parametrize("name", shipped_profiles())
def test_golden_request_bodies(name):
    snap = _snapshot(load_profile(name))
    path = GOLDEN / f"{name}.json"
    text = json.dumps(snap, ensure_ascii=False, indent=2, sort_keys=True) + "\n"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8")
    assert path.is_file(), f"no golden file {path}; run with UPDATE_GOLDEN=1 to create it"
    assert json.loads(path.read_text(encoding="utf-8")) == json.loads(text), \
        f"{name}: built bodies differ from {path} (UPDATE_GOLDEN=1 to accept a deliberate change)"


def test_every_shipped_profile_has_a_golden_file():
    assert {p.stem for p in GOLDEN.glob("*.json")} == set(shipped_profiles())
    assert {"bm25", "dense_text", "image", "hybrid_minmax", "hybrid_rrf", "hybrid_minmax_noboost"} <= \
        set(shipped_profiles())


# --- structure that must hold for every profile and case --------------------------------
def _walk(node, key=None):
    if isinstance(node, dict):
        for k, v in node.items():
            yield k, v
            yield from _walk(v, k)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v, key)


@pytest.mark.parametrize("name", shipped_profiles())
def test_filters_sit_inside_every_knn_clause(name):
    b = _built(load_profile(name), CASES["text_photo_filtered"])
    body = b.body()
    knns = [v for k, v in _walk(body) if k == "knn"]
    assert knns or b.retrievers == ("lexical",)
    for clause in knns:
        (spec,) = clause.values()
        flt = spec["filter"]["bool"]["filter"]
        assert {"terms": {fields.BRAND: ["apple"]}} in flt
        assert {"range": {fields.PRICE: {"gte": 10.0, "lte": 500.0}}} in flt
        assert {"terms": {fields.ATTR_TERMS: ["color=red", "color=blue"]}} in flt
        assert {"terms": {fields.ATTR_TERMS: ["size=xl"]}} in flt


def test_hybrid_carries_boosts_inside_each_sub_query_not_around_it():
    b = _built(load_profile("hybrid_minmax"), CASES["text"])
    body = b.body()
    assert list(body["query"]) == ["hybrid"]
    assert not [k for k, _ in _walk(body) if k == "function_score"]
    for sub in body["query"]["hybrid"]["queries"]:
        names = [v for k, v in _walk(sub) if k == "_name"]
        assert f"{fields.BRAND}:estee lauder" in names and "category:家居>家具>椅子" in names
        assert "parent_category:家居>家具" in names


def test_noboost_profile_has_no_boost_clauses():
    body = _built(load_profile("hybrid_minmax_noboost"), CASES["text"]).body()
    assert not [k for k, _ in _walk(body) if k == "constant_score"]


def test_nested_image_knn_scores_a_product_by_its_best_image_and_returns_it():
    b = _built(load_profile("image"), CASES["photo"])
    nested = [v for k, v in _walk(b.body()) if k == "nested"]
    assert nested and all(n["score_mode"] == "max" and n["path"] == fields.IMAGES for n in nested)
    assert all(n["inner_hits"]["size"] == 1 for n in nested)
    knn = nested[0]["query"]["knn"][fields.nested(fields.IMAGE_FEATURE)]
    assert knn["k"] == 200   # k 100 over-fetched x2 for nested efficient filtering


def test_user_text_is_never_query_syntax():
    nasty = 'title:* OR brand:"x" AND (a:b) \\ /regex/ ~2 ^9 {"bool":1}'
    req = SearchRequest(text=nasty)
    body = _built(load_profile("bm25"), req).body()
    keys = {k for k, _ in _walk(body)}
    assert not keys & {"query_string", "simple_query_string", "regexp", "wildcard", "script"}
    mm = [v for k, v in _walk(body) if k == "multi_match"][0]
    assert set(mm["query"].split()) <= set(TOKENIZER.tokens(nasty))
    assert ":" not in mm["query"] and "*" not in mm["query"]


def test_a_10000_character_query_is_truncated_with_a_note():
    req = SearchRequest(text="红色椅子" * 2500)
    profile = load_profile("bm25")
    u = understand(req, profile, TOKENIZER, VOCAB)
    assert len(u.text) <= profile.max_query_chars and len(u.tokens) <= profile.max_query_tokens
    b = build_search(req, profile, u, vocabulary=VOCAB)
    assert any("10000 characters" in n for n in b.notes)


def test_nothing_typed_is_dropped_and_mentions_become_boosts():
    u = understand(SearchRequest(text="雅诗兰黛 红色 椅子"), load_profile("bm25"), TOKENIZER, VOCAB)
    assert u.tokens == ("雅诗兰黛", "红色", "椅子")
    assert u.brands == ("estee lauder",) and u.category_paths == ("家居>家具>椅子",)


def test_photo_categories_and_ocr_brands_become_boosts():
    u = understand(CASES["photo"], load_profile("image"), TOKENIZER, VOCAB)
    assert u.tokens == () and u.brands == ("sk-ii",)
    cats = {c.path: (c.strength, c.source) for c in u.categories}
    assert cats == {"家居>家具>椅子": (0.8, "photo")}   # 桌子 is below min_probability 0.2


def test_single_retriever_profiles_need_no_pipeline():
    b = _built(load_profile("bm25"), CASES["text"])
    assert b.pipeline is None and b.params() == {}
    assert "hybrid" not in b.body()["query"]


def test_pipeline_name_is_deterministic_and_tracks_weights():
    p = load_profile("hybrid_minmax")
    a, b = _built(p, CASES["text"]).pipeline, _built(p, CASES["text"]).pipeline
    assert a == b and a.name.startswith("cmsearch-hybrid_minmax-")
    c = _built(p, CASES["text_photo_filtered"]).pipeline      # other retrievers active: other weights
    assert c.name != a.name
    body = a.body["phase_results_processors"][0]["normalization-processor"]
    assert sum(body["combination"]["parameters"]["weights"]) == pytest.approx(1.0)
    rrf = _built(load_profile("hybrid_rrf"), CASES["text"]).pipeline.body
    assert rrf["phase_results_processors"][0] == {
        "score-ranker-processor": {"combination": {"technique": "rrf", "rank_constant": 60}}}


def test_weights_are_renormalized_over_the_active_retrievers():
    b = _built(load_profile("hybrid_minmax"), CASES["photo"])
    assert b.retrievers == ("image_image_knn", "image_text_knn", "fused_knn")
    assert b.weights == pytest.approx((0.2 / 0.5, 0.2 / 0.5, 0.1 / 0.5), abs=1e-6)


def test_retrievers_limited_to_some_request_kinds():
    p = load_profile("hybrid_minmax")
    text = _built(p, CASES["text"])
    assert text.retrievers == ("lexical", "text_knn", "text_image_knn")      # no fused k-NN for text alone
    assert not any("not computed" in n for n in text.notes)
    both = _built(p, CASES["text_photo_filtered"])
    assert both.retrievers == ("lexical", "text_knn", "image_image_knn", "image_text_knn", "fused_knn")
    assert both.server_fits
    with pytest.raises(ProfileError, match="requests"):
        Profile.from_dict({"name": "x", "retrievers": [{"kind": "fused_knn", "requests": ["photo"]}]})


def test_a_verbose_query_is_left_to_the_lexical_retriever():
    p = load_profile("hybrid_minmax")
    long_text = "easy to keep clean since the cover can be machine washed"
    b = _built(p, SearchRequest(text=long_text, vectors=QueryVectors(text=TEXT_VEC)))
    assert b.retrievers == ("lexical",) and any("11-word query" in n for n in b.notes)
    short = _built(p, SearchRequest(text="machine washable cover", vectors=QueryVectors(text=TEXT_VEC)))
    assert "text_knn" in short.retrievers
    # a photo keeps its own retrievers; only the text k-NN ones step aside
    both = _built(p, SearchRequest(text=long_text, vectors=QueryVectors(text=TEXT_VEC, image=IMAGE_VEC,
                                                                        image_feature=FEATURE)))
    assert both.retrievers == ("lexical", "image_image_knn", "image_text_knn", "fused_knn")
    off = _built(p.with_(verbose_query_words=0), SearchRequest(text=long_text, vectors=QueryVectors(text=TEXT_VEC)))
    assert "text_knn" in off.retrievers
    # a profile without a lexical retriever keeps its k-NN whatever the length
    assert _built(load_profile("dense_text"), SearchRequest(text=long_text, vectors=QueryVectors(text=TEXT_VEC))
                  ).retrievers == ("text_knn",)


def test_lexical_boosts_lift_matches_and_only_relations_retrieve():
    """In a hybrid, brand and category boosts never make a product a lexical match; accessories and
    related products may.  BM25 alone (boosts_retrieve) retrieves by every boost."""
    b = _built(load_profile("hybrid_minmax"), CASES["text_photo_filtered"])
    q = b.sub_queries[0].query.to_dict()["bool"]
    assert q["minimum_should_match"] == 1 and q["filter"]
    matched, *alternatives = q["should"]
    assert "multi_match" in matched["bool"]["must"][0]
    lifts = {c["constant_score"]["_name"].split(":")[0] for c in matched["bool"].get("should", [])}
    assert lifts <= {fields.BRAND, "category", "parent_category"} and lifts
    assert {c["constant_score"]["_name"].split(":")[0] for c in alternatives} == {"accessory", fields.RELATED}
    plain = _built(load_profile("hybrid_minmax"), SearchRequest(text="红色 实木")).sub_queries[0].query.to_dict()["bool"]
    assert "multi_match" in plain["must"][0] and "minimum_should_match" not in plain
    alone = _built(load_profile("bm25"), CASES["text_photo_filtered"])
    matched, *alternatives = alone.sub_queries[0].query.to_dict()["bool"]["should"]
    assert matched["bool"]["must"][0]["multi_match"] and "should" not in matched["bool"]
    kinds = {c["constant_score"]["_name"].split(":")[0] for c in alternatives}
    assert kinds == {b.kind for b in alone.boosts} and "category" in kinds


def test_fused_query_vector_weights_and_normalizes():
    v = fused_query_vector(QueryVectors(text=(1.0, 0.0), image=(0.0, 2.0)), (0.5, 0.5))
    assert v == pytest.approx((2 ** -0.5, 2 ** -0.5))
    assert fused_query_vector(QueryVectors(text=(3.0, 4.0)), (0.5, 0.5)) == pytest.approx((0.6, 0.8))
    with pytest.raises(BuildError, match="same shared space"):
        fused_query_vector(QueryVectors(text=(1.0, 0.0), image=(1.0, 0.0, 0.0)), (0.5, 0.5))


def test_a_profile_with_no_retriever_for_the_input_is_a_clear_error():
    with pytest.raises(BuildError, match="no retriever"):
        _built(load_profile("dense_text"), SearchRequest(text="红色 椅子"))   # no vectors, no encoders


def test_missing_vectors_leave_dense_retrievers_out_with_a_note():
    b = _built(load_profile("hybrid_minmax"), SearchRequest(text="红色 椅子"))
    assert b.retrievers == ("lexical",)
    assert any("text_knn" in n and "not computed" in n for n in b.notes)


# --- request validation -------------------------------------------------------------------
def test_neither_text_nor_image_is_an_error():
    with pytest.raises(RequestError, match="needs query text, a query image"):
        SearchRequest()
    with pytest.raises(RequestError, match="needs query text"):
        SearchRequest(text="   ")


def test_unknown_filter_fields_are_rejected_with_the_allowed_ones():
    with pytest.raises(RequestError) as e:
        Filters.from_dict({"colour": "red", "brand": "x"})
    assert "colour" in str(e.value)
    for allowed in fields.FILTERABLE:
        assert allowed in str(e.value)


@pytest.mark.parametrize("bad, msg", [
    ({"price": {"min": 10, "max": 5}}, "above max"),
    ({"price": "cheap"}, "takes"),
    ({"price": {"low": 1}}, "'min' and 'max'"),
    ({"attribute": ["red"]}, "key=value"),
    ({"brand": [{"x": 1}]}, "takes strings"),
])
def test_bad_filter_values(bad, msg):
    with pytest.raises(RequestError, match=msg):
        Filters.from_dict(bad)


def test_page_and_facet_limits():
    with pytest.raises(RequestError, match="size"):
        SearchRequest(text="a", size=1000)
    with pytest.raises(RequestError, match="unknown facet"):
        SearchRequest(text="a", facets=("colour",))
    with pytest.raises(RequestError, match="unknown request field"):
        SearchRequest.from_dict({"text": "a", "query": "b"})


def test_request_from_dict():
    r = SearchRequest.from_dict({"text": "椅子", "filters": {"price": [None, 100]}, "facets": ["brand"],
                                 "vectors": {"text": [1, 0]}})
    assert r.filters.price == NumberRange(None, 100.0) and r.vectors.text == (1.0, 0.0)


# --- profiles -------------------------------------------------------------------------
def test_profile_loading_is_strict(tmp_path):
    with pytest.raises(ProfileError, match="unknown retriever"):
        Profile.from_dict({"name": "x", "retrievers": ["bm25"]})
    with pytest.raises(ProfileError, match="unknown key"):
        Profile.from_dict({"name": "x", "retrievers": ["lexical"], "fusoin": {}})
    with pytest.raises(ProfileError, match="allowed"):
        Profile.from_dict({"name": "x", "retrievers": ["lexical"], "fusion": {"normalization": "zscore"}})
    with pytest.raises(ProfileError, match="not a text field"):
        Profile.from_dict({"name": "x", "retrievers": ["lexical"], "lexical": {"fields": {"brand": 1}}})
    with pytest.raises(ProfileError, match="at most 5"):
        Profile.from_dict({"name": "x", "retrievers": list(("lexical", "text_knn", "text_image_knn",
                                                            "image_image_knn", "image_text_knn", "fused_knn")),
                           "fusion": {"mode": "server"}})
    with pytest.raises(ProfileError, match="shipped profiles"):
        load_profile("no_such_profile")
    p = tmp_path / "mine.json"
    p.write_text(json.dumps({"name": "mine", "retrievers": [{"kind": "lexical", "k": 50}]}), encoding="utf-8")
    assert load_profile(p).retrievers[0].k == 50


def test_profile_roundtrips_through_its_dict():
    p = load_profile("hybrid_rrf")
    assert Profile.from_dict(p.to_dict()) == p


# --- the encode step runs the real space: tests/test_space.py ---------------------------------


# --- the rule that field names are spelled only in mappings/fields.py -------------------------
# string constants that equal a field name but are OpenSearch DSL keys, not field references
_DSL_KEYS = {"vector", "description", "suggest"}   # DSL keys that are also field names


@pytest.mark.parametrize("package", ["analysis", "query_builder"])
def test_no_field_name_literals_outside_mappings(package):
    names = {v for k, v in vars(fields).items() if k.isupper() and isinstance(v, str) and len(v) > 1}
    offenders = []
    for path in sorted((REPO / package).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef)) and n.body
                      and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                if node.value in names - _DSL_KEYS:
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.value!r}")
    assert not offenders, offenders


def test_nested_shortfall_rule():
    from query_builder.searcher import nested_shortfall

    assert nested_shortfall(got=3, want=5, matching=9)
    assert not nested_shortfall(got=3, want=5, matching=3)    # only three products can match
    assert not nested_shortfall(got=5, want=5, matching=9)


def test_transform_varies_a_built_query_without_touching_it():
    from dataclasses import replace as dc_replace

    from query_builder.dsl import Knn, transform

    b = _built(load_profile("image"), CASES["photo"])
    q = b.sub_queries[0].query
    bigger = transform(q, lambda x: dc_replace(x, k=x.k * 4) if isinstance(x, Knn) else x)
    ks = [v["k"] for k, v in _walk(bigger.to_dict()) if k in (fields.nested(fields.IMAGE_FEATURE),)]
    assert ks == [800]
    assert [v["k"] for k, v in _walk(q.to_dict()) if k == fields.nested(fields.IMAGE_FEATURE)] == [200]


def test_best_image_body_asks_only_for_the_page():
    b = _built(load_profile("hybrid_minmax"), CASES["photo"])
    body = b.best_image_body(["p1", "p2"])
    knn = body["query"]["nested"]["query"]["knn"][fields.nested(fields.IMAGE_FEATURE)]
    assert knn["k"] == 2 and knn["filter"] == {"ids": {"values": ["p1", "p2"]}}
    assert body["query"]["nested"]["inner_hits"]["name"] == "image_image_knn"
    assert _built(load_profile("bm25"), CASES["text"]).best_image_body(["p1"]) is None
