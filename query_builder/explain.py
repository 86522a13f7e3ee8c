"""Explain: for each hit, every retriever's raw and normalized score, the boosts, the final score.

The retrievers' own lists (one msearch of the sub-queries) are normalized with
the same code the client-side fusion uses, so the numbers shown are the ones
the fusion actually combined, whichever path produced the final ranking.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from .bodies import BuiltSearch
from .fusion import FusedDoc, RankedList, fuse
from .results import HitExplain, RetrieverScore, hit_id, matched_boosts

__all__ = ["ranked_lists", "fusion_label", "explain_hits"]


def ranked_lists(built: BuiltSearch, responses: Sequence[Mapping[str, Any]]) -> list[RankedList]:
    """Each retriever's ``(id, raw score)`` list from its msearch response."""
    out = []
    for sub, resp in zip(built.sub_queries, responses):
        hits = ((resp.get("hits") or {}).get("hits")) or []
        out.append(RankedList(sub.retriever, tuple((hit_id(h), float(h["_score"] or 0.0)) for h in hits)))
    return out


def fusion_label(built: BuiltSearch, path: str) -> str:
    if not built.is_fused:
        return f"{built.retrievers[0]} only"
    weights = ", ".join(f"{r}={w:g}" for r, w in zip(built.retrievers, built.weights))
    return f"{built.fusion.label}; weights {weights}; {path}-side"


def explain_hits(built: BuiltSearch, responses: Sequence[Mapping[str, Any]], final_scores: Mapping[str, float],
                 path: str) -> dict[str, HitExplain]:
    """Explanations for the docs in ``final_scores`` (doc id -> the score the ranking used)."""
    lists = ranked_lists(built, responses)
    fused: dict[str, FusedDoc] = {d.id: d for d in fuse(lists, built.weights, built.fusion)} if built.is_fused else {}
    boosts: dict[str, set[str]] = {}
    for resp in responses:
        for h in ((resp.get("hits") or {}).get("hits")) or []:
            boosts.setdefault(hit_id(h), set()).update(matched_boosts(h))
    label = fusion_label(built, path)
    out: dict[str, HitExplain] = {}
    for doc_id, final in final_scores.items():
        scores = []
        for i, rl in enumerate(lists):
            if doc_id in fused:
                d = fused[doc_id]
                scores.append(RetrieverScore(rl.retriever, d.raw[i], d.normalized[i], d.ranks[i]))
            else:
                pos = next((r for r, (hid, _) in enumerate(rl.hits, start=1) if hid == doc_id), None)
                raw = rl.hits[pos - 1][1] if pos else None
                scores.append(RetrieverScore(rl.retriever, raw, None, pos))
        out[doc_id] = HitExplain(retrievers=tuple(scores), boosts=tuple(sorted(boosts.get(doc_id, ()))),
                                 final=float(final), fusion=label)
    return out
