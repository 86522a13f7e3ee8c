"""Client-side fusion must rank exactly as neural-search's processors do (their semantics, by hand)."""
from __future__ import annotations

import math

import pytest

from query_builder import FusionSpec, RankedList, combine, fuse, normalize_scores
from query_builder.fusion import MIN_SCORE


def test_min_max_maps_the_list_onto_0_1_with_a_floor_for_the_minimum():
    assert normalize_scores([10.0, 6.0, 2.0], "min_max") == [1.0, 0.5, MIN_SCORE]


def test_min_max_of_equal_scores_is_one():
    assert normalize_scores([3.0, 3.0], "min_max") == [1.0, 1.0]
    assert normalize_scores([0.7], "min_max") == [1.0]


def test_l2_divides_by_the_lists_norm():
    out = normalize_scores([3.0, 4.0], "l2")
    assert out == pytest.approx([0.6, 0.8])
    assert normalize_scores([0.0, 0.0], "l2") == [0.0, 0.0]


def test_z_score_follows_the_servers_edge_cases():
    scores = [4.0, 2.0, 0.0]             # mean 2, sample std 2
    out = normalize_scores(scores, "z_score")
    assert out[0] == pytest.approx(1.0)    # (4 - 2) / 2
    assert out[1] == 4.0                   # equal to the mean: the list's max raw score
    assert out[2] == MIN_SCORE             # below the mean: floor


def test_rrf_is_reciprocal_rank_plus_constant():
    assert normalize_scores([9.0, 5.0, 1.0], "rrf", rank_constant=60) == [1 / 61, 1 / 62, 1 / 63]


def test_arithmetic_mean_counts_a_missing_retriever_as_zero():
    assert combine([0.8, None], [0.5, 0.5], "arithmetic_mean") == pytest.approx(0.4)
    assert combine([0.8, 0.2], [0.75, 0.25], "arithmetic_mean") == pytest.approx(0.65)


def test_geometric_and_harmonic_means_skip_a_missing_retriever():
    assert combine([0.8, None], [0.5, 0.5], "geometric_mean") == pytest.approx(0.8)
    assert combine([0.8, 0.2], [0.5, 0.5], "geometric_mean") == pytest.approx(math.sqrt(0.16))
    assert combine([0.8, 0.2], [0.5, 0.5], "harmonic_mean") == pytest.approx(1 / (0.5 / 0.8 + 0.5 / 0.2))


def test_fuse_min_max_arithmetic_worked_example():
    lexical = RankedList("lexical", (("a", 12.0), ("b", 7.0), ("c", 2.0)))
    dense = RankedList("text_knn", (("b", 0.95), ("d", 0.90), ("a", 0.85)))
    fused = fuse([lexical, dense], [0.6, 0.4], FusionSpec("min_max", "arithmetic_mean"))
    by_id = {d.id: d for d in fused}
    # a: 0.6*1.0 + 0.4*0.001; b: 0.6*0.5 + 0.4*1.0; d: 0.4*0.5; c: 0.6*0.001
    assert by_id["a"].score == pytest.approx(0.6004)
    assert by_id["b"].score == pytest.approx(0.7)
    assert by_id["d"].score == pytest.approx(0.2)
    assert by_id["c"].score == pytest.approx(0.0006)
    assert [d.id for d in fused] == ["b", "a", "d", "c"]
    assert by_id["d"].raw == (None, 0.90) and by_id["d"].ranks == (None, 2)
    assert by_id["b"].normalized == pytest.approx((0.5, 1.0))


def test_fuse_rrf_with_equal_weights_is_the_servers_plain_sum():
    one = RankedList("lexical", (("a", 3.0), ("b", 2.0)))
    two = RankedList("text_knn", (("b", 0.9), ("c", 0.8)))
    fused = fuse([one, two], [1.0, 1.0], FusionSpec(normalization="rrf", rank_constant=60))
    scores = {d.id: d.score for d in fused}
    assert scores["b"] == pytest.approx(1 / 62 + 1 / 61)
    assert scores["a"] == pytest.approx(1 / 61)
    assert scores["c"] == pytest.approx(1 / 62)
    assert [d.id for d in fused] == ["b", "a", "c"]


def test_weighted_rrf_scales_each_retrievers_share():
    one = RankedList("lexical", (("a", 3.0),))
    two = RankedList("text_knn", (("c", 0.8),))
    fused = fuse([one, two], [3.0, 1.0], FusionSpec(normalization="rrf", rank_constant=60))
    scores = {d.id: d.score for d in fused}
    assert scores["a"] == pytest.approx(1.5 / 61) and scores["c"] == pytest.approx(0.5 / 61)


def test_ties_break_by_best_rank_then_id():
    one = RankedList("lexical", (("x", 1.0), ("y", 1.0)))
    fused = fuse([one], [1.0], FusionSpec("min_max"))
    assert [d.id for d in fused] == ["x", "y"]


def test_fuse_needs_one_weight_per_list():
    with pytest.raises(ValueError):
        fuse([RankedList("lexical", ())], [0.5, 0.5], FusionSpec())


def test_rrf_on_several_shards_is_fused_client_side_and_min_max_is_not():
    from query_builder import load_profile
    from query_builder.fusion_probe import FusionCapabilities

    rrf, minmax = load_profile("hybrid_rrf").fusion, load_profile("hybrid_minmax").fusion
    caps = dict(hybrid=True, normalizations=frozenset({"min_max", "rrf"}), combinations=frozenset({"arithmetic_mean"}))
    assert FusionCapabilities(**caps).supports(rrf, (0.5, 0.5)) == (True, "")
    ok, why = FusionCapabilities(**caps, shards=3).supports(rrf, (0.5, 0.5))
    assert not ok and "3 shards" in why
    assert FusionCapabilities(**caps, shards=3).supports(minmax, (0.4, 0.6)) == (True, "")
