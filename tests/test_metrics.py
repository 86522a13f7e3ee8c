"""Metrics against values computed by hand (log2(3) = 1.5849625, log2(5) = 2.3219281, log2(6) = 2.5849625)."""
from __future__ import annotations

import pytest

from evaluation.metrics import (DEFAULT_METRICS, MetricSpec, UndefinedMetric, dcg, ndcg_at_k, parse_metrics,
                                precision_at_k, recall_at_k, reciprocal_rank, score_all)

QRELS = {"a": 3, "b": 2, "c": 0, "d": 1}       # c is judged not relevant
RANKED = ["c", "a", "x", "d", "b"]             # x is not judged


def test_dcg_discounts_by_log2_of_rank_plus_one():
    # 3/log2(2) + 2/log2(3) + 1/log2(4) = 3 + 1.2618595 + 0.5
    assert dcg([3, 2, 1]) == pytest.approx(4.7618595, abs=1e-7)


def test_ndcg_at_3_uses_grades_as_gains():
    # DCG@3 = 0 + 3/1.5849625 + 0 = 1.8927893; ideal@3 = [3, 2, 1] -> 4.7618595
    assert ndcg_at_k(RANKED, QRELS, 3) == pytest.approx(1.8927893 / 4.7618595, abs=1e-7)
    assert ndcg_at_k(RANKED, QRELS, 3) == pytest.approx(0.3974895, abs=1e-6)


def test_ndcg_at_5_counts_later_relevant_documents():
    # 3/log2(3) + 1/log2(5) + 2/log2(6) = 1.8927893 + 0.4306766 + 0.7737056 = 3.0971715
    assert ndcg_at_k(RANKED, QRELS, 5) == pytest.approx(3.0971715 / 4.7618595, abs=1e-6)


def test_ndcg_is_one_for_the_ideal_order_and_zero_for_nothing_relevant():
    assert ndcg_at_k(["a", "b", "d"], QRELS, 10) == pytest.approx(1.0)
    assert ndcg_at_k(["x", "y"], QRELS, 10) == 0.0
    assert ndcg_at_k([], QRELS, 10) == 0.0


def test_ndcg_penalizes_a_swapped_pair():
    # b, a instead of a, b: (2 + 3/1.5849625) / (3 + 2/1.5849625)
    assert ndcg_at_k(["b", "a"], {"a": 3, "b": 2}, 2) == pytest.approx((2 + 1.8927893) / (3 + 1.2618595), abs=1e-6)


def test_recall_at_k():
    assert recall_at_k(RANKED, QRELS, 3) == pytest.approx(1 / 3)
    assert recall_at_k(RANKED, QRELS, 4) == pytest.approx(2 / 3)
    assert recall_at_k(RANKED, QRELS, 100) == 1.0


def test_precision_at_k_divides_by_k_even_for_short_lists():
    assert precision_at_k(RANKED, QRELS, 5) == pytest.approx(3 / 5)
    assert precision_at_k(["a"], QRELS, 10) == pytest.approx(0.1)


def test_reciprocal_rank_with_and_without_cut_off():
    assert reciprocal_rank(RANKED, QRELS) == 0.5
    assert reciprocal_rank(RANKED, QRELS, 1) == 0.0
    assert reciprocal_rank(["x", "y", "z", "d"], QRELS) == 0.25


def test_a_repeated_id_earns_its_gain_once():
    qrels = {"a": 1, "b": 1}
    assert recall_at_k(["a", "a", "b"], qrels, 2) == 1.0        # the repeat is dropped, b moves up
    assert ndcg_at_k(["a", "a"], qrels, 2) == pytest.approx(1 / (1 + 1 / 1.5849625), abs=1e-6)
    assert precision_at_k(["a", "a"], qrels, 2) == 0.5


def test_query_without_relevant_documents_is_undefined():
    for fn in (lambda: ndcg_at_k(["a"], {"a": 0}, 10), lambda: recall_at_k(["a"], {}, 10),
               lambda: reciprocal_rank(["a"], {"b": 0})):
        with pytest.raises(UndefinedMetric):
            fn()


def test_cut_off_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        ndcg_at_k(RANKED, QRELS, 0)


def test_metric_specs_parse_and_score_all():
    specs = parse_metrics(["NDCG@3", "recall@4", "mrr", "mrr@1", "precision@5"])
    assert [s.name for s in specs] == ["ndcg@3", "recall@4", "mrr", "mrr@1", "precision@5"]
    got = score_all(specs, RANKED, QRELS)
    assert got == pytest.approx({"ndcg@3": 0.3974895, "recall@4": 2 / 3, "mrr": 0.5, "mrr@1": 0.0,
                                 "precision@5": 0.6}, abs=1e-6)
    assert [s.name for s in DEFAULT_METRICS] == ["ndcg@10", "recall@10", "recall@100", "mrr"]
    assert max(s.depth for s in DEFAULT_METRICS) == 100


@pytest.mark.parametrize("bad", ["ndcg", "foo@3", "recall@0", "ndcg@x", ""])
def test_bad_metric_names_are_refused(bad):
    with pytest.raises(ValueError):
        MetricSpec.parse(bad)
