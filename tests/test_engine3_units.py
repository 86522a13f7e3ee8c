"""OpenSearch 3.x without a node: the engine version choice, finding a Java new enough for it,
the data's recorded version, and the request bodies and pipelines that suit 3.x clusters."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from analysis import AliasTable, Tokenizer, Vocabulary
from engine import node as engine_node
from engine import versions as engine_versions
from engine.errors import EngineError
from engine.node import LocalEngine
from engine.node_dir import NodeDir
from engine.versions import engine_version, find_java
from query_builder import Filters, QueryVectors, SearchRequest, build_search, load_profile, understand
from query_builder.fusion_methods import FUSION_METHODS
from query_builder.fusion_probe import FusionCapabilities
from query_builder.profile import FusionSpec
from query_builder.search_pipelines import search_pipeline


# ---- version choice ------------------------------------------------------------------------
def test_versions_are_named_short_or_by_release(monkeypatch):
    monkeypatch.delenv("CMSEARCH_ENGINE_VERSION", raising=False)
    assert engine_version().name == "2.19"
    assert engine_version("3.5").opensearch == "3.5.0"
    assert engine_version("3.5.0").name == "3.5"
    monkeypatch.setenv("CMSEARCH_ENGINE_VERSION", "3.5")
    assert engine_version().name == "3.5"
    assert engine_version("2.19").name == "2.19"         # an explicit choice beats the environment


def test_an_unknown_version_names_the_choices(monkeypatch):
    with pytest.raises(EngineError, match=r"unknown engine version '4\.0'.*2\.19, 3\.5"):
        engine_version("4.0")
    monkeypatch.setenv("CMSEARCH_ENGINE_VERSION", "9")
    with pytest.raises(EngineError, match="from CMSEARCH_ENGINE_VERSION"):
        engine_version()
    LocalEngine(state_dir="/nonexistent/x").pid()          # finding a node never needs the version


def test_each_version_builds_in_its_own_directory_from_its_own_pom(tmp_path, monkeypatch):
    monkeypatch.delenv("CMSEARCH_ENGINE_VERSION", raising=False)
    old = LocalEngine(state_dir=tmp_path, version="2.19")
    new = LocalEngine(state_dir=tmp_path, version="3.5")
    assert old.build_dir == tmp_path / "build" and new.build_dir == tmp_path / "build-3.5"
    assert (engine_node.JAVA_DIR / new.engine.pom).is_file() and (engine_node.JAVA_DIR / old.engine.pom).is_file()
    assert engine_node._pom_digest(old.engine) != engine_node._pom_digest(new.engine)
    assert new.engine.java >= 21 and old.engine.java == 17
    assert not any("neuralsearch" in c for c in new.engine.plugin_classes)   # none resolves for 3.x


# ---- Java ----------------------------------------------------------------------------------
def _jdk(root: Path, name: str, version: str) -> Path:
    home = root / name
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "java").write_text("#!/bin/sh\nexit 1\n")
    (home / "bin" / "java").chmod(0o755)
    (home / "release").write_text(f'IMPLEMENTOR="test"\nJAVA_VERSION="{version}"\n')
    return home


@pytest.fixture
def jdks(tmp_path, monkeypatch):
    root = tmp_path / "jvm"
    monkeypatch.setattr(engine_versions, "JVM_ROOTS", (root,))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.delenv("CMSEARCH_JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    return root


def test_the_newest_installed_jdk_that_is_new_enough_is_found(jdks):
    _jdk(jdks, "java-17", "17.0.15")
    _jdk(jdks, "java-21", "21.0.4")
    new = _jdk(jdks, "temurin-25", "25.0.1")
    assert find_java(21, "OpenSearch 3.5.0") == new
    assert engine_versions.java_feature(jdks / "java-17") == 17


def test_java_home_comes_first_when_new_enough(jdks, monkeypatch):
    _jdk(jdks, "temurin-25", "25.0.1")
    mine = _jdk(jdks.parent, "mine-21", "21.0.2")
    monkeypatch.setenv("JAVA_HOME", str(mine))
    assert find_java(21, "x") == mine
    old = _jdk(jdks.parent, "old-17", "17.0.1")
    monkeypatch.setenv("JAVA_HOME", str(old))             # too old: skipped, not an error
    assert find_java(21, "x") == jdks / "temurin-25"
    assert find_java(17, "x") == old


def test_no_java_new_enough_is_a_clear_error(jdks):
    _jdk(jdks, "java-17", "17.0.15")
    with pytest.raises(EngineError, match=r"OpenSearch 3\.5\.0 needs Java 21 or newer; found only .*java-17 "
                                          r"\(Java 17.*CMSEARCH_JAVA_HOME"):
        find_java(21, "OpenSearch 3.5.0")


def test_cmsearch_java_home_is_taken_as_given(jdks, monkeypatch):
    _jdk(jdks, "temurin-25", "25.0.1")
    old = _jdk(jdks.parent, "old", "1.8.0_392")
    monkeypatch.setenv("CMSEARCH_JAVA_HOME", str(old))
    with pytest.raises(EngineError, match=r"needs Java 21 or newer; CMSEARCH_JAVA_HOME=.*old is Java 8"):
        find_java(21, "OpenSearch 3.5.0")
    monkeypatch.setenv("CMSEARCH_JAVA_HOME", str(jdks.parent / "nothing"))
    with pytest.raises(EngineError, match="holds no working bin/java"):
        find_java(21, "OpenSearch 3.5.0")


# ---- the data's version --------------------------------------------------------------------
def test_data_records_its_version_and_another_version_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("CMSEARCH_ENGINE_VERSION", raising=False)
    nd = NodeDir(tmp_path / "node", "cmsearch-node")
    assert nd.data_version() is None
    (nd.path / "data").mkdir(parents=True)
    assert nd.data_version() == "2.19"                     # data from before versions were recorded
    LocalEngine(state_dir=tmp_path, version="2.19")._check_version(nd)
    with pytest.raises(EngineError, match=r"written by OpenSearch 2\.19: start it with `--version 2\.19`.*"
                                          r"CMSEARCH_ENGINE_DIR"):
        LocalEngine(state_dir=tmp_path, version="3.5")._check_version(nd)
    nd.version_file.write_text("3.5\n")
    with pytest.raises(EngineError, match=r"an OpenSearch 3\.5 node runs under .*stop it first"):
        LocalEngine(state_dir=tmp_path, version="2.19")._check_version(nd, running=True)
    # with no version asked for, the engine is the one whose data is there
    assert LocalEngine(state_dir=tmp_path).engine.name == "3.5"
    monkeypatch.setenv("CMSEARCH_ENGINE_VERSION", "2.19")
    assert LocalEngine(state_dir=tmp_path).engine.name == "2.19"


# ---- bodies and pipelines for 3.x clusters -------------------------------------------------
VOCAB = Vocabulary(brands=["ikea", "apple"], category_paths=["家居>家具>椅子", "数码>手机"],
                   aliases=AliasTable.from_dict({}), terms={"红色": 4, "椅子": 5})
TOKENIZER = Tokenizer(VOCAB.words())
TEXT_VEC = (0.1, 0.2, 0.3, 0.4)


def _nested_hybrids(node, top=True) -> int:
    """How many ``hybrid`` queries sit anywhere but at the top of a body's query."""
    if isinstance(node, dict):
        return sum((0 if top and k == "hybrid" else int(k == "hybrid")) + _nested_hybrids(v, top=False)
                   for k, v in node.items())
    if isinstance(node, list):
        return sum(_nested_hybrids(v, top=False) for v in node)
    return 0


