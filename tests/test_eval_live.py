"""Evaluation end to end on the real node: a five-product catalog, the shipped ``bm25`` profile,
numbers checked against a hand computation, results written to and read back from the index.

The catalog is built so BM25's order is certain without computing BM25: a query's words in a
title (weight 3) beat the same words in a description (weight 1), and two-word queries must
match both words (the profile's ``minimum_should_match``).

    p1 红色沙发 (red sofa)   p2 蓝色沙发 (blue sofa)   p3 木椅子, description 红色沙发搭配
    p4 台灯 (desk lamp)      p5 办公桌 (office desk)

    q1 "红色 沙发"  judged p1: 2, p2: 1   -> bm25 returns p1, p3   (p2 lacks 红色)
         nDCG@10 = 2 / (2 + 1/log2 3) = 0.760177;  recall@10 = 1/2;  MRR = 1
    q2 "台灯"       judged p4: 1           -> p4                  nDCG 1, recall 1, MRR 1
    q3 "椅子"       judged p5: 1           -> p3                  all 0
    q4 a photo      judged p1: 1           -> bm25 cannot search a photo: not applicable
    q5 "沙发"       judged p1: 0           -> no relevant product: left out
"""
from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from analysis import Tokenizer
from evaluation import results_index as ri
from evaluation.judgments import JudgedQuery, JudgmentSet, write_trec
from evaluation.metrics import DEFAULT_METRICS
from evaluation.runner import run_profiles
from evaluation.search_adapter import SearchFactory
from evaluation.tune import tune
from mappings import VectorDims, fields as F
from plugin_ingest.index_admin import create_product_index

pytestmark = pytest.mark.engine

DOCS = [("p1", "红色沙发", ""), ("p2", "蓝色沙发", ""), ("p3", "木椅子", "红色沙发搭配"), ("p4", "台灯", ""),
        ("p5", "办公桌", "")]
# text vectors for the dense test: unit axes e0..e7, p2 between p1 and p3
E = [[1.0 if i == j else 0.0 for i in range(8)] for j in range(8)]
TEXT_VECTORS = {"p1": E[0], "p2": [0.8, 0.6, 0, 0, 0, 0, 0, 0], "p3": E[1], "p4": E[2], "p5": E[3]}
NDCG_Q1 = 2 / (2 + 1 / math.log2(3))
EXPECTED = {"ndcg@10": (NDCG_Q1 + 1 + 0) / 3, "recall@10": (0.5 + 1 + 0) / 3, "recall@100": (0.5 + 1 + 0) / 3,
            "mrr": (1 + 1 + 0) / 3}


@pytest.fixture(scope="module")
def catalog(os_client):
    import uuid

    name = f"eval-{uuid.uuid4().hex[:10]}"
    create_product_index(os_client, name, VectorDims(8, 4))
    tok = Tokenizer()
    for pid, title, desc in DOCS:
        body = {F.ID: pid, F.TITLE: tok.field_text(title), F.TITLE_RAW: title}
        if desc:
            body[F.DESCRIPTION] = tok.field_text(desc)
        body[F.TEXT_VECTOR] = TEXT_VECTORS[pid]
        os_client.index(index=name, id=pid, body=body)
    os_client.indices.refresh(index=name)
    yield name
    os_client.indices.delete(index=name, ignore_unavailable=True)


@pytest.fixture
def judged(tmp_path):
    from PIL import Image

    photo = tmp_path / "q4.png"
    Image.new("RGB", (8, 8), (200, 30, 30)).save(photo)
    return JudgmentSet("tiny", (
        JudgedQuery("q1", "红色 沙发", None, {"p1": 2, "p2": 1}),
        JudgedQuery("q2", "台灯", None, {"p4": 1}),
        JudgedQuery("q3", "椅子", None, {"p5": 1}),
        JudgedQuery("q4", None, photo, {"p1": 1}),
        JudgedQuery("q5", "沙发", None, {"p1": 0}),
    ))


def test_bm25_matches_the_hand_computation(os_client, catalog, judged):
    factory = SearchFactory(os_client, catalog)
    run = run_profiles(judged, factory.profiles(["bm25"]), DEFAULT_METRICS)
    per_query = {r.query_id: r for r in run.results}
    assert per_query["q1"].top == ("p1", "p3")
    assert per_query["q1"].metrics == pytest.approx({"ndcg@10": NDCG_Q1, "recall@10": 0.5, "recall@100": 0.5,
                                                     "mrr": 1.0})
    assert per_query["q2"].metrics["ndcg@10"] == pytest.approx(1.0)
    assert per_query["q3"].top == ("p3",) and per_query["q3"].metrics["mrr"] == 0.0
    s = run.summaries["bm25"]
    assert s.means == pytest.approx(EXPECTED)
    assert (s.queries, s.not_applicable) == (3, 1)
    assert run.unjudged == ("q5",)


