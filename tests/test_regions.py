"""Shop the look, the pure parts: cutting a photo into region boxes and merging the regions' results."""
from __future__ import annotations

import numpy as np
import pytest

from query_builder import RequestError
from query_builder.regions import Box, RegionSpec, cut_regions, merge_regions


def _covered(boxes, w, h) -> np.ndarray:
    m = np.zeros((h, w), bool)
    for b in boxes:
        m[b.top:b.bottom, b.left:b.right] = True
    return m


@pytest.mark.parametrize("w,h", [(640, 480), (480, 640), (333, 201), (1000, 1000), (640, 320)])
@pytest.mark.parametrize("n", [1, 2, 3, 4])
@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5])
def test_each_grid_covers_the_photo_with_square_windows_and_at_least_the_asked_overlap(w, h, n, overlap):
    boxes = cut_regions(w, h, (n,), overlap)
    assert _covered(boxes, w, h).all()
    assert all(0 <= b.left < b.right <= w and 0 <= b.top < b.bottom <= h for b in boxes)
    sides = {b.width for b in boxes} | {b.height for b in boxes}
    assert max(sides) - min(sides) <= 2                        # square, equal windows (rounding only)
    short_side = min(w, h)
    assert max(sides) == pytest.approx(short_side / (1 + (n - 1) * (1 - overlap)), abs=1.5)
    lefts, tops = sorted({b.left for b in boxes}), sorted({b.top for b in boxes})
    assert len(lefts if w <= h else tops) == n               # n windows across the short side
    for starts, length in ((lefts, w), (tops, h)):
        size = max(sides)
        for a, b in zip(starts, starts[1:]):                   # neighbours share >= overlap of a window
            assert (a + size - b) / size >= overlap - 2.5 / size
        assert starts[0] == 0
    assert max(b.right for b in boxes) == w and max(b.bottom for b in boxes) == h


def test_default_cut_of_a_square_photo_is_the_photo_then_2x2_3x3_and_4x4():
    boxes = cut_regions(500, 500)
    assert boxes[0] == Box(0, 0, 500, 500)
    assert len(boxes) == 1 + 4 + 9 + 16 and len(set(boxes)) == len(boxes)
    assert cut_regions(500, 500, RegionSpec().grids, RegionSpec().overlap) == boxes
    assert cut_regions(500, 500, (1, 1, 2)) == cut_regions(500, 500, (1, 2))


def test_a_wide_photo_is_cut_into_squares_along_its_length():
    assert cut_regions(640, 320, (1,), 0.5) == (Box(0, 0, 320, 320), Box(160, 0, 480, 320), Box(320, 0, 640, 320))
    assert cut_regions(640, 320, (1,), 0.0) == (Box(0, 0, 320, 320), Box(320, 0, 640, 320))


def test_grids_too_fine_for_a_small_photo_are_left_out_but_never_the_coarsest():
    boxes = cut_regions(60, 60, (1, 2, 3), 0.25, min_side=30)
    assert Box(0, 0, 60, 60) in boxes
    assert all(min(b.width, b.height) >= 30 for b in boxes)
    assert len(boxes) == 1 + 4                  # 3 x 3 windows would be 24 px
    assert cut_regions(10, 10, (1, 2, 3)) == (Box(0, 0, 10, 10),)


@pytest.mark.parametrize("kw", [{"grids": ()}, {"grids": (0,)}, {"grids": (9,)}, {"grids": (2.5,)},
                                {"overlap": 1.0}, {"overlap": -0.1}, {"merge": "mean"}, {"per_region": 0},
                                {"per_region": 101}])
def test_bad_region_settings_are_refused_by_name(kw):
    with pytest.raises(RequestError) as e:
        RegionSpec(**kw)
    assert next(iter(kw)).split("_")[0] in str(e.value)


def test_a_photo_without_pixels_has_no_regions():
    with pytest.raises(RequestError, match="no regions"):
        cut_regions(0, 10)


def test_max_merge_keeps_a_products_best_score_and_the_region_that_gave_it():
    lists = [[("a", 0.90), ("b", 0.50)], [("b", 0.95), ("c", 0.40)], [("c", 0.60)]]
    assert merge_regions(lists, "max") == [("b", 0.95, 1), ("a", 0.90, 0), ("c", 0.60, 2)]


def test_rrf_merge_rewards_products_found_by_several_regions():
    lists = [[("a", 0.9), ("b", 0.8)], [("b", 0.7), ("c", 0.6)], [("c", 0.99), ("b", 0.1)]]
    merged = merge_regions(lists, "rrf", rrf_k=0)
    assert [d for d, _, _ in merged] == ["b", "c", "a"]
    assert merged[0][1] == pytest.approx(1 / 2 + 1 / 1 + 1 / 2) and merged[0][2] == 1   # best rank: region 1
    assert merged[1][1] == pytest.approx(1 / 2 + 1 / 1) and merged[1][2] == 2


def test_merge_ties_keep_first_appearance_and_empty_lists_give_nothing():
    assert [d for d, _, _ in merge_regions([[("x", 0.5)], [("y", 0.5)]])] == ["x", "y"]
    assert merge_regions([[], []]) == []
    with pytest.raises(RequestError, match="merge"):
        merge_regions([[("x", 1.0)]], "sum")
