"""Client-side fusion with the same semantics as neural-search's search pipelines.

Used when the cluster has no neural-search (or cannot run the wanted technique), and for
explain.  The normalizations and combinations themselves, and the server-side processor each
mirrors, are entries of :mod:`query_builder.fusion_methods`; this module applies them to the
retrievers' ranked lists.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .fusion_methods import MIN_SCORE, combination_method, fusion_method, min_max_bounded
from .profile import FusionSpec

__all__ = ["RankedList", "FusedDoc", "normalize_scores", "combine", "fuse", "MIN_SCORE"]


@dataclass(frozen=True)
class RankedList:
    """One retriever's results in rank order: ``(doc id, raw score)``."""

    retriever: str
    hits: tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class FusedDoc:
    id: str
    score: float
    raw: tuple[float | None, ...]          # per retriever, None where it did not return the doc
    normalized: tuple[float | None, ...]
    ranks: tuple[int | None, ...]


def normalize_scores(scores: Sequence[float], technique: str, rank_constant: int = 60) -> list[float]:
    """One retriever's scores (in rank order) normalized by ``technique``."""
    method = fusion_method(technique)
    return method.normalize(scores, rank_constant) if scores else []


def combine(values: Sequence[float | None], weights: Sequence[float], combination: str) -> float:
    """Combine one doc's normalized scores (None: that retriever did not return it)."""
    return combination_method(combination).combine(values, weights)


def fuse(lists: Sequence[RankedList], weights: Sequence[float], fusion: FusionSpec) -> list[FusedDoc]:
    """All docs any retriever returned, fused and sorted best first (ties: best rank, then id)."""
    if len(lists) != len(weights):
        raise ValueError("one weight per retriever list is needed")
    n = len(lists)
    raw: dict[str, list[float | None]] = {}
    norm: dict[str, list[float | None]] = {}
    ranks: dict[str, list[int | None]] = {}
    for i, rl in enumerate(lists):
        scores = [s for _, s in rl.hits]
        if fusion.lower_bounds:   # min_max with each retriever's own bound (None: plain)
            normalized = min_max_bounded(scores, fusion.lower_bound(rl.retriever))
        else:
            normalized = normalize_scores(scores, fusion.normalization, fusion.rank_constant)
        for rank, ((doc, score), ns) in enumerate(zip(rl.hits, normalized), start=1):
            if doc in raw and raw[doc][i] is not None:
                continue  # a retriever lists each doc once; keep its best position
            raw.setdefault(doc, [None] * n)[i] = score
            norm.setdefault(doc, [None] * n)[i] = ns
            ranks.setdefault(doc, [None] * n)[i] = rank
    out = []
    for doc in raw:
        if fusion_method(fusion.normalization).rank_based:
            # weights rescaled to average 1: equal weights give the server's plain sum
            total_w = sum(weights) or 1.0
            score = sum((v or 0.0) * w for v, w in zip(norm[doc], weights)) * n / total_w
        else:
            score = combine(norm[doc], weights, fusion.combination)
        out.append(FusedDoc(doc, score, tuple(raw[doc]), tuple(norm[doc]), tuple(ranks[doc])))
    out.sort(key=lambda d: (-d.score, min(r for r in d.ranks if r is not None), d.id))
    return out
