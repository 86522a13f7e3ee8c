"""Ranking metrics as pure functions of a ranked id list and one query's judgments.

Conventions (chosen to agree with ``trec_eval`` so numbers can be cross-checked):

- A judgment maps a document id to a grade.  A grade above 0 means relevant; 0 (or below)
  means judged not relevant, which is the same as not judged for every metric here.
- nDCG uses the grade itself as the gain (linear gain, as trec_eval's ``ndcg_cut``) and the
  discount ``1 / log2(rank + 1)``; the ideal ranking sorts all judged-relevant documents by grade.
- A document id repeated in a ranking counts only at its first rank, so a search that returns a
  product twice cannot earn its gain twice.
- A query with no relevant document has no defined score: :class:`UndefinedMetric` is raised and
  the caller decides (the runner leaves such queries out and says so).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

__all__ = ["UndefinedMetric", "MetricSpec", "dedupe", "dcg", "ndcg_at_k", "recall_at_k", "precision_at_k",
           "reciprocal_rank", "score", "score_all", "parse_metrics", "DEFAULT_METRICS"]

Qrels = Mapping[str, float]


class UndefinedMetric(ValueError):
    """The metric has no value for this query (it has no relevant document)."""


def dedupe(ranked: Iterable[str]) -> list[str]:
    """``ranked`` with later repeats of an id removed (first rank wins)."""
    seen: set[str] = set()
    out = []
    for doc in ranked:
        if doc not in seen:
            seen.add(doc)
            out.append(doc)
    return out


def _relevant(qrels: Qrels) -> dict[str, float]:
    rel = {d: float(g) for d, g in qrels.items() if g > 0}
    if not rel:
        raise UndefinedMetric("the query has no relevant document")
    return rel


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
        raise ValueError(f"cut-off k must be a positive integer, got {k!r}")


def dcg(gains: Sequence[float]) -> float:
    """Discounted cumulative gain of gains listed by rank (rank 1 first)."""
    return sum(g / math.log2(i + 2) for i, g in enumerate(gains))


def ndcg_at_k(ranked: Sequence[str], qrels: Qrels, k: int) -> float:
    """nDCG@k with the grades as gains; 1.0 means the top k are ideally ordered."""
    _check_k(k)
    rel = _relevant(qrels)
    gains = [rel.get(d, 0.0) for d in dedupe(ranked)[:k]]
    ideal = sorted(rel.values(), reverse=True)[:k]
    return dcg(gains) / dcg(ideal)


def recall_at_k(ranked: Sequence[str], qrels: Qrels, k: int) -> float:
    """Share of the relevant documents found in the top k."""
    _check_k(k)
    rel = _relevant(qrels)
    found = sum(1 for d in dedupe(ranked)[:k] if d in rel)
    return found / len(rel)


def precision_at_k(ranked: Sequence[str], qrels: Qrels, k: int) -> float:
    """Relevant documents in the top k, divided by k (a short list is not rewarded)."""
    _check_k(k)
    rel = _relevant(qrels)
    return sum(1 for d in dedupe(ranked)[:k] if d in rel) / k


def reciprocal_rank(ranked: Sequence[str], qrels: Qrels, k: int | None = None) -> float:
    """1 / rank of the first relevant document (within the top k if given), else 0."""
    if k is not None:
        _check_k(k)
    rel = _relevant(qrels)
    docs = dedupe(ranked)
    for i, d in enumerate(docs[:k] if k else docs):
        if d in rel:
            return 1.0 / (i + 1)
    return 0.0


@dataclass(frozen=True)
class MetricSpec:
    """A metric and its cut-off, written ``ndcg@10``, ``recall@100``, ``precision@5``, ``mrr``, ``mrr@10``."""

    kind: str
    k: int | None = None

    KINDS = ("ndcg", "recall", "precision", "mrr")

    def __post_init__(self) -> None:
        if self.kind not in self.KINDS:
            raise ValueError(f"unknown metric {self.kind!r}; allowed: {list(self.KINDS)}")
        if self.k is None and self.kind != "mrr":
            raise ValueError(f"metric {self.kind} needs a cut-off, e.g. {self.kind}@10")
        if self.k is not None:
            _check_k(self.k)

    @classmethod
    def parse(cls, text: str) -> "MetricSpec":
        m = re.fullmatch(r"\s*([a-z]+)\s*(?:@\s*(\d+))?\s*", text.lower())
        if not m:
            raise ValueError(f"cannot read metric {text!r}; write e.g. ndcg@10, recall@100, mrr")
        return cls(m.group(1), int(m.group(2)) if m.group(2) else None)

    @property
    def name(self) -> str:
        return self.kind if self.k is None else f"{self.kind}@{self.k}"

    @property
    def depth(self) -> int:
        """How many results a search must return for this metric (MRR without cut-off: 100)."""
        return self.k or 100

    def __str__(self) -> str:
        return self.name


_FUNCS = {"ndcg": ndcg_at_k, "recall": recall_at_k, "precision": precision_at_k}


def score(spec: MetricSpec, ranked: Sequence[str], qrels: Qrels) -> float:
    if spec.kind == "mrr":
        return reciprocal_rank(ranked, qrels, spec.k)
    return _FUNCS[spec.kind](ranked, qrels, spec.k)


def score_all(specs: Sequence[MetricSpec], ranked: Sequence[str], qrels: Qrels) -> dict[str, float]:
    """Every metric for one query; raises :class:`UndefinedMetric` if it has no relevant document."""
    return {s.name: score(s, ranked, qrels) for s in specs}


def parse_metrics(names: Iterable[str]) -> tuple[MetricSpec, ...]:
    specs = tuple(dict.fromkeys(MetricSpec.parse(n) for n in names))
    if not specs:
        raise ValueError("at least one metric is needed")
    return specs


DEFAULT_METRICS = parse_metrics(["ndcg@10", "recall@10", "recall@100", "mrr"])
