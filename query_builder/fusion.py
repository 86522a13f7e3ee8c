"""Client-side fusion with the same semantics as neural-search's search pipelines.

Used when the cluster has no neural-search (or cannot run the wanted
technique), and for explain.  Each function mirrors the server's processor
(neural-search 2.19; ``z_score`` as added in 3.0) so a ranking does not change
when a search moves between the two paths:

- ``min_max``: ``(s - min) / (max - min)`` over that retriever's returned list;
  a score equal to the min becomes 0.001 (not 0, so it still counts as found);
  a list whose scores are all equal gets 1.0.
- ``l2``: ``s / sqrt(sum(s^2))`` over the list.
- ``z_score``: ``(s - mean) / std`` (sample std); at or below the mean 0.001;
  a score equal to the mean takes the list's max raw score and a zero std the
  min raw score (the server's edge cases, kept so both paths agree).
- ``rrf``: ``1 / (rank_constant + rank)``, rank from 1.
- combination: ``arithmetic_mean`` is ``sum(w_i * s_i) / sum(w_i)`` over *all*
  retrievers, a retriever that did not return the product contributing 0;
  ``geometric_mean`` and ``harmonic_mean`` count only the retrievers that
  returned it.  RRF scores are summed (the server's RRF has no weights; here
  non-uniform weights scale each retriever's share, and equal weights give the
  server's plain sum).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from .profile import FusionSpec

__all__ = ["RankedList", "FusedDoc", "normalize_scores", "combine", "fuse", "MIN_SCORE"]

MIN_SCORE = 0.001
SINGLE_RESULT_SCORE = 1.0


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


def _min_max(scores: Sequence[float]) -> list[float]:
    lo, hi = min(scores), max(scores)
    out = []
    for s in scores:
        if hi == lo and s == hi:
            out.append(SINGLE_RESULT_SCORE)
            continue
        n = (s - lo) / (hi - lo)
        out.append(MIN_SCORE if n == 0 else n)
    return out


def _l2(scores: Sequence[float]) -> list[float]:
    norm = math.sqrt(sum(s * s for s in scores))
    return [0.0 if norm == 0 else s / norm for s in scores]


def _z_score(scores: Sequence[float]) -> list[float]:
    n = len(scores)
    mean = sum(scores) / n
    std = math.sqrt(sum((s - mean) ** 2 for s in scores) / (n - 1)) if n > 1 else 0.0
    lo, hi = min(scores), max(scores)
    out = []
    for s in scores:
        if math.isclose(s, mean, rel_tol=0, abs_tol=1e-7):
            out.append(hi)
        elif std == 0:
            out.append(lo)
        else:
            z = (s - mean) / std
            out.append(MIN_SCORE if z <= 0 else z)
    return out


def normalize_scores(scores: Sequence[float], technique: str, rank_constant: int = 60) -> list[float]:
    """One retriever's scores (in rank order) normalized by ``technique``."""
    if not scores:
        return []
    if technique == "min_max":
        return _min_max(scores)
    if technique == "l2":
        return _l2(scores)
    if technique == "z_score":
        return _z_score(scores)
    if technique == "rrf":
        return [1.0 / (rank_constant + rank) for rank in range(1, len(scores) + 1)]
    raise ValueError(f"unknown normalization {technique!r}")


def combine(values: Sequence[float | None], weights: Sequence[float], combination: str) -> float:
    """Combine one doc's normalized scores (None: that retriever did not return it)."""
    if combination == "arithmetic_mean":
        total_w = sum(weights)
        s = sum(w * (v or 0.0) for v, w in zip(values, weights))
        return 0.0 if total_w == 0 else s / total_w
    present = [(v, w) for v, w in zip(values, weights) if v is not None and v > 0]
    sw = sum(w for _, w in present)
    if sw == 0:
        return 0.0
    if combination == "geometric_mean":
        return math.exp(sum(w * math.log(v) for v, w in present) / sw)
    if combination == "harmonic_mean":
        return sw / sum(w / v for v, w in present)
    raise ValueError(f"unknown combination {combination!r}")


def fuse(lists: Sequence[RankedList], weights: Sequence[float], fusion: FusionSpec) -> list[FusedDoc]:
    """All docs any retriever returned, fused and sorted best first (ties: best rank, then id)."""
    if len(lists) != len(weights):
        raise ValueError("one weight per retriever list is needed")
    n = len(lists)
    raw: dict[str, list[float | None]] = {}
    norm: dict[str, list[float | None]] = {}
    ranks: dict[str, list[int | None]] = {}
    for i, rl in enumerate(lists):
        normalized = normalize_scores([s for _, s in rl.hits], fusion.normalization, fusion.rank_constant)
        for rank, ((doc, score), ns) in enumerate(zip(rl.hits, normalized), start=1):
            if doc in raw and raw[doc][i] is not None:
                continue  # a retriever lists each doc once; keep its best position
            raw.setdefault(doc, [None] * n)[i] = score
            norm.setdefault(doc, [None] * n)[i] = ns
            ranks.setdefault(doc, [None] * n)[i] = rank
    out = []
    for doc in raw:
        if fusion.is_rrf:
            # weights rescaled to average 1: equal weights give the server's plain sum
            total_w = sum(weights) or 1.0
            score = sum((v or 0.0) * w for v, w in zip(norm[doc], weights)) * n / total_w
        else:
            score = combine(norm[doc], weights, fusion.combination)
        out.append(FusedDoc(doc, score, tuple(raw[doc]), tuple(norm[doc]), tuple(ranks[doc])))
    out.sort(key=lambda d: (-d.score, min(r for r in d.ranks if r is not None), d.id))
    return out