def test_two_profiles_side_by_side_and_results_index(os_client, catalog, judged, fresh_index):
    factory = SearchFactory(os_client, catalog)
    title_only = {"name": "title_only", "retrievers": [{"kind": "lexical"}],
                  "lexical": {"fields": {F.TITLE: 1.0}}, "boosts": {"enabled": False}}
    run = run_profiles(judged, {"bm25": factory("bm25"), "title_only": factory(title_only)}, DEFAULT_METRICS)
    # title only: q1 finds p1 alone (the description match is gone), the rest is unchanged
    assert run.summaries["title_only"].means == pytest.approx(EXPECTED)
    assert [r.top for r in run.for_profile("title_only") if r.query_id == "q1"] == [("p1",)]
    index = fresh_index("evalres")
    n = ri.write_run(os_client, run, index, product_index=catalog)
    assert n == 2 * 4 + 2 * 3 * 4            # 2 profiles x 4 means + 2 profiles x 3 queries x 4 metrics
    ri.write_run(os_client, run, index, product_index=catalog)    # same run again: overwritten, not doubled
    assert os_client.count(index=index)["count"] == n
    body = {"query": {"bool": {"filter": [{"term": {ri.SCOPE: ri.SCOPE_MEAN}}, {"term": {ri.METRIC: "ndcg@10"}},
                                          {"term": {ri.PROFILE: "bm25"}}]}}}
    (hit,) = os_client.search(index=index, body=body)["hits"]["hits"]
    assert hit["_source"][ri.VALUE] == pytest.approx(EXPECTED["ndcg@10"])
    assert hit["_source"][ri.QUERIES] == 3 and hit["_source"][ri.PRODUCT_INDEX] == catalog
    worst = {"size": 0, "query": {"bool": {"filter": [{"term": {ri.SCOPE: ri.SCOPE_QUERY}},
                                                      {"term": {ri.METRIC: "ndcg@10"}}]}},
             "aggs": {"q": {"terms": {"field": ri.QUERY_TEXT, "order": {"v": "asc"}, "size": 1},
                            "aggs": {"v": {"avg": {"field": ri.VALUE}}}}}}
    (bucket,) = os_client.search(index=index, body=worst)["aggregations"]["q"]["buckets"]
    assert bucket["key"] == "椅子" and bucket["v"]["value"] == 0.0


