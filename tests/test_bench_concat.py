"""The concatenated-backbones variant of bench/bench_backbones.py: how two towers' features are joined."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from bench_backbones import ConcatFeatures, concat_features  # noqa: E402
from models.training.features import ImageBatch  # noqa: E402


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_joined_vectors_are_unit_and_their_cosine_is_the_mean_of_the_two_towers():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 8)), rng.normal(size=(5, 3))
    j = concat_features(a, b)
    assert j.shape == (5, 11) and j.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(j, axis=1), 1.0, atol=1e-6)
    want = (_unit(a) @ _unit(a).T + _unit(b) @ _unit(b).T) / 2
    np.testing.assert_allclose(j @ j.T, want, atol=1e-5)


def test_a_tower_with_larger_features_does_not_outweigh_the_other():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(4, 6)), rng.normal(size=(4, 6))
    np.testing.assert_allclose(concat_features(100 * a, b), concat_features(a, b), atol=1e-6)
    np.testing.assert_allclose(concat_features(a, b)[:, 6:], _unit(b) / np.sqrt(2), atol=1e-6)


def test_features_of_different_photo_counts_are_refused():
    with pytest.raises(ValueError, match=r"\(3, 4\) and \(2, 4\)"):
        concat_features(np.ones((3, 4)), np.ones((2, 4)))


class _Cache:
    """A feature cache whose photos at positions ``ok`` decoded, with row i = [position, tag]."""

    def __init__(self, ok, tag):
        self.ok, self.tag = np.array(ok), tag

    def images(self, paths, **kw):
        feats = np.array([[float(i), self.tag] for i in self.ok], np.float32)
        return ImageBatch(features=feats, logits=None, ok=self.ok,
                          errors=[f"{paths[i]}: bad" for i in range(len(paths)) if i not in self.ok])

    def texts(self, texts, kind="passage", **kw):
        return np.full((len(texts), 2), 1.0 if kind == "query" else 2.0, np.float32)


def test_only_photos_both_towers_decoded_are_joined_row_by_row():
    joined = ConcatFeatures(_Cache([0, 1, 3, 4], 1.0), _Cache([0, 2, 3, 4], 2.0))
    b = joined.images(["p0", "p1", "p2", "p3", "p4"])
    assert b.ok.tolist() == [0, 3, 4]
    # row for photo i: both halves come from photo i ([i, tag] normalised in each tower)
    for row, i in zip(b.features, b.ok):
        np.testing.assert_allclose(row[:2] * np.sqrt(2), _unit(np.array([[i, 1.0]]))[0], atol=1e-6)
        np.testing.assert_allclose(row[2:] * np.sqrt(2), _unit(np.array([[i, 2.0]]))[0], atol=1e-6)
    assert b.errors == ["p1: bad", "p2: bad"]
    assert joined.texts(["x"], "query").tolist() == [[1.0, 1.0]]
