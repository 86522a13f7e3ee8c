"""Running several search profiles over one judgment set, per query and averaged, side by side.

The runner knows nothing about OpenSearch: each profile is a *search callable*
``(query, depth) -> ranked product ids``.  That keeps the metric bookkeeping testable with any
ranking, and lets the CLI plug in the query builder's Searcher (see :mod:`.search_adapter`).

A profile that cannot answer a query at all (an image-only profile asked a text query) raises
:class:`NotApplicable`; such queries are counted, not scored as zeros, because a zero would
measure the query mix, not the profile.  Queries without any relevant judgment are left out the
same way (no metric is defined for them).  The table shows each profile's query count so a
reader sees when two means rest on different queries.
"""
from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterable, Mapping, Sequence

from .judgments import JudgedQuery, JudgmentSet
from .metrics import DEFAULT_METRICS, MetricSpec, score_all

__all__ = ["SearchFn", "NotApplicable", "EvalError", "QueryResult", "ProfileSummary", "EvalRun", "run_profiles",
           "summarize", "format_table", "format_worst", "new_run_id"]

SearchFn = Callable[[JudgedQuery, int], Sequence[str]]


class NotApplicable(Exception):
    """This profile cannot search this query (e.g. it needs a photo and the query has none)."""


class EvalError(RuntimeError):
    """A search failed during evaluation; the message names the profile and the query."""


def new_run_id() -> str:
    """Sortable and unique: UTC time plus a short random suffix."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


@dataclass(frozen=True)
class QueryResult:
    profile: str
    query_id: str
    query_text: str
    metrics: Mapping[str, float]
    top: tuple[str, ...] = ()        # the first ten ids returned, for reading worst queries
    latency_ms: float = 0.0


@dataclass(frozen=True)
class ProfileSummary:
    profile: str
    means: Mapping[str, float]
    queries: int                     # scored queries the means are over
    not_applicable: int = 0          # queries the profile cannot search
    mean_latency_ms: float = 0.0


@dataclass
class EvalRun:
    """Everything one evaluation produced; :meth:`to_dict` is what ``--json`` writes."""

    run_id: str
    dataset: str
    timestamp: str
    metrics: tuple[MetricSpec, ...]
    results: list[QueryResult] = field(default_factory=list)
    summaries: dict[str, ProfileSummary] = field(default_factory=dict)
    unjudged: tuple[str, ...] = ()   # query ids without a relevant document, skipped for every profile

    @property
    def metric_names(self) -> list[str]:
        return [m.name for m in self.metrics]

    def for_profile(self, profile: str) -> list[QueryResult]:
        return [r for r in self.results if r.profile == profile]

    def to_dict(self) -> dict:
        return {
            "run_id": self.run_id, "dataset": self.dataset, "timestamp": self.timestamp,
            "metrics": self.metric_names, "unjudged": list(self.unjudged),
            "summaries": {p: asdict(s) for p, s in self.summaries.items()},
            "results": [asdict(r) for r in self.results],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=1)


def _mean(values: Iterable[float]) -> float:
    vals = list(values)
    return sum(vals) / len(vals) if vals else float("nan")


def summarize(profile: str, rows: Sequence[QueryResult], metrics: Sequence[MetricSpec],
              not_applicable: int = 0) -> ProfileSummary:
    """Means of ``rows`` (one profile's per-query results) for each metric."""
    return ProfileSummary(profile, {m.name: _mean(r.metrics[m.name] for r in rows) for m in metrics}, len(rows),
                          not_applicable, round(_mean(r.latency_ms for r in rows), 2) if rows else 0.0)


def run_profiles(jset: JudgmentSet, searches: Mapping[str, SearchFn],
                 metrics: Sequence[MetricSpec] = DEFAULT_METRICS, *, run_id: str | None = None,
                 progress: Callable[[str, int, int], None] | None = None) -> EvalRun:
    """Search every judged query with every profile and score the rankings.

    ``searches`` maps a profile name to its search callable (insertion order is table order).
    ``progress(profile, done, total)`` is called after each query, for a progress bar.
    """
    if not searches:
        raise ValueError("no profile to evaluate")
    metrics = tuple(metrics)
    depth = max(m.depth for m in metrics)
    judged = [q for q in jset.queries if q.relevant]
    run = EvalRun(run_id=run_id or new_run_id(), dataset=jset.name,
                  timestamp=datetime.now(timezone.utc).isoformat(timespec="seconds"), metrics=metrics,
                  unjudged=tuple(q.id for q in jset.queries if not q.relevant))
    for profile, search in searches.items():
        rows, skipped = [], 0
        for i, q in enumerate(judged, 1):
            t0 = time.perf_counter()
            try:
                ranked = list(search(q, depth))
            except NotApplicable:
                skipped += 1
                continue
            except Exception as exc:  # noqa: BLE001 - re-raised with the query named
                raise EvalError(f"profile {profile}, query {q.id} ({q.label!r}): {type(exc).__name__}: {exc}") from exc
            finally:
                if progress:
                    progress(profile, i, len(judged))
            ms = (time.perf_counter() - t0) * 1000.0
            rows.append(QueryResult(profile, q.id, q.label, score_all(metrics, ranked, q.grades),
                                    tuple(ranked[:10]), round(ms, 2)))
        run.results.extend(rows)
        run.summaries[profile] = summarize(profile, rows, metrics, skipped)
    return run


def _fmt(v: float) -> str:
    return "   n/a" if v != v else f"{v:.4f}"


def format_table(run: EvalRun, *, mark_best: bool = True) -> str:
    """Profiles as rows, metrics as columns; the best mean of each column is marked ``*``."""
    names = run.metric_names
    best = {}
    for m in names:
        vals = [s.means[m] for s in run.summaries.values() if s.means[m] == s.means[m]]
        best[m] = max(vals) if vals else None
    pw = max([len("profile")] + [len(p) for p in run.summaries])
    cols = [max(len(m), 7) for m in names]
    head = f"{'profile':<{pw}}  {'queries':>7}  " + "  ".join(f"{m:>{w}}" for m, w in zip(names, cols)) + "  skipped  ms/query"
    lines = [f"{run.dataset}  (run {run.run_id})", head, "-" * len(head)]
    for p, s in run.summaries.items():
        cells = []
        for m, w in zip(names, cols):
            star = "*" if mark_best and best[m] is not None and s.means[m] == best[m] and len(run.summaries) > 1 else " "
            cells.append(f"{_fmt(s.means[m]) + star:>{w + 1}}")
        lines.append(f"{p:<{pw}}  {s.queries:>7}  " + " ".join(cells) + f"  {s.not_applicable:>7}  {s.mean_latency_ms:>8.1f}")
    if run.unjudged:
        lines.append(f"({len(run.unjudged)} query(ies) without a relevant judgment were left out)")
    return "\n".join(lines)


def format_worst(run: EvalRun, metric: str, n: int = 10) -> str:
    """The ``n`` lowest-scoring queries of each profile for ``metric``, with what came back first."""
    out = []
    for p in run.summaries:
        rows = sorted(run.for_profile(p), key=lambda r: (r.metrics[metric], r.query_id))[:n]
        out.append(f"worst {len(rows)} queries of {p} by {metric}:")
        for r in rows:
            out.append(f"  {r.metrics[metric]:.4f}  {r.query_id}  {r.query_text[:60]!r}  top: {', '.join(r.top[:3])}")
    return "\n".join(out)
