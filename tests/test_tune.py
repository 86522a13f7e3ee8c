"""The runner's bookkeeping and the tuner's search, with an in-memory ranking standing in for a profile.

The stand-in is a real ranking function (a weighted sum of two per-document signals), not a
mock of OpenSearch: the runner and tuner only see ``(query, depth) -> ids``.  The live version
of both runs in ``test_eval_live.py``.
"""
from __future__ import annotations

import json
import random

import pytest

from evaluation.judgments import JudgedQuery, JudgmentSet
from evaluation.metrics import parse_metrics
from evaluation.runner import EvalError, NotApplicable, format_table, format_worst, run_profiles
from evaluation.tune import (Param, ParameterSpace, SpaceError, apply_params, default_space, format_report, get_param,
                             load_space, tune, write_profile)
from query_builder import load_profile

# 30 queries over 40 documents; each query's relevant document is strong on the "dense" signal,
# the "lexical" signal is noise, so a profile that weights text_knn up finds more.
rng = random.Random(5)
DOCS = [f"d{i}" for i in range(40)]
QUERIES = JudgmentSet("synthetic", tuple(JudgedQuery(f"q{i}", f"query {i}", None, {f"d{i}": 1}) for i in range(30)))
LEX = {(q.id, d): rng.random() for q in QUERIES for d in DOCS}
DENSE = {(q.id, d): (0.55 if d == f"d{q.id[1:]}" else 0.0) + 0.5 * rng.random() for q in QUERIES for d in DOCS}

BASE = {"name": "two", "retrievers": [{"kind": "lexical", "weight": 1.0, "k": 100},
                                       {"kind": "text_knn", "weight": 1.0, "k": 100}],
        "fusion": {"normalization": "min_max"}, "boosts": {"enabled": True, "brand": 1.0}}


def factory(profile: dict):
    w = {r["kind"]: r["weight"] for r in profile["retrievers"]}
    if w["lexical"] > 0.95 and w["text_knn"] < 0.06:
        raise ValueError("rejected: stand-in for a profile validation error")

    def search(q, depth):
        score = {d: w["lexical"] * LEX[(q.id, d)] + w["text_knn"] * DENSE[(q.id, d)] for d in DOCS}
        return sorted(DOCS, key=lambda d: -score[d])[:depth]
    return search


def test_runner_table_counts_not_applicable_and_marks_the_best():
    def lexical_only(q, depth):
        if q.id == "q0":
            raise NotApplicable("photo")
        return factory(apply_params(BASE, {"retrievers.text_knn.weight": 0.1}))(q, depth)

    run = run_profiles(QUERIES, {"base": factory(BASE), "lexical": lexical_only}, parse_metrics(["ndcg@10", "mrr"]))
    assert run.summaries["lexical"].not_applicable == 1 and run.summaries["lexical"].queries == 29
    assert run.summaries["base"].queries == 30
    table = format_table(run)
    best = max(run.summaries, key=lambda p: run.summaries[p].means["ndcg@10"])
    line = next(line for line in table.splitlines() if line.startswith(best))
    assert f"{run.summaries[best].means['ndcg@10']:.4f}*" in line
    assert "worst 3 queries of base by mrr" in format_worst(run, "mrr", 3)
    data = json.loads(run.to_json())
    assert len(data["results"]) == 59 and data["summaries"]["base"]["queries"] == 30


def test_a_failing_search_names_profile_and_query():
    def broken(q, depth):
        raise RuntimeError("engine said no")

    with pytest.raises(EvalError, match=r"profile b, query q0 \('query 0'\): RuntimeError: engine said no"):
        run_profiles(QUERIES, {"b": broken})


def test_paths_address_retrievers_by_kind_and_lists_by_index():
    prof = load_profile("hybrid_minmax").to_dict()
    assert get_param(prof, "retrievers.text_knn.weight") == 0.25
    changed = apply_params(prof, {"retrievers.text_knn.weight": 0.9, "boosts.brand": 0.1, "facets.size": 7})
    assert get_param(changed, "retrievers.text_knn.weight") == 0.9 and get_param(prof, "boosts.brand") == 1.0
    p = load_profile(changed)
    assert p.boosts.brand == 0.1
    # the fused weights belong to the index's space, not to a profile: tune cannot reach them
    for bad in ("retrievers.nope.weight", "boosts.colour", "fused_weights.0", "fusion.rank_constant.x"):
        with pytest.raises(SpaceError):
            get_param(prof, bad)


