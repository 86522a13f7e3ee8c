"""Turning searches and clicks into graded judgments: clicks over expected clicks (COEC).

Why this model: a click at position 1 says little (people click the top result whatever it
is), a click at position 8 says a lot.  COEC divides a product's clicks by the clicks an
average result would have earned at the positions where the product was shown, so position bias
is taken out with one number per position learned from the same logs.  It is also the model
OpenSearch's Search Relevance Workbench uses for implicit judgments, so both tools agree.

The model, step by step (``max_rank`` and ``min_impressions`` are :class:`ClickModelConfig`):

1. An **impression** is a product shown for a search at a position <= ``max_rank``: each
   position of a search's ``query_response_hit_ids`` (position = index + 1), plus explicit
   ``impression`` events.  A product counts once per search (its best position).
2. A **click** counts once per search and product (a double click is one vote), at the click's
   ``position`` or, when the click has none, where the search showed the product.  A click on a
   product the search did not list still implies an impression at its position; a click whose
   position cannot be known is dropped and counted in the report.
3. **Position prior**: ``ctr(p) = clicks at p / impressions at p`` pooled over all searches.
4. Searches are grouped by their **normalized text** (Unicode NFKC, lower case, single spaces).
   For each (query, product): ``clicks``, ``impressions`` and
   ``expected = sum of ctr(p) over the product's impressions``; ``coec = clicks / expected``.
5. **Grade**: fewer than ``min_impressions`` impressions: no judgment (too little evidence);
   no click: 0; otherwise 1 + the number of ``grade_cuts`` (default 1.0 and 2.0) that the COEC
   reaches: clicked less than an average result at those positions -> 1, up to twice as often -> 2,
   more -> 3.

Searches without text (photo searches) are counted and skipped: a judgment set needs the query.
"""
from __future__ import annotations

import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Iterable

from .events import CLICK, IMPRESSION, SEARCH, Event
from .judgments import JudgedQuery, JudgmentSet, query_id_for

__all__ = ["ClickModelConfig", "PairStats", "ClickReport", "normalize_query", "judgments_from_events"]


@dataclass(frozen=True)
class ClickModelConfig:
    max_rank: int = 20
    min_impressions: int = 3
    grade_cuts: tuple[float, ...] = (1.0, 2.0)

    def __post_init__(self) -> None:
        if self.max_rank < 1 or self.min_impressions < 1:
            raise ValueError("max_rank and min_impressions must be at least 1")
        cuts = tuple(float(c) for c in self.grade_cuts)
        if list(cuts) != sorted(cuts) or any(c <= 0 for c in cuts) or len(cuts) > 2:
            raise ValueError("grade_cuts: at most two increasing positive COEC values (grades go up to 3)")
        object.__setattr__(self, "grade_cuts", cuts)

    def grade(self, clicks: int, coec: float) -> int:
        if clicks == 0:
            return 0
        return 1 + sum(1 for c in self.grade_cuts if coec >= c)


@dataclass(frozen=True)
class PairStats:
    query: str
    doc: str
    impressions: int
    clicks: int
    expected: float
    coec: float
    grade: int | None        # None: fewer impressions than min_impressions


@dataclass
class ClickReport:
    searches: int = 0
    searches_without_text: int = 0
    duplicate_searches: int = 0
    impressions: int = 0
    clicks: int = 0
    clicks_dropped: int = 0          # position unknown
    orphan_events: int = 0           # impressions/clicks whose search is unknown and which carry no text
    clicks_beyond_max_rank: int = 0
    position_ctr: dict[int, float] = field(default_factory=dict)
    pairs: list[PairStats] = field(default_factory=list)

    def summary(self) -> str:
        judged = [p for p in self.pairs if p.grade is not None]
        grades = Counter(p.grade for p in judged)
        ctr = ", ".join(f"{p}:{c:.3f}" for p, c in sorted(self.position_ctr.items())[:10])
        return (f"{self.searches} searches ({self.searches_without_text} without text skipped, "
                f"{self.duplicate_searches} duplicate query_id), {self.impressions} impressions, {self.clicks} clicks "
                f"({self.clicks_dropped} without a known position dropped, {self.clicks_beyond_max_rank} beyond max rank), "
                f"{self.orphan_events} impression/click events without a known search\n"
                f"position CTR: {ctr}\n"
                f"{len(judged)} judgments from {len(self.pairs)} query-product pairs; grades "
                + ", ".join(f"{g}: {grades.get(g, 0)}" for g in range(4)))


