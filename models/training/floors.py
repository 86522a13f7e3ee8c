"""The text -> image no-words floor of a catalog's heads, calibrated when they are trained.

A query none of whose words match any product (random letters) still has nearest photos; the
floor is the score a photo must reach to count as a real match then.  It is set just above the
best photo of every one of a fixed set of nonsense queries (seeded random letter strings, so a
retrain of the same catalog calibrates the same way): a nonsense query of the same kind lands
above it with a probability of about 1 / (N + 1).  Products the shop does not sell are not in
that set (no list of them holds for every catalog); the floor does not promise to refuse them.
"""
from __future__ import annotations

import random
from typing import Any

import numpy as np

__all__ = ["nonsense_queries", "text_image_floor", "N_NONSENSE"]

N_NONSENSE = 64
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def nonsense_queries(n: int = N_NONSENSE, seed: int = 13) -> list[str]:
    """``n`` random lower-case letter strings of 4 to 12 letters, one or two words."""
    rng = random.Random(seed)

    def word() -> str:
        return "".join(rng.choice(_LETTERS) for _ in range(rng.randint(4, 8)))
    return [word() if rng.random() < 0.6 else f"{word()} {word()}" for _ in range(n)]


def text_image_floor(nonsense: np.ndarray, photos: np.ndarray, margin: float = 0.002) -> dict[str, Any]:
    """The floor (engine score) from the nonsense queries' shared-space vectors and every product
    photo's image vector (unit rows), with what it was set from."""
    best = ((1.0 + nonsense @ photos.T) / 2.0).max(axis=1)   # each nonsense query's best photo
    floor = min(float(np.ceil((best.max() + margin) * 1000) / 1000), 1.0)
    return {"text_image_knn": floor, "nonsense_best_p50": round(float(np.median(best)), 4),
            "nonsense_best_max": round(float(best.max()), 4), "nonsense_queries": int(len(best))}