@pytest.mark.parametrize("profile", ["hybrid_minmax", "hybrid_rrf", "hybrid_minmax_noboost"])
def test_hybrid_is_the_top_level_query_with_boosts_and_filters_inside(profile):
    """neural-search 3.1-3.5 fails a hybrid inside function_score (or another compound query) and
    3.6 runs it without the pipeline's normalization: boosts, filters and floors go inside each
    sub-query, never around the hybrid."""
    request = SearchRequest(text="ikea 红色 椅子", vectors=QueryVectors(text=TEXT_VEC),
                            filters=Filters(brand=("ikea",)), facets=("brand",))
    p = load_profile(profile)
    built = build_search(request, p, understand(request, p, TOKENIZER, VOCAB), vocabulary=VOCAB)
    body = built.body()
    assert built.is_fused and list(body["query"]) == ["hybrid"]
    assert _nested_hybrids(body["query"]) == 0
    assert "function_score" not in json.dumps(body)


def test_rrf_pipeline_carries_weights_only_when_they_differ():
    rrf = FUSION_METHODS["rrf"]
    assert rrf.processor("arithmetic_mean", (0.5, 0.5), 60) == {
        "score-ranker-processor": {"combination": {"technique": "rrf", "rank_constant": 60}}}
    weighted = search_pipeline("p", FusionSpec(normalization="rrf", rank_constant=40), (0.25, 0.75)).body
    assert weighted["phase_results_processors"][0] == {"score-ranker-processor": {"combination": {
        "technique": "rrf", "rank_constant": 40, "parameters": {"weights": [0.25, 0.75]}}}}


def test_weighted_rrf_goes_server_side_only_where_the_probe_found_it():
    spec = FusionSpec(normalization="rrf")
    old = FusionCapabilities(hybrid=True, normalizations=frozenset({"min_max", "rrf"}),
                             combinations=frozenset({"arithmetic_mean"}))
    new = FusionCapabilities(hybrid=True, normalizations=frozenset({"min_max", "rrf", "z_score"}),
                             combinations=frozenset({"arithmetic_mean"}), weighted=frozenset({"rrf"}))
    ok, why = old.supports(spec, (0.25, 0.75))
    assert not ok and "takes no weights" in why
    assert old.supports(spec, (0.5, 0.5)) == (True, "")
    assert new.supports(spec, (0.25, 0.75)) == (True, "")
    z = FusionSpec(normalization="z_score")
    assert new.supports(z, (0.25, 0.75)) == (True, "")
    ok, why = old.supports(z, (0.25, 0.75))
    assert not ok and "no 'z_score' normalization" in why


def test_a_cluster_without_neural_search_fuses_client_side():
    """What the local 3.x node is: k-NN, no hybrid query."""
    none = FusionCapabilities(hybrid=False, detail="hybrid query failed: unknown query [hybrid]")
    ok, why = none.supports(FusionSpec(), (0.5, 0.5))
    assert not ok and "no hybrid search" in why and "unknown query [hybrid]" in why


def test_a_secured_node_of_3x_is_refused_with_the_reason(tmp_path):
    with pytest.raises(EngineError, match="secured node runs OpenSearch 2.19 only"):
        LocalEngine(state_dir=tmp_path, version="3.5", secure=True).start()
    assert not (tmp_path / "build-3.5").exists()   # refused before building or starting anything
