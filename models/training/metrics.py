"""Ranking metrics on a similarity matrix (numpy only, so benchmarks can use them without torch).

Every metric takes sim[Q, C] (higher = better) and a boolean relevance matrix rel[Q, C].
Recall@k here is the hit rate "at least one relevant item in the top k", which for one relevant
item per query (a product's own photo) is ordinary recall; precision@k counts relevant items in
the top k, which is what matters when many items are relevant (all shelf photos of oat milk).
"""
from __future__ import annotations

from typing import Iterable

import numpy as np


def first_relevant_rank(sim: np.ndarray, rel: np.ndarray) -> np.ndarray:
    """1-based rank of the best-scored relevant candidate per query; inf where none is relevant.

    Ties count against the query (a candidate scoring equal to the relevant one is ranked
    above it), so a constant similarity matrix gets the worst rank, not the best.
    """
    sim = np.asarray(sim, dtype=np.float64)
    rel = np.asarray(rel, dtype=bool)
    best = np.where(rel, sim, -np.inf).max(axis=1)
    above = (sim >= best[:, None]) & ~rel
    ranks = above.sum(axis=1) + 1.0
    ranks[~rel.any(axis=1)] = np.inf
    return ranks


def precision_at_k(sim: np.ndarray, rel: np.ndarray, k: int) -> np.ndarray:
    """Per query: share of the top k candidates that are relevant."""
    sim = np.asarray(sim)
    k = min(k, sim.shape[1])
    top = np.argpartition(-sim, kth=k - 1, axis=1)[:, :k]
    return np.take_along_axis(np.asarray(rel, dtype=bool), top, axis=1).mean(axis=1)


def retrieval_metrics(sim: np.ndarray, rel: np.ndarray, ks: Iterable[int] = (1, 5, 10),
                      precision_ks: Iterable[int] = ()) -> dict[str, float]:
    """{"R@k": hit rate, "MRR": mean reciprocal rank, "P@k": precision, "n": queries}."""
    ranks = first_relevant_rank(sim, rel)
    out: dict[str, float] = {f"R@{k}": float(np.mean(ranks <= k)) for k in ks}
    out["MRR"] = float(np.mean(1.0 / ranks))
    for k in precision_ks:
        out[f"P@{k}"] = float(np.mean(precision_at_k(sim, rel, k)))
    out["n"] = int(sim.shape[0])
    return out


def group_relevance(query_groups: np.ndarray, candidate_groups: np.ndarray) -> np.ndarray:
    """rel[q, c] = query_groups[q] == candidate_groups[c]."""
    return np.asarray(query_groups)[:, None] == np.asarray(candidate_groups)[None, :]


def normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)
