"""The retriever and fusion registries: one entry per kind, and a new retriever is one entry plus a field.

The unit tests need no node.  The live test registers a retriever over a test-only mapping
field on the real node and searches with it through a profile, single and fused, server-
and client-side, with explain: nothing outside this file is edited for it.
"""
from __future__ import annotations

import ast
import copy
import json
import uuid
from pathlib import Path

import numpy as np
import pytest

import mappings
from analysis import Tokenizer
from evaluation.tune import default_space
from mappings import fields as F
from query_builder import (COMBINATION_METHODS, FUSION_METHODS, Profile, ProfileError, QueryVectors, RETRIEVERS,
                           RetrieverKind, Searcher, SearchRequest, build_search, fuse, load_profile, register_retriever,
                           understand)
from query_builder.dsl import Knn, Nested
from query_builder.fusion import RankedList
from query_builder.profile import FusionSpec
from query_builder.retrievers import VECTOR_TEXT, unregister
from query_builder.search_pipelines import search_pipeline

REPO = Path(__file__).resolve().parents[1]
TEST_FIELD = "test_title_vector"          # a field only this test's index has
NEW_KIND = "title_knn"


@pytest.fixture
def title_knn():
    kind = register_retriever(RetrieverKind(NEW_KIND, field=TEST_FIELD, vector=VECTOR_TEXT,
                                            description="query text vector -> a test-only title vector"))
    yield kind
    unregister(NEW_KIND)


# --- retrievers, without a node -----------------------------------------------------------------
def test_shipped_retrievers_search_fields_named_in_mappings():
    vector_fields = set(F.VECTOR_FIELDS)
    for kind in RETRIEVERS.values():
        if kind.lexical:
            assert kind.field is None and kind.needs == ("text",)
        else:
            assert kind.field_path in vector_fields, kind
    nested = {k.name for k in RETRIEVERS.values() if k.nested}
    assert nested == {"text_image_knn", "image_image_knn"}
    # a photo match's best image is shown before a text -> image match's
    assert RETRIEVERS["image_image_knn"].image_priority < RETRIEVERS["text_image_knn"].image_priority
    assert {k.name for k in RETRIEVERS.values() if k.text_vector_only} == {"text_knn", "text_image_knn"}


def test_an_unknown_retriever_names_the_registered_ones():
    with pytest.raises(ProfileError, match="unknown retriever 'title_knn'; allowed: .*fused_knn"):
        Profile.from_dict({"name": "x", "retrievers": [NEW_KIND]})


def test_a_bad_entry_is_refused_when_registered():
    with pytest.raises(ValueError, match="vector 'words'"):
        RetrieverKind("bad", field=F.TEXT_VECTOR, vector="words")
    with pytest.raises(ValueError, match="needs the index field"):
        RetrieverKind("bad", field=None, vector=VECTOR_TEXT)
    with pytest.raises(ValueError, match="already registered"):
        register_retriever(RetrieverKind("text_knn", field=F.TEXT_VECTOR, vector=VECTOR_TEXT))


def test_a_registered_retriever_builds_from_its_entry_alone(title_knn):
    profile = Profile.from_dict({"name": "t", "retrievers": ["lexical", {"kind": NEW_KIND, "k": 7}]})
    spec = profile.retrievers[1]
    assert spec.boost_scale == title_knn.boost_scale and spec.requests == title_knn.requests
    req = SearchRequest(text="红色 椅子", vectors=QueryVectors(text=(0.1, 0.2, 0.3)))
    built = build_search(req, profile, understand(req, profile, Tokenizer()))
    assert built.retrievers == ("lexical", NEW_KIND)
    knn = built.sub_queries[1].query
    knn = knn if isinstance(knn, Knn) else knn.must[0]
    assert isinstance(knn, Knn) and knn.field == TEST_FIELD and knn.k == 7 and knn.name == NEW_KIND
    # a verbose query leaves it out like the other text-vector retrievers (the registry says it is one)
    long = profile.with_(verbose_query_words=2)
    assert build_search(req, long, understand(req, long, Tokenizer())).retrievers == ("lexical",)
    # a photo-only request cannot run it: it needs the text vector
    photo = SearchRequest(vectors=QueryVectors(image=(0.1, 0.2, 0.3)))
    with pytest.raises(Exception, match=f"{NEW_KIND}.*text_vector"):
        build_search(photo, profile, understand(photo, profile, Tokenizer()))


def test_a_nested_registered_retriever_scores_by_its_best_image():
    kind = register_retriever(RetrieverKind("feature_knn_2", field=F.IMAGE_FEATURE, vector="image_feature",
                                            nested=True, image_priority=5))
    try:
        profile = Profile.from_dict({"name": "n", "retrievers": ["feature_knn_2", "image_image_knn"]})
        req = SearchRequest(vectors=QueryVectors(image_feature=(0.3, 0.4)))
        built = build_search(req, profile, understand(req, profile, Tokenizer()))
        q = built.sub_queries[0].query
        assert isinstance(q, Nested) and q.inner_hits.name == kind.name and q.query.field == F.nested(F.IMAGE_FEATURE)
        assert built.image_probe[0] == kind.name          # its priority 5 beats image_image_knn's
    finally:
        unregister("feature_knn_2")