def test_default_space_follows_the_profile():
    rrf = default_space(load_profile("hybrid_rrf").to_dict()).to_dict()
    assert "fusion.rank_constant" in rrf and "retrievers.image_image_knn.weight" in rrf
    assert rrf["retrievers.lexical.k"] == {"choices": [25, 50, 100, 200]}
    noboost = default_space(load_profile("hybrid_minmax_noboost").to_dict()).to_dict()
    assert not any(k.startswith("boosts.") for k in noboost) and "fusion.rank_constant" not in noboost
    bm25 = default_space(load_profile("bm25").to_dict()).to_dict()
    assert not any(k.endswith(".weight") for k in bm25)     # one retriever: nothing to weigh


def test_space_file(tmp_path):
    f = tmp_path / "space.json"
    f.write_text(json.dumps({"retrievers.lexical.weight": {"low": 0.1, "high": 2, "log": True},
                             "fusion.rank_constant": [10, 60]}))
    space = load_space(f, load_profile("hybrid_rrf").to_dict())
    assert [p.path for p in space.params] == ["retrievers.lexical.weight", "fusion.rank_constant"]
    f.write_text(json.dumps({"retrievers.colour.weight": {"low": 0, "high": 1}}))
    with pytest.raises(SpaceError, match="no retriever 'colour'"):
        load_space(f, load_profile("hybrid_rrf").to_dict())
    with pytest.raises(SpaceError, match="low > 0"):
        Param("x", 0, 1, log=True)


def test_tune_improves_on_train_reports_held_out_and_is_seeded(tmp_path):
    space = ParameterSpace((Param("retrievers.lexical.weight", 0.05, 1.0, log=True),
                            Param("retrievers.text_knn.weight", 0.05, 1.0, log=True)))
    res = tune(BASE, QUERIES, factory, space=space, trials=25, holdout=0.3, seed=11)
    assert (res.train_queries, res.heldout_queries) == (21, 9)
    assert res.trials[0].params == {} and res.trials[0].train_score == pytest.approx(res.default_train.means["ndcg@10"])
    assert res.tuned_train.means["ndcg@10"] >= res.default_train.means["ndcg@10"]
    assert res.tuned_train.means["ndcg@10"] == pytest.approx(max(t.train_score for t in res.trials if t.train_score))
    # the signal is real, so the gain carries over to queries the search never saw
    assert res.tuned_heldout.means["ndcg@10"] > res.default_heldout.means["ndcg@10"]
    w = {r["kind"]: r["weight"] for r in res.best["retrievers"]}
    assert w["text_knn"] > w["lexical"]
    assert res.best["name"] == "two_tuned" and "synthetic" in res.best["description"]
    again = tune(BASE, QUERIES, factory, space=space, trials=25, holdout=0.3, seed=11)
    assert [t.params for t in again.trials] == [t.params for t in res.trials]
    report = format_report(res)
    assert any(line.split()[:2] == ["held-out", "tuned"] for line in report.splitlines())
    assert "retrievers.text_knn.weight: 1.0 ->" in report
    path = write_profile(res.best, tmp_path / "best.json")
    assert json.loads(path.read_text())["retrievers"] == res.best["retrievers"]


def test_tune_budget_and_rejected_trials():
    space = ParameterSpace((Param("retrievers.lexical.weight", choices=(1.0,)),
                            Param("retrievers.text_knn.weight", choices=(0.05, 0.5))))
    res = tune(BASE, QUERIES, factory, space=space, trials=6, seed=1)
    assert len(res.trials) == 6
    rejected = [t for t in res.trials if t.train_score is None]
    assert rejected and all("rejected" in t.error for t in rejected)
    assert "rejected" in format_report(res)
    quick = tune(BASE, QUERIES, factory, space=space, trials=1000, seed=1, time_budget_s=0.0)
    assert len(quick.trials) == 1            # the base profile is always tried, then the budget is spent
    with pytest.raises(ValueError, match="at least 2"):
        tune(BASE, QUERIES.head(1), factory, space=space)
