"""A real OpenSearch 3.5 node: it builds and starts beside the session's node, has k-NN and no
neural-search, and the searcher finds that out and fuses client-side.

Runs where a Java 21+ is found (skipped otherwise, with the reason); when the whole session
already runs on 3.5 (``CMSEARCH_TEST_ENGINE_VERSION=3.5``) it uses that node instead of a second.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from engine.capabilities import detect
from engine.errors import EngineError
from engine.node import LocalEngine
from engine.versions import engine_version, find_java
from mappings import VectorDims, fields as F
from plugin_ingest.index_admin import create_product_index
from query_builder import QueryVectors, Searcher, SearchRequest, detect_fusion, load_profile

pytestmark = [pytest.mark.engine, pytest.mark.engine3]

REPO = Path(__file__).resolve().parents[1]
DIMS = VectorDims(shared=8, image_feature=4)


def _unit(v):
    v = np.asarray(v, dtype=np.float32)
    return (v / np.linalg.norm(v)).tolist()


@pytest.fixture(scope="module")
def client3(request):
    from engine.client import ConnectionSettings

    version = engine_version("3.5")
    if (os.environ.get("CMSEARCH_TEST_ENGINE_VERSION") or "") in (version.name, version.opensearch):
        url = request.getfixturevalue("local_engine").url()
        yield ConnectionSettings.resolve(url).client()
        return
    try:
        find_java(version.java, f"OpenSearch {version.opensearch}")
    except EngineError as exc:
        pytest.skip(str(exc))
    eng = LocalEngine(state_dir=REPO / ".state" / "test-engine3", heap="512m", version=version.name)
    private = eng.url() is not None
    if private:  # another test session owns that node: run our own beside it, never stop theirs
        eng = LocalEngine(state_dir=eng.state_dir.with_name(f"{eng.state_dir.name}-{os.getpid()}"), heap="512m",
                          version=version.name)
    eng.start(exit_with_parent=True, timeout=420)
    try:
        yield ConnectionSettings.resolve(eng.url()).client()
    finally:
        eng.stop()
        if private:
            shutil.rmtree(eng.state_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def index3(client3):
    from analysis.tokenize import Tokenizer

    tk = Tokenizer(["跑步鞋", "电热水壶"])
    name = "engine3-smoke"
    client3.indices.delete(index=name, ignore_unavailable=True)
    create_product_index(client3, name, DIMS)
    for pid, title, brand, vec in [("p1", "男士透气跑步鞋", "nike", [1, 0, 0, 0, 0, 0, 0, 0]),
                                   ("p2", "不锈钢电热水壶", "midea", [0, 1, 0, 0, 0, 0, 0, 0]),
                                   ("p3", "女士轻便跑步鞋", "adidas", [0.9, 0.1, 0, 0, 0, 0, 0, 0])]:
        client3.index(index=name, id=pid, body={
            F.ID: pid, F.TITLE: tk.field_text(title), F.TITLE_RAW: title, F.BRAND: brand,
            F.TEXT_VECTOR: _unit(vec), F.FUSED_VECTOR: _unit(vec),
            F.IMAGES: [{F.IMAGE_URL: f"{pid}.jpg", F.IMAGE_VECTOR: _unit(vec), F.IMAGE_FEATURE: _unit([1, 1, 0, 0])}]})
    client3.indices.refresh(index=name)
    yield name
    client3.indices.delete(index=name, ignore_unavailable=True)


def test_the_node_is_opensearch_3_with_knn_and_no_hybrid(client3):
    caps = detect(client3, fusion_probe=detect_fusion)
    assert caps.version.startswith("3.5.")
    assert caps.knn and caps.hybrid is False and caps.rrf is False
    assert caps.weighted_rrf is False and caps.normalizations == ()


@pytest.mark.parametrize("profile", ["hybrid_minmax", "hybrid_rrf"])
def test_hybrid_profiles_fuse_client_side_on_3x(client3, index3, profile):
    searcher = Searcher(client3, profile, index=index3)
    res = searcher.search(SearchRequest(text="跑步鞋", vectors=QueryVectors(text=tuple(_unit([1, 0.05, 0, 0, 0, 0, 0, 0]))),
                                        facets=("brand",)))
    assert res.fusion_path == "client"
    assert any("fused client-side" in n and "no hybrid search" in n for n in res.notes)
    assert [h.id for h in res.hits][:2] == ["p1", "p3"] and "p2" not in [h.id for h in res.hits][:2]
    assert {b.value for b in res.facets.brand} >= {"nike", "adidas"}


def test_server_side_fusion_demanded_on_3x_without_neural_search_is_a_clear_error(client3, index3):
    from dataclasses import replace

    from query_builder import SearchError

    p = load_profile("hybrid_minmax")
    searcher = Searcher(client3, p.with_(fusion=replace(p.fusion, mode="server")), index=index3)
    with pytest.raises(SearchError, match="server-side fusion, but the cluster has no hybrid search"):
        searcher.search(SearchRequest(text="跑步鞋", vectors=QueryVectors(text=tuple(_unit([1, 0, 0, 0, 0, 0, 0, 0])))))


def test_the_probe_finds_no_3x_fusion_features_on_a_2_19_node(os_client):
    """Weighted RRF and z_score are neural-search 3.x's: found by trying, not by the version."""
    caps = detect(os_client, fusion_probe=detect_fusion)
    if not caps.version.startswith("2.19.") or not caps.hybrid:
        pytest.skip(f"the session's node is OpenSearch {caps.version} (hybrid {caps.hybrid}), not 2.19 with neural-search")
    assert caps.rrf and caps.weighted_rrf is False
    assert "z_score" not in caps.normalizations and "min_max" in caps.normalizations
