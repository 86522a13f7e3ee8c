"""The real local node: version, the product index, Chinese BM25, kNN, filters, hybrid."""
from __future__ import annotations

import subprocess

import numpy as np
import pytest

import mappings
from engine.capabilities import detect
from query_builder import detect_fusion
from mappings import VectorDims, fields as F
from plugin_ingest.index_admin import IndexExistsError, check_index, create_product_index

pytestmark = pytest.mark.engine

DIMS = VectorDims(shared=8, image_feature=4)


def _unit(v):
    v = np.asarray(v, dtype=np.float32)
    return (v / np.linalg.norm(v)).tolist()


@pytest.fixture(scope="module")
def tokenizer():
    from analysis.tokenize import Tokenizer

    return Tokenizer(["跑步鞋"])


@pytest.fixture
def product_index(os_client, fresh_index, tokenizer):
    name = fresh_index("engine")
    create_product_index(os_client, name, DIMS)
    rng = np.random.default_rng(7)
    docs = [
        ("p1", "男士透气跑步鞋", "nike", [1, 0, 0, 0, 0, 0, 0, 0]),
        ("p2", "不锈钢电热水壶", "midea", [0, 1, 0, 0, 0, 0, 0, 0]),
        ("p3", "女士轻便跑步鞋", "adidas", [0.9, 0.1, 0, 0, 0, 0, 0, 0]),
        ("p4", "儿童运动鞋", "nike", [0.7, 0, 0.3, 0, 0, 0, 0, 0]),
    ]
    for pid, title, brand, vec in docs:
        os_client.index(index=name, id=pid, body={
            F.ID: pid, F.TITLE: tokenizer.field_text(title), F.TITLE_RAW: title, F.BRAND: brand,
            F.TEXT_VECTOR: _unit(vec), F.FUSED_VECTOR: _unit(vec),
            F.IMAGES: [{F.IMAGE_URL: f"{pid}.jpg", F.IMAGE_VECTOR: _unit(vec),
                        F.IMAGE_FEATURE: _unit(rng.random(4) + 0.1)}]})
    os_client.indices.refresh(index=name)
    return name


def _ids(res):
    return [h["_id"] for h in res["hits"]["hits"]]


def test_engine_answers_with_version_2_19(os_client):
    assert os_client.info()["version"]["number"].startswith("2.19.")


def test_product_index_is_created_from_mappings(os_client, product_index):
    live = os_client.indices.get_mapping(index=product_index)[product_index]["mappings"]
    assert check_index(os_client, product_index, DIMS) == []
    assert live["properties"][F.TEXT_VECTOR]["method"]["engine"] == "lucene"
    assert set(live["properties"]) == set(mappings.product_index_body(DIMS)["mappings"]["properties"])


def test_create_refuses_to_overwrite(os_client, product_index):
    with pytest.raises(IndexExistsError, match="--recreate"):
        create_product_index(os_client, product_index, DIMS)


def test_wrong_dimension_is_reported_against_the_live_index(os_client, product_index):
    problems = check_index(os_client, product_index, VectorDims(shared=384, image_feature=4))
    assert problems and "dimension 8" in problems[0] and "384" in problems[0]


def test_chinese_bm25_finds_running_shoes_not_kettle(os_client, product_index, tokenizer):
    res = os_client.search(index=product_index, body={"query": {"match": {F.TITLE: tokenizer.field_text("跑步鞋")}}})
    ids = _ids(res)
    assert "p1" in ids and "p3" in ids and "p2" not in ids


def test_knn_returns_nearest(os_client, product_index):
    res = os_client.search(index=product_index, body={"size": 1, "query": {"knn": {F.TEXT_VECTOR: {
        "vector": _unit([0, 1, 0.05, 0, 0, 0, 0, 0]), "k": 1}}}})
    assert _ids(res) == ["p2"]


def test_knn_with_brand_filter_returns_only_that_brand(os_client, product_index):
    res = os_client.search(index=product_index, body={"query": {"knn": {F.TEXT_VECTOR: {
        "vector": _unit([1, 0, 0, 0, 0, 0, 0, 0]), "k": 4, "filter": {"term": {F.BRAND: "nike"}}}}}})
    assert set(_ids(res)) == {"p1", "p4"}


def test_bool_of_match_and_knn(os_client, product_index, tokenizer):
    res = os_client.search(index=product_index, body={"query": {"bool": {"should": [
        {"match": {F.TITLE: tokenizer.field_text("跑步鞋")}},
        {"knn": {F.TEXT_VECTOR: {"vector": _unit([0.7, 0, 0.3, 0, 0, 0, 0, 0]), "k": 2}}}]}}})
    assert {"p1", "p3", "p4"} <= set(_ids(res))


@pytest.mark.parametrize("processor", [
    {"normalization-processor": {"normalization": {"technique": "min_max"},
                                 "combination": {"technique": "arithmetic_mean", "parameters": {"weights": [0.5, 0.5]}}}},
    {"score-ranker-processor": {"combination": {"technique": "rrf", "rank_constant": 60}}},
], ids=["min_max", "rrf"])
def test_hybrid_through_pipeline(os_client, product_index, tokenizer, processor):
    caps = detect(os_client, fusion_probe=detect_fusion)
    if not caps.hybrid:
        pytest.skip("neural-search did not load: no hybrid query on this node")
    pipe = f"{product_index}-pipe"
    os_client.transport.perform_request("PUT", f"/_search/pipeline/{pipe}",
                                        body={"phase_results_processors": [processor]})
    try:
        res = os_client.search(index=product_index, params={"search_pipeline": pipe}, body={"query": {"hybrid": {
            "queries": [{"match": {F.TITLE: tokenizer.field_text("跑步鞋")}},
                        {"knn": {F.TEXT_VECTOR: {"vector": _unit([1, 0, 0, 0, 0, 0, 0, 0]), "k": 3}}}]}}})
        ids = _ids(res)
        assert ids[0] == "p1" and "p2" not in ids[:2]
    finally:
        os_client.transport.perform_request("DELETE", f"/_search/pipeline/{pipe}")


def test_capabilities_found_by_trying(os_client):
    caps = detect(os_client, fusion_probe=detect_fusion)
    assert caps.knn and caps.hybrid and caps.rrf
    alone = detect(os_client)          # the engine layer alone probes no fusion
    assert alone.knn and alone.hybrid is None and alone.rrf is None


def test_second_start_reuses_the_running_node(local_engine):
    before = local_engine.pid()
    url = local_engine.start()
    assert url == local_engine.url() and local_engine.pid() == before
    out = subprocess.run(["pgrep", "-f", f"org.cmsearch.engine.Launcher {local_engine.node_dir}"],
                         capture_output=True, text=True)
    assert len(out.stdout.split()) == 1


def test_state_dir_is_private_to_its_owner(local_engine):
    import os
    import stat

    assert stat.S_IMODE(os.stat(local_engine.state_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(local_engine.log_file).st_mode) == 0o600