# --- fusion, without a node ---------------------------------------------------------------------
def test_every_fusion_method_is_one_entry_used_on_both_paths():
    assert set(FUSION_METHODS) == {"min_max", "l2", "z_score", "rrf"}
    assert set(COMBINATION_METHODS) == {"arithmetic_mean", "geometric_mean", "harmonic_mean"}
    for name, method in FUSION_METHODS.items():
        fusion = FusionSpec(normalization=name)
        body = search_pipeline("p", fusion, (0.25, 0.75)).body
        assert body["phase_results_processors"] == [method.processor(fusion.combination, (0.25, 0.75), 60)]
        assert fusion.label == method.label(fusion.combination, 60)
        lists = [RankedList("a", (("x", 3.0), ("y", 1.0))), RankedList("b", (("y", 0.9),))]
        scores = {d.id: d.score for d in fuse(lists, (0.5, 0.5), fusion)}
        assert scores["x"] > 0 and scores["y"] > 0
    assert FUSION_METHODS["rrf"].rank_based and not FUSION_METHODS["rrf"].server_weights
    assert "rrf (rank_constant 60)" == FusionSpec(normalization="rrf").label


def test_tune_offers_the_rank_constant_for_rank_based_methods_only():
    rrf = load_profile("hybrid_rrf").to_dict()
    assert "fusion.rank_constant" in {p.path for p in default_space(rrf).params}
    minmax = load_profile("hybrid_minmax").to_dict()
    assert "fusion.rank_constant" not in {p.path for p in default_space(minmax).params}


# --- arrows ---------------------------------------------------------------------------------------
def _imports(package: str) -> dict[str, set[str]]:
    out = {}
    for path in sorted((REPO / package).rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        out[str(path.relative_to(REPO))] = names
    return out


@pytest.mark.parametrize("package,above", [
    ("engine", {"query_builder", "plugin_ingest", "evaluation", "cmsearch"}),
    ("query_builder", {"evaluation", "cmsearch"}),
])
def test_imports_point_down(package, above):
    offenders = {path: sorted(names & above) for path, names in _imports(package).items() if names & above}
    assert not offenders, offenders


def test_no_module_is_named_for_nothing_in_particular():
    names = {p.name for p in (REPO / "query_builder").glob("*.py")}
    assert not names & {"build.py", "pipeline.py", "capabilities.py"}


# --- a new retriever on the real node ------------------------------------------------------------
@pytest.mark.engine
def test_a_registered_retriever_searches_its_own_field_through_a_profile(os_client, title_knn):
    from test_search_live import ALIASES, CATALOG, DIMS, _document, concept_vec

    name = f"qb-registry-{uuid.uuid4().hex[:8]}"
    body = copy.deepcopy(mappings.product_index_body(DIMS))
    props = body["mappings"]["properties"]
    props[TEST_FIELD] = copy.deepcopy(props[F.TEXT_VECTOR])      # the one mapping field the new kind needs
    os_client.indices.create(index=name, body=body)
    try:
        tk = Tokenizer([row[2] for row in CATALOG])
        rng = np.random.default_rng(7)
        # the test field knows something text_vector does not: p05 (a white kids' chair) is a "lamp" there
        query = concept_vec(["lamp"])
        for row in CATALOG:
            doc = _document(tk, row, rng)
            doc[TEST_FIELD] = (query if row[0] == "p05" else concept_vec(row[5])).tolist()
            os_client.index(index=name, id=row[0], body=doc)
        os_client.indices.refresh(index=name)

        req = SearchRequest(text="台灯", vectors=QueryVectors(text=tuple(query)), size=5, explain=True)
        only = Profile.from_dict({"name": "only_title_knn", "retrievers": [NEW_KIND]})
        res = Searcher(os_client, only, index=name, aliases=ALIASES).search(req)
        assert [h.id for h in res.hits][0] == "p05" and res.retrievers == (NEW_KIND,)
        text_knn = Searcher(os_client, Profile.from_dict({"name": "t", "retrievers": ["text_knn"]}), index=name,
                            aliases=ALIASES).search(req)
        assert [h.id for h in text_knn.hits][0] == "p06"           # the real lamp, by text_vector

        for mode in ("server", "client"):
            fused = Profile.from_dict({"name": f"fused_{mode}", "retrievers": ["lexical", NEW_KIND],
                                       "fusion": {"mode": mode}})
            res = Searcher(os_client, fused, index=name, aliases=ALIASES).search(req)
            assert res.fusion_path == mode and res.retrievers == ("lexical", NEW_KIND)
            top = {h.id for h in res.hits[:2]}
            assert top == {"p05", "p06"}, (mode, [h.id for h in res.hits])
            scores = {s.retriever: s for s in res.hits[0].explain.retrievers}
            assert scores[NEW_KIND].raw is not None and set(scores) == {"lexical", NEW_KIND}
        assert json.dumps(res.to_dict(), ensure_ascii=False)
    finally:
        os_client.indices.delete(index=name, ignore_unavailable=True)