_SPACES = re.compile(r"\s+")


def normalize_query(text: str) -> str:
    """The key searches are grouped by: NFKC, lower case, whitespace collapsed."""
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", text)).strip().lower()


def judgments_from_events(events: Iterable[Event], config: ClickModelConfig = ClickModelConfig(),
                          name: str = "clicks") -> tuple[JudgmentSet, ClickReport]:
    """Graded judgments from search, impression and click events (see the module docstring)."""
    report = ClickReport()
    searches: dict[str, str] = {}                      # query_id -> normalized text
    shown_text: dict[str, Counter] = defaultdict(Counter)  # normalized -> original spellings
    impressions: dict[tuple[str, str], int] = {}       # (query_id, doc) -> best position
    clicked: dict[tuple[str, str], int | None] = {}    # (query_id, doc) -> position from the click
    others = []
    textless: set[str] = set()                         # photo-only searches: their clicks are skipped too
    for e in events:
        if e.action_name != SEARCH:
            others.append(e)
            continue
        report.searches += 1
        if e.query_id in searches:
            report.duplicate_searches += 1
            continue
        key = normalize_query(e.user_query or "")
        if not key:
            report.searches_without_text += 1
            textless.add(e.query_id)
            continue
        searches[e.query_id] = key
        shown_text[key][e.user_query.strip()] += 1
        for i, doc in enumerate(e.hit_ids, 1):
            if i <= config.max_rank:
                impressions.setdefault((e.query_id, doc), i)
    for e in others:
        if e.query_id is None or e.query_id in textless:
            continue
        if e.query_id not in searches and e.user_query and e.action_name in (IMPRESSION, CLICK):
            # an event whose search record is missing but which carries the text itself (UBI allows it)
            key = normalize_query(e.user_query)
            if key:
                searches[e.query_id] = key
                shown_text[key][e.user_query.strip()] += 1
        if e.query_id not in searches:
            if e.action_name in (IMPRESSION, CLICK):
                report.orphan_events += 1
            continue
        pair = (e.query_id, e.object_id)
        if e.action_name == IMPRESSION and e.position <= config.max_rank:
            impressions[pair] = min(impressions.get(pair, e.position), e.position)
        elif e.action_name == CLICK:
            report.clicks += 1
            if pair in clicked and clicked[pair] is not None:
                continue
            clicked[pair] = e.position
    counted_clicks: dict[tuple[str, str], int] = {}
    for pair, pos in clicked.items():
        pos = pos if pos is not None else impressions.get(pair)
        if pos is None:
            report.clicks_dropped += 1
            continue
        if pos > config.max_rank:
            report.clicks_beyond_max_rank += 1
            continue
        counted_clicks[pair] = pos
        impressions[pair] = pos   # the click says where the product was shown
    report.impressions = len(impressions)
    # position prior
    imp_at, clk_at = Counter(impressions.values()), Counter(counted_clicks.values())
    report.position_ctr = {p: clk_at[p] / n for p, n in sorted(imp_at.items())}
    # aggregate per (normalized query, doc)
    agg: dict[tuple[str, str], list] = defaultdict(lambda: [0, 0, 0.0])
    for (qid, doc), pos in impressions.items():
        a = agg[(searches[qid], doc)]
        a[0] += 1
        a[2] += report.position_ctr[pos]
        if (qid, doc) in counted_clicks:
            a[1] += 1
    grades: dict[str, dict[str, int]] = defaultdict(dict)
    for (key, doc), (n, c, expected) in sorted(agg.items()):
        coec = c / expected if expected > 0 else 0.0
        grade = config.grade(c, coec) if n >= config.min_impressions else None
        report.pairs.append(PairStats(key, doc, n, c, round(expected, 6), round(coec, 6), grade))
        if grade is not None:
            grades[key][doc] = grade
    queries = []
    for key in sorted(grades):
        text = shown_text[key].most_common(1)[0][0]
        queries.append(JudgedQuery(query_id_for(key), text, None, grades[key]))
    return JudgmentSet(name, tuple(queries)), report
