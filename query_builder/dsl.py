"""Small immutable OpenSearch query pieces that compose and end in ``to_dict()``.

Requests are built from these, never from string templates, so user text can
only ever land in a value position (a ``multi_match`` query string or a ``term``
value), never in query syntax.  Every piece is a frozen dataclass: a built query
can be shared, compared and hashed, and nothing downstream can change it.
Field names come from :mod:`mappings.fields`; this module spells none.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

__all__ = ["Query", "Term", "Terms", "Ids", "Exists", "Range", "MultiMatch", "ConstantScore", "Bool", "Knn", "InnerHits",
           "Nested", "Hybrid", "MatchAll", "MatchNone", "MatchPhrase", "vector_tuple", "transform"]


@runtime_checkable
class Query(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


def _common(body: dict[str, Any], boost: float | None, name: str | None) -> dict[str, Any]:
    if boost is not None:
        body["boost"] = boost
    if name:
        body["_name"] = name
    return body


def vector_tuple(vec: Sequence[float] | Any) -> tuple[float, ...]:
    """A query vector as an immutable tuple of Python floats (accepts lists and numpy arrays)."""
    values = vec.tolist() if hasattr(vec, "tolist") else list(vec)
    if values and isinstance(values[0], list):
        raise ValueError("a query vector must be one-dimensional")
    return tuple(float(v) for v in values)


@dataclass(frozen=True)
class MatchAll:
    def to_dict(self) -> dict[str, Any]:
        return {"match_all": {}}


@dataclass(frozen=True)
class MatchNone:
    def to_dict(self) -> dict[str, Any]:
        return {"match_none": {}}


@dataclass(frozen=True)
class Term:
    field: str
    value: str | int | float | bool
    boost: float | None = None
    name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"term": {self.field: _common({"value": self.value}, self.boost, self.name)}}


@dataclass(frozen=True)
class Terms:
    field: str
    values: tuple[str | int | float, ...]
    boost: float | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", tuple(self.values))
        if not self.values:
            raise ValueError(f"terms on {self.field} needs at least one value")

    def to_dict(self) -> dict[str, Any]:
        return {"terms": _common({self.field: list(self.values)}, self.boost, self.name)}


@dataclass(frozen=True)
class Exists:
    field: str

    def to_dict(self) -> dict[str, Any]:
        return {"exists": {"field": self.field}}


@dataclass(frozen=True)
class Ids:
    """Documents by ``_id``."""

    values: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"ids": {"values": list(self.values)}}


@dataclass(frozen=True)
class Range:
    field: str
    gte: float | None = None
    lte: float | None = None
    gt: float | None = None
    lt: float | None = None

    def to_dict(self) -> dict[str, Any]:
        body = {k: v for k, v in (("gte", self.gte), ("gt", self.gt), ("lte", self.lte), ("lt", self.lt))
                if v is not None}
        return {"range": {self.field: body}}


@dataclass(frozen=True)
class MultiMatch:
    """``multi_match`` over pre-tokenized fields: ``query`` is space-joined tokens."""

    query: str
    fields: tuple[tuple[str, float], ...]
    type: str = "cross_fields"
    operator: str = "or"
    minimum_should_match: str | None = None
    boost: float | None = None
    name: str | None = None
    fuzziness: str | None = None       # e.g. "AUTO" (not with cross_fields)
    prefix_length: int | None = None   # leading characters a fuzzy match keeps

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "query": self.query,
            "fields": [f if w == 1 else f"{f}^{_num(w)}" for f, w in self.fields],
            "type": self.type,
            "operator": self.operator,
        }
        if self.minimum_should_match is not None:
            body["minimum_should_match"] = self.minimum_should_match
        if self.fuzziness is not None:
            body["fuzziness"] = self.fuzziness
        if self.prefix_length is not None:
            body["prefix_length"] = self.prefix_length
        return {"multi_match": _common(body, self.boost, self.name)}


@dataclass(frozen=True)
class MatchPhrase:
    """``match_phrase`` on one pre-tokenized field: the words in this order, side by side."""

    field: str
    query: str
    boost: float | None = None
    name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"match_phrase": {self.field: _common({"query": self.query}, self.boost, self.name)}}


@dataclass(frozen=True)
class ConstantScore:
    """A filter that adds exactly ``boost`` to a document's score when it matches."""

    filter: Query
    boost: float
    name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"constant_score": _common({"filter": self.filter.to_dict()}, self.boost, self.name)}