def test_cli_eval_prints_the_table_and_writes_json_and_index(os_client, catalog, judged, tmp_path, fresh_index,
                                                             local_engine):
    from cmsearch.cmd_eval import eval_cmd

    folder = tmp_path / "tiny"
    write_trec(judged, folder)
    out = tmp_path / "run.json"
    index = fresh_index("evalcli")
    res = CliRunner().invoke(eval_cmd, ["--url", local_engine.url(), "--index", catalog, "--judgments", str(folder),
                                        "--profile", "bm25", "--no-models", "--json", str(out),
                                        "--to-index", index, "--run-id", "r1", "--worst", "1"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    row = next(line for line in res.output.splitlines() if line.startswith("bm25"))
    assert f"{EXPECTED['ndcg@10']:.4f}" in row and f"{EXPECTED['mrr']:.4f}" in row
    assert "worst 1 queries of bm25 by ndcg@10" in res.output and "椅子" in res.output
    data = json.loads(out.read_text())
    assert data["run_id"] == "r1" and data["summaries"]["bm25"]["means"] == pytest.approx(EXPECTED)
    assert os_client.count(index=index)["count"] == 4 + 3 * 4


def test_cli_eval_reports_a_bad_judgment_file(tmp_path, local_engine):
    from cmsearch.cmd_eval import eval_cmd

    (tmp_path / "qrels.txt").write_text("q1 0 p1\n")
    (tmp_path / "queries.jsonl").write_text('{"id": "q1", "text": "a"}\n')
    res = CliRunner().invoke(eval_cmd, ["--url", local_engine.url(), "--judgments", str(tmp_path), "--no-models"])
    assert res.exit_code == 2 and "qrels.txt:1" in res.output


def test_tune_on_the_live_index_keeps_the_split_apart(os_client, catalog, judged, tmp_path):
    factory = SearchFactory(os_client, catalog)
    base = {"name": "bm25", "retrievers": [{"kind": "lexical", "k": 100}], "boosts": {"enabled": False}}
    from query_builder import load_profile

    res = tune(load_profile(base).to_dict(), judged, factory, trials=4, holdout=0.34, seed=3)
    assert res.train_queries + res.heldout_queries == 3 and res.not_applicable == 1   # q4 is a photo
    assert len(res.trials) == 4 and res.trials[0].params == {}
    assert res.trials[0].train_score == pytest.approx(res.default_train.means["ndcg@10"], abs=1e-6)
    # every trial of this space changes only k, which cannot change a 5-product ranking
    assert {t.train_score for t in res.trials} == {res.trials[0].train_score}
    assert res.best_params == {} and res.best["name"] == "bm25_tuned"
    assert load_profile(res.best).retrievers[0].k == 100


def test_cli_tune_writes_a_loadable_profile(catalog, judged, tmp_path, local_engine):
    from cmsearch.cmd_eval import tune as tune_cmd
    from query_builder import load_profile

    folder = tmp_path / "tiny"
    write_trec(judged, folder)
    base = tmp_path / "base.json"
    base.write_text(json.dumps({"name": "lex", "retrievers": [{"kind": "lexical"}], "boosts": {"enabled": False}}))
    out = tmp_path / "tuned.json"
    res = CliRunner().invoke(tune_cmd, ["--url", local_engine.url(), "--index", catalog, "--judgments", str(folder),
                                        "--profile", str(base), "--trials", "3", "--seed", "1", "--no-models",
                                        "--out", str(out)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "held-out" in res.output and "1 judged query(ies) the profile cannot search" in res.output
    assert load_profile(out).name == "lex_tuned"


class TableSpace:
    """Stands in for models.space.Space as the search factory uses it: text queries only."""

    def __init__(self, text):
        self.text = text

    def embed_query(self, text=None, images=(), names=None):
        from models.space import QueryEmbedding

        return QueryEmbedding(text=self.text.encode([text])[0] if text else None)


class TableTextEncoder:
    """Stands in for the e5 model: a fixed vector per query text, so the k-NN order is known."""

    VECTORS = {"红色 沙发": E[0], "台灯": E[2], "椅子": [0, 0.8, 0, 0.6, 0, 0, 0, 0], "沙发": E[0]}

    def __init__(self):
        self.calls = 0

    def encode(self, texts, kind="query"):
        import numpy as np

        assert kind == "query"
        self.calls += len(texts)
        return np.asarray([self.VECTORS[t] for t in texts], dtype=np.float32)


def test_dense_profile_on_the_live_index_and_one_encoding_per_query(os_client, catalog, judged):
    """dense_text runs text_knn against text_vector (cosine):

    q1 e0 -> p1 (1.0), p2 (0.8), rest 0: ideal order -> nDCG 1, recall 1, MRR 1
    q2 e2 -> p4 first                                 -> 1, 1, 1
    q3 0.8 e1 + 0.6 e3 -> p3 (0.8), p5 (0.6), p2 (0.48): p5 second -> nDCG 1/log2 3, recall 1, MRR 1/2
    q4 the photo: no image encoder, no photo vector   -> not applicable
    """
    text = TableTextEncoder()
    factory = SearchFactory(os_client, catalog, TableSpace(text))
    run = run_profiles(judged, {"dense_text": factory("dense_text"), "bm25": factory("bm25")}, DEFAULT_METRICS)
    q3 = next(r for r in run.for_profile("dense_text") if r.query_id == "q3")
    assert q3.top[:3] == ("p3", "p5", "p2")
    s = run.summaries["dense_text"]
    assert (s.queries, s.not_applicable) == (3, 1)
    assert s.means == pytest.approx({"ndcg@10": (1 + 1 + 1 / math.log2(3)) / 3, "recall@10": 1.0, "recall@100": 1.0,
                                     "mrr": (1 + 1 + 0.5) / 3})
    assert run.summaries["bm25"].means == pytest.approx(EXPECTED)    # encoders change nothing for bm25
    assert text.calls == 3        # q1..q3 encoded once, shared by both profiles (q5 is unjudged, never searched)