@dataclass(frozen=True)
class MinScore:
    """``query``'s documents that score at least ``min_score`` (a ``function_score`` without
    functions, whose score is the query's own).  Around a k-NN query it keeps the ``k`` nearest
    that are also close enough: bounded work, unlike a radial search, whose cost grows with the
    number of documents above its threshold."""

    query: Query
    min_score: float

    def to_dict(self) -> dict[str, Any]:
        return {"function_score": {"query": self.query.to_dict(), "min_score": self.min_score}}


@dataclass(frozen=True)
class Bool:
    must: tuple[Query, ...] = ()
    should: tuple[Query, ...] = ()
    filter: tuple[Query, ...] = ()
    must_not: tuple[Query, ...] = ()
    minimum_should_match: int | str | None = None
    boost: float | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        for part in ("must", "should", "filter", "must_not"):
            object.__setattr__(self, part, tuple(getattr(self, part)))

    def with_filter(self, *clauses: Query) -> "Bool":
        return replace(self, filter=(*self.filter, *clauses))

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {}
        for part in ("must", "should", "filter", "must_not"):
            clauses = getattr(self, part)
            if clauses:
                body[part] = [c.to_dict() for c in clauses]
        if self.minimum_should_match is not None:
            body["minimum_should_match"] = self.minimum_should_match
        return {"bool": _common(body, self.boost, self.name)}


@dataclass(frozen=True)
class Knn:
    """k-NN query; ``filter`` is applied inside the graph search (efficient filtering).

    With ``min_score`` it is a radial search: every document scoring at least that, not the
    ``k`` nearest (``k`` then only sizes retries and is not sent).
    """

    field: str
    vector: tuple[float, ...]
    k: int
    filter: Query | None = None
    boost: float | None = None
    name: str | None = None
    min_score: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "vector", vector_tuple(self.vector))
        if not self.vector:
            raise ValueError(f"knn on {self.field} needs a vector")
        if self.k < 1:
            raise ValueError("knn k must be >= 1")

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"vector": list(self.vector)}
        if self.min_score is None:
            body["k"] = self.k
        else:
            body["min_score"] = self.min_score
        if self.filter is not None:
            body["filter"] = self.filter.to_dict()
        return {"knn": {self.field: _common(body, self.boost, self.name)}}


@dataclass(frozen=True)
class InnerHits:
    """Inner hits whose fields come from doc values: nested ``_source`` would parse the whole parent."""

    name: str
    size: int = 1
    docvalue_fields: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"name": self.name, "size": self.size, "_source": False}
        if self.docvalue_fields:
            body["docvalue_fields"] = list(self.docvalue_fields)
        return body


@dataclass(frozen=True)
class Nested:
    path: str
    query: Query
    score_mode: str = "max"
    inner_hits: InnerHits | None = None
    boost: float | None = None
    name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"path": self.path, "query": self.query.to_dict(), "score_mode": self.score_mode}
        if self.inner_hits is not None:
            body["inner_hits"] = self.inner_hits.to_dict()
        return {"nested": _common(body, self.boost, self.name)}


@dataclass(frozen=True)
class Hybrid:
    """neural-search ``hybrid``: top-level only, at most five sub-queries, needs a search pipeline."""

    MAX_QUERIES = 5
    queries: tuple[Query, ...] = field(default_factory=tuple)
    pagination_depth: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "queries", tuple(self.queries))
        if not 1 <= len(self.queries) <= self.MAX_QUERIES:
            raise ValueError(f"hybrid holds 1 to {self.MAX_QUERIES} sub-queries, got {len(self.queries)}")

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"queries": [q.to_dict() for q in self.queries]}
        if self.pagination_depth is not None:
            body["pagination_depth"] = self.pagination_depth
        return {"hybrid": body}


def transform(query: Query, fn: Callable[[Query], Query]) -> Query:
    """A copy of ``query`` with ``fn`` applied to every piece, children first.

    The pieces are immutable, so this is how a built query is varied (e.g. a
    larger k for one retry) without rebuilding it from the request.
    """
    if isinstance(query, Bool):
        query = replace(query, **{part: tuple(transform(c, fn) for c in getattr(query, part))
                                  for part in ("must", "should", "filter", "must_not")})
    elif isinstance(query, Nested):
        query = replace(query, query=transform(query.query, fn))
    elif isinstance(query, ConstantScore):
        query = replace(query, filter=transform(query.filter, fn))
    elif isinstance(query, MinScore):
        query = replace(query, query=transform(query.query, fn))
    elif isinstance(query, Hybrid):
        query = replace(query, queries=tuple(transform(q, fn) for q in query.queries))
    elif isinstance(query, Knn) and query.filter is not None:
        query = replace(query, filter=transform(query.filter, fn))
    return fn(query)


def _num(w: float) -> str:
    return str(int(w)) if float(w).is_integer() else repr(float(w))
