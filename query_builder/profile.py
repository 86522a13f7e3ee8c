"""Search profiles: which retrievers run, how they are weighted and fused, how strong the boosts are.

A profile is data (JSON), so relevance can be tuned and compared without code
changes; the shipped ones live in ``query_builder/profiles/``.  Loading is
strict: an unknown key, retriever or technique is an error naming the allowed
values, because a typo silently falling back to a default would make an
evaluation compare the wrong things.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field, fields as dc_fields, replace
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from mappings import fields as schema

from .fusion_methods import COMBINATION_METHODS, FUSION_METHODS, FusionMethod, LowerBound, fusion_method
from .retrievers import (INPUT_IMAGE_FEATURE, INPUT_IMAGE_VECTOR, INPUT_TEXT, INPUT_TEXT_VECTOR, INPUTS,
                         REQUEST_KINDS, RETRIEVERS, RetrieverKind, request_kind, retriever)

__all__ = ["ProfileError", "RetrieverSpec", "LexicalSpec", "FusionSpec", "BoostSpec", "PhotoSpec",
           "FacetSpec", "Profile", "load_profile", "shipped_profiles", "FUSION_MODES"]


class ProfileError(ValueError):
    """The profile is malformed; the message names the key and the allowed values."""


FUSION_MODES = ("auto", "server", "client")
SPACE_FLOOR = "space"   # a no_words_min_score filled in from the searcher's space (models.floors)
NO_MATCH = ("empty", "nearest")
COLLAPSE_FIELDS = (schema.GROUP, schema.SERIES)


def _strict(cls, data: Mapping[str, Any], where: str) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise ProfileError(f"{where} must be an object")
    allowed = {f.name for f in dc_fields(cls)}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ProfileError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    return dict(data)


def _positive(value: Any, where: str, *, integer: bool = False, allow_zero: bool = False) -> Any:
    ok_type = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, ok_type) or value < 0 or (value == 0 and not allow_zero):
        kind = "integer" if integer else "number"
        raise ProfileError(f"{where} must be a {'non-negative' if allow_zero else 'positive'} {kind}, got {value!r}")
    return value


@dataclass(frozen=True)
class RetrieverSpec:
    """One retriever in a profile: its kind (a :mod:`query_builder.retrievers` entry), fusion
    weight, k, and how boosts are scaled to its score range.

    ``boost_scale`` exists because a BM25 score is unbounded (often 5 to 20)
    while a cosine k-NN score lies in [0, 1]: the same boost strengths must be
    expressed in each retriever's own units.  Unset, it is the kind's default.

    ``min_score`` (k-NN only) is a relevance floor: the k-NN query becomes a radial search
    (``min_score`` instead of ``k``, Lucene engine), so it returns every product at least that
    similar and nothing below, and the hits' total counts those.  The score is the engine's
    (cosine space: ``(1 + cos) / 2``).  Unset, the retriever returns its ``k`` nearest whatever
    their distance.  ``no_words_min_score`` is the floor when no word of the query matches
    (the lexical retriever finds nothing: random letters, a laptop in a clothing shop): then
    only a close neighbour counts.  Text embeddings put every query fairly near every product,
    so one floor cannot both keep the real matches of worded queries and refuse nonsense.
    ``"space"`` asks for the floor of the space that made the index (:mod:`models.floors`:
    the text encoder's, the catalog's heads'): a floor is a property of the vectors, and one
    calibrated for one encoder or one catalog means nothing for another.  The searcher fills it
    in from its space (:meth:`Profile.with_floors`); a space that knows no floor for the
    retriever, or a searcher without a space, leaves the retriever unfloored.
    Lucene's radial search is approximate: it walks the graph only through nodes above the
    floor, so a match reachable only through dissimilar nodes can be missed.

    ``requests`` limits the retriever to some kinds of request (``text``,
    ``image``, ``text+image``); unset, the kind's default (every kind, for the
    shipped retrievers: it runs whenever its input is there).  The fused-vector
    k-NN, for one, earns its cost only when a photo is given.
    """

    kind: str
    weight: float = 1.0
    k: int = 100
    boost_scale: float | None = None
    requests: tuple[str, ...] | None = None
    min_score: float | None = None
    no_words_min_score: float | str | None = None

    def __post_init__(self) -> None:
        if self.kind not in RETRIEVERS:
            raise ProfileError(f"unknown retriever {self.kind!r}; allowed: {list(RETRIEVERS)}")
        entry = RETRIEVERS[self.kind]
        for key in ("min_score", "no_words_min_score"):
            value = getattr(self, key)
            if value is None or (key == "no_words_min_score" and value == SPACE_FLOOR and not entry.lexical):
                continue
            if entry.lexical:
                raise ProfileError(f"retriever {self.kind}: {key} is a k-NN floor; the lexical retriever's "
                                   "floor is lexical.minimum_should_match")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
                raise ProfileError(f"retriever {self.kind}: {key} must be a number in (0, 1]"
                                   + (f" or {SPACE_FLOOR!r}" if key == "no_words_min_score" else "")
                                   + f", got {value!r}")
        _positive(self.weight, f"retriever {self.kind}: weight")
        _positive(self.k, f"retriever {self.kind}: k", integer=True)
        if self.k > 10_000:
            raise ProfileError(f"retriever {self.kind}: k must be at most 10000")
        if self.boost_scale is None:
            object.__setattr__(self, "boost_scale", entry.boost_scale)
        _positive(self.boost_scale, f"retriever {self.kind}: boost_scale", allow_zero=True)
        reqs = entry.requests if self.requests is None else \
            (self.requests,) if isinstance(self.requests, str) else tuple(self.requests)
        bad = [r for r in reqs if r not in REQUEST_KINDS]
        if bad or not reqs:
            raise ProfileError(f"retriever {self.kind}: requests {list(reqs)}; allowed: a non-empty subset of "
                               f"{list(REQUEST_KINDS)}")
        object.__setattr__(self, "requests", tuple(r for r in REQUEST_KINDS if r in reqs))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | str) -> "RetrieverSpec":
        if isinstance(data, str):
            return cls(kind=data)
        return cls(**_strict(cls, data, "retriever"))

    @property
    def no_words_floor(self) -> float | None:
        """The no-words floor as a number (None: none, or the space's and not filled in)."""
        v = self.no_words_min_score
        return None if v is None or v == SPACE_FLOOR else float(v)

    @property
    def floored(self) -> bool:
        return self.min_score is not None or self.no_words_floor is not None

    def floor(self, level: str) -> float | None:
        """The k-NN floor at ``level``: ``normal``, ``no_words`` (nothing matched the words) or ``none``."""
        if level == "none":
            return None
        if level == "no_words" and self.no_words_floor is not None:
            return self.no_words_floor
        return self.min_score

    @property
    def entry(self) -> RetrieverKind:
        """What this kind of retriever is (its field, query vector, nesting)."""
        return retriever(self.kind)

    def runnable(self, inputs: set[str]) -> bool:
        return request_kind(inputs) in self.requests and any(need in inputs for need in self.entry.needs)


@dataclass(frozen=True)
class LexicalSpec:
    """The lexical retriever: fields with their weights, and how many query words must match.

    ``minimum_should_match`` is OpenSearch's conditional syntax; the default
    ``2<-1 5<75%`` means: with one or two words all must match, with three to
    five all but one, with more three quarters.  Short Chinese queries are
    mostly two or three words, and jieba sometimes splits a product word in two,
    so demanding every word of a longer query would lose good matches.

    What Chinese shoppers type besides the words themselves (each an extra way for a product to
    match, next to the words as typed; none of them changes a query that needs no help):

    - ``pinyin``: the weight of a phrase match on the pinyin fields for query words that read as
      pinyin or initials (``lianyiqun``, ``ydx``); 0 turns it off.
    - ``fuzzy``: Latin words of four or more letters that the index does not know also match
      one or two edits away (``fuzziness: AUTO``, first letter kept).
    - ``max_fuzzy_words``: a query with more unknown Latin words than this gets no fuzzy
      reading (its corrections are still offered).  A typo is one or two words of a query; three
      or more words the titles do not hold are words of another vocabulary (a description's),
      which that reading, needing every one of them to match a title fuzzily, almost never
      finds, at the price of the slowest lexical searches of all.
    - ``corrections``: a Chinese run that reads like an indexed word it is not (``连衣群``) also
      searches that word, and the result says "did you mean".

    ``boosts_retrieve``: a product of a recognized brand or category is a lexical match even
    when the words miss it.  Good for BM25 alone (recall: Product1M nDCG@10 0.51 -> 0.62), bad
    inside a hybrid, where the k-NN retrievers supply that recall and boost-only matches squeeze
    the min-max range of the real ones (Product1M 0.729 -> 0.719; bench/run_eval.py).
    """

    fields: tuple[tuple[str, float], ...] = (
        (schema.TITLE, 3.0), (schema.BRAND_TEXT, 2.0), (schema.CATEGORY_TEXT, 2.0),
        (schema.DESCRIPTION, 1.0), (schema.OCR_TEXT, 0.5))
    type: str = "cross_fields"
    minimum_should_match: str = "2<-1 5<75%"
    boosts_retrieve: bool = False
    pinyin: float = 1.0
    fuzzy: bool = True
    max_fuzzy_words: int = 2
    corrections: bool = True

    def __post_init__(self) -> None:
        for flag in ("boosts_retrieve", "fuzzy", "corrections"):
            if not isinstance(getattr(self, flag), bool):
                raise ProfileError(f"lexical {flag} must be true or false")
        _positive(self.max_fuzzy_words, "lexical max_fuzzy_words", integer=True)
        _positive(self.pinyin, "lexical pinyin", allow_zero=True)
        pairs = self.fields.items() if isinstance(self.fields, Mapping) else self.fields
        out = []
        for name, weight in pairs:
            if name not in schema.TEXT_FIELDS:
                raise ProfileError(f"lexical field {name!r} is not a text field; allowed: {list(schema.TEXT_FIELDS)}")
            _positive(weight, f"lexical field {name} weight")
            out.append((name, float(weight)))
        if not out:
            raise ProfileError("lexical: at least one field is needed")
        object.__setattr__(self, "fields", tuple(out))
        if self.type not in ("cross_fields", "best_fields", "most_fields"):
            raise ProfileError(f"lexical type {self.type!r}; allowed: cross_fields, best_fields, most_fields")
        if not isinstance(self.minimum_should_match, str) or \
                not re.fullmatch(r"(\s*(\d+<)?-?\d+%?\s*)+", self.minimum_should_match):
            raise ProfileError(f"lexical minimum_should_match {self.minimum_should_match!r} is not valid")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "LexicalSpec":
        d = _strict(cls, data, "lexical")
        if "fields" in d and isinstance(d["fields"], Mapping):
            d["fields"] = tuple(d["fields"].items())
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return {"fields": dict(self.fields), "type": self.type, "minimum_should_match": self.minimum_should_match,
                "boosts_retrieve": self.boosts_retrieve, "pinyin": self.pinyin, "fuzzy": self.fuzzy,
                "max_fuzzy_words": self.max_fuzzy_words, "corrections": self.corrections}


def _lower_bounds(value: Any) -> tuple[tuple[str, LowerBound], ...]:
    """``fusion.lower_bounds`` checked: an object by retriever kind (or the pairs it is held as)."""
    if isinstance(value, tuple) and all(isinstance(p, tuple) and len(p) == 2 and isinstance(p[1], LowerBound)
                                        for p in value):
        items = list(value)
    elif isinstance(value, Mapping):
        items = list(value.items())
    else:
        raise ProfileError("fusion lower_bounds must be an object by retriever kind, e.g. "
                           '{"text_knn": {"mode": "clip", "min_score": 0.6}}')
    out = []
    for kind, bound in items:
        where = f"fusion lower_bounds.{kind}"
        if kind not in RETRIEVERS:
            raise ProfileError(f"{where}: unknown retriever; allowed: {list(RETRIEVERS)}")
        if not isinstance(bound, LowerBound):
            d = _strict(LowerBound, bound, where)
            try:
                bound = LowerBound(**d)
            except ValueError as exc:
                raise ProfileError(f"{where}: {exc}") from None
        out.append((kind, bound))
    return tuple(out)


@dataclass(frozen=True)
class FusionSpec:
    """How sub-query results become one list.

    - ``normalization``: a :mod:`query_builder.fusion_methods` entry: ``min_max``, ``l2``,
      ``z_score`` (score based) or ``rrf`` (rank based).
    - ``combination``: mean used after score normalization (ignored by rank-based methods).
    - ``rank_constant``: RRF's k in ``1 / (k + rank)``.
    - ``mode``: ``server`` (neural-search hybrid query and a search pipeline; an
      error if the cluster cannot), ``client`` (one msearch, fused in Python),
      ``auto`` (server when the cluster supports this fusion, else client).
    - ``lower_bounds``: ``min_max`` only; by retriever kind, ``{"mode": "apply" | "clip" |
      "ignore", "min_score": x}`` (:class:`~query_builder.fusion_methods.LowerBound`).  Keyed by
      kind, not listed by position, because a request runs only some of the retrievers: each
      sub-query that runs takes its own retriever's bound, the others none.  Held as
      ``(kind, bound)`` pairs, in the order given, so the spec stays hashable.
    """

    normalization: str = "min_max"
    combination: str = "arithmetic_mean"
    rank_constant: int = 60
    mode: str = "auto"
    lower_bounds: Any = ()

    def __post_init__(self) -> None:
        if self.normalization not in FUSION_METHODS:
            raise ProfileError(f"fusion normalization {self.normalization!r}; allowed: {list(FUSION_METHODS)}")
        if self.combination not in COMBINATION_METHODS:
            raise ProfileError(f"fusion combination {self.combination!r}; allowed: {list(COMBINATION_METHODS)}")
        if self.mode not in FUSION_MODES:
            raise ProfileError(f"fusion mode {self.mode!r}; allowed: {list(FUSION_MODES)}")
        _positive(self.rank_constant, "fusion rank_constant", integer=True)
        if self.rank_constant > 10_000:
            raise ProfileError("fusion rank_constant must be at most 10000")
        object.__setattr__(self, "lower_bounds", _lower_bounds(self.lower_bounds))
        if self.lower_bounds and self.normalization != "min_max":
            raise ProfileError(f"fusion lower_bounds are a min_max option; normalization is {self.normalization!r}")

    def lower_bound(self, kind: str) -> LowerBound | None:
        """The bound of retriever ``kind``'s sub-query (None: plain min-max)."""
        return dict(self.lower_bounds).get(kind)

    def bounds_dict(self) -> dict[str, dict[str, Any]]:
        """``lower_bounds`` as a profile file writes it."""
        return {kind: {"mode": b.mode, "min_score": b.min_score} for kind, b in self.lower_bounds}

    @property
    def method(self) -> FusionMethod:
        """The fusion registry's entry for ``normalization``."""
        return fusion_method(self.normalization)

    @property
    def label(self) -> str:
        """How explain names this fusion, e.g. ``min_max + arithmetic_mean``."""
        label = self.method.label(self.combination, self.rank_constant)
        if self.lower_bounds:
            label += " (lower bounds " + ", ".join(f"{kind} {b.mode} {b.min_score:g}"
                                                   for kind, b in self.lower_bounds) + ")"
        return label

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FusionSpec":
        return cls(**_strict(cls, data, "fusion"))


@dataclass(frozen=True)
class BoostSpec:
    """Relationship boost strengths (before each retriever's ``boost_scale``).

    ``brand``: a recognized brand; ``category``: the recognized category and
    its descendants; ``parent_category``: the rest of the parent's subtree
    (siblings); ``accessory``: products that are accessories of a recognized
    brand or category; ``related``: products related to ``context_product_ids``;
    ``image_category``: a category the photo classifier saw (times its probability).
    """

    enabled: bool = True
    brand: float = 1.0
    category: float = 0.8
    parent_category: float = 0.3
    accessory: float = 0.2
    related: float = 0.2
    image_category: float = 0.6

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise ProfileError("boosts.enabled must be true or false")
        for f in dc_fields(self):
            if f.name != "enabled":
                _positive(getattr(self, f.name), f"boosts.{f.name}", allow_zero=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "BoostSpec":
        return cls(**_strict(cls, data, "boosts"))


@dataclass(frozen=True)
class PhotoSpec:
    """Which of the photo classifier's categories become boosts."""

    top_categories: int = 3
    min_probability: float = 0.2

    def __post_init__(self) -> None:
        _positive(self.top_categories, "photo.top_categories", integer=True, allow_zero=True)
        if not isinstance(self.min_probability, (int, float)) or not 0 <= self.min_probability <= 1:
            raise ProfileError("photo.min_probability must be within [0, 1]")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "PhotoSpec":
        return cls(**_strict(cls, data, "photo"))


@dataclass(frozen=True)
class FacetSpec:
    """Facet sizes and the price buckets (``[from, to)``, ``null`` for an open end)."""

    size: int = 20
    price_ranges: tuple[tuple[float | None, float | None], ...] = (
        (None, 50.0), (50.0, 100.0), (100.0, 200.0), (200.0, 500.0), (500.0, 1000.0), (1000.0, None))

    def __post_init__(self) -> None:
        _positive(self.size, "facets.size", integer=True)
        ranges = []
        for r in self.price_ranges:
            if not isinstance(r, (list, tuple)) or len(r) != 2 or (r[0] is None and r[1] is None):
                raise ProfileError(f"facets.price_ranges holds [from, to] pairs, got {r!r}")
            lo, hi = (None if v is None else float(v) for v in r)
            if lo is not None and hi is not None and lo >= hi:
                raise ProfileError(f"facets.price_ranges: {r!r} is empty")
            ranges.append((lo, hi))
        object.__setattr__(self, "price_ranges", tuple(ranges))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FacetSpec":
        return cls(**_strict(cls, data, "facets"))


_INPUT_SETS = ({INPUT_TEXT, INPUT_TEXT_VECTOR}, {INPUT_IMAGE_VECTOR, INPUT_IMAGE_FEATURE}, set(INPUTS))


@dataclass(frozen=True)
class Profile:
    """Everything that decides how a request becomes OpenSearch requests.

    - ``candidates``: how deep each retriever's list goes before fusion (the
      hybrid query's ``pagination_depth``; the client-side msearch size).
    - ``nested_overfetch``: k multiplier for k-NN over the nested image vectors,
      whose efficient filtering can return fewer than k products.
    - ``max_query_chars`` / ``max_query_tokens``: longer text is truncated, with a note.
    - ``synonyms``: a synonym file (Solr format, :mod:`analysis.synonyms`) applied to the
      lexical retriever's query; a relative path is read from the profile file's folder.
      ``--synonyms`` on the command line takes precedence.
    - ``verbose_query_words``: a query of at least this many words (a pasted description, a
      sentence) runs without the text k-NN retrievers when the lexical one runs: on such
      queries BM25 is nearly always right and text k-NN only pulls lookalikes above the
      product (IKEA description queries: bench/run_eval.py).  0 turns this off.
    - ``verbose_minimum_should_match``: the lexical minimum match for such a query (unset: the
      lexical one), and ``verbose_text_weight``: what the text k-NN retrievers' weights are
      multiplied by for it (0: they are left out).  A pasted title then finds its product by
      its words and similar products after it.
    - ``no_match``: what a search returns when no retriever finds a real match (no lexical match
      and nothing above a k-NN ``min_score``): ``empty`` (no hits, total 0) or ``nearest`` (the
      nearest products anyway, the result flagged ``low_confidence``, total 0).
    - ``collapse``: a keyword field (``group``: same brand and title; ``series``) whose
      products count as one: a page shows the best of each, the others as its ``variants``
      (at most ``collapse_variants``).  Unset: every product stands alone.
    """

    name: str
    retrievers: tuple[RetrieverSpec, ...]
    description: str = ""
    fusion: FusionSpec = field(default_factory=FusionSpec)
    lexical: LexicalSpec = field(default_factory=LexicalSpec)
    boosts: BoostSpec = field(default_factory=BoostSpec)
    photo: PhotoSpec = field(default_factory=PhotoSpec)
    facets: FacetSpec = field(default_factory=FacetSpec)
    candidates: int = 100
    nested_overfetch: float = 2.0
    max_query_chars: int = 256
    max_query_tokens: int = 32
    verbose_query_words: int = 0
    synonyms: str | None = None
    verbose_minimum_should_match: str | None = None
    verbose_text_weight: float = 0.0
    no_match: str = "empty"
    collapse: str | None = None
    collapse_variants: int = 3

    def __post_init__(self) -> None:
        if self.synonyms is not None and (not isinstance(self.synonyms, str) or not self.synonyms.strip()):
            raise ProfileError("synonyms must be the path of a synonym file")
        if not isinstance(self.name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", self.name):
            raise ProfileError(f"profile name {self.name!r} must be 1-64 letters, digits, '_', '.', '-'")
        rs = tuple(r if isinstance(r, RetrieverSpec) else RetrieverSpec.from_dict(r) for r in self.retrievers)
        if not rs:
            raise ProfileError(f"profile {self.name}: at least one retriever is needed")
        kinds = [r.kind for r in rs]
        if len(set(kinds)) != len(kinds):
            raise ProfileError(f"profile {self.name}: a retriever is listed twice: {kinds}")
        object.__setattr__(self, "retrievers", rs)
        unbounded = [kind for kind, _ in self.fusion.lower_bounds if kind not in kinds]
        if unbounded:
            raise ProfileError(f"profile {self.name}: fusion lower_bounds name retrievers it does not have: "
                               f"{unbounded}; its retrievers: {kinds}")
        _positive(self.candidates, "candidates", integer=True)
        if self.candidates > 10_000:
            raise ProfileError("candidates must be at most 10000")
        if isinstance(self.nested_overfetch, bool) or not isinstance(self.nested_overfetch, (int, float)) \
                or self.nested_overfetch < 1:
            raise ProfileError("nested_overfetch must be a number >= 1")
        _positive(self.max_query_chars, "max_query_chars", integer=True)
        _positive(self.max_query_tokens, "max_query_tokens", integer=True)
        _positive(self.verbose_query_words, "verbose_query_words", integer=True, allow_zero=True)
        if self.verbose_minimum_should_match is not None:
            try:
                LexicalSpec(minimum_should_match=self.verbose_minimum_should_match)
            except ProfileError:
                raise ProfileError(f"verbose_minimum_should_match {self.verbose_minimum_should_match!r} "
                                   "is not valid") from None
        _positive(self.verbose_text_weight, "verbose_text_weight", allow_zero=True)
        if self.no_match not in NO_MATCH:
            raise ProfileError(f"no_match {self.no_match!r}; allowed: {list(NO_MATCH)}")
        if self.collapse is not None and self.collapse not in COLLAPSE_FIELDS:
            raise ProfileError(f"collapse {self.collapse!r}; allowed: {list(COLLAPSE_FIELDS)} or null")
        _positive(self.collapse_variants, "collapse_variants", integer=True, allow_zero=True)
        if self.fusion.mode == "server":
            for inputs in _INPUT_SETS:
                n = len(self.active(inputs))
                if n > 5:
                    raise ProfileError(
                        f"profile {self.name}: {n} retrievers can run at once but a server-side hybrid query "
                        "holds at most 5; drop one or use fusion mode 'client' or 'auto'")

    # --- behaviour ---------------------------------------------------------------------
    def active(self, inputs: set[str]) -> tuple[RetrieverSpec, ...]:
        """The retrievers that can run given the request's inputs, in profile order."""
        return tuple(r for r in self.retrievers if r.runnable(inputs))

    def fingerprint(self) -> str:
        """A short stable hash of the whole profile (for names derived from it)."""
        blob = json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False).encode("utf-8")
        return hashlib.sha1(blob).hexdigest()[:10]

    def with_(self, **changes: Any) -> "Profile":
        return replace(self, **changes)

    def with_floors(self, floors: Mapping[str, float]) -> "Profile":
        """The profile with every ``"space"`` no-words floor filled in from ``floors`` (the
        space's, by retriever kind); one the space does not know is left out."""
        if not any(r.no_words_min_score == SPACE_FLOOR for r in self.retrievers):
            return self
        return replace(self, retrievers=tuple(
            replace(r, no_words_min_score=floors.get(r.kind)) if r.no_words_min_score == SPACE_FLOOR else r
            for r in self.retrievers))

    # --- (de)serialization ---------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Profile":
        # the fused weights are the index's (recorded with its space), no longer a profile's:
        # older profile files that still carry them load, and the value is not used
        d = _strict(cls, {k: v for k, v in data.items() if k != "fused_weights"}, "profile")
        if "name" not in d or "retrievers" not in d:
            raise ProfileError("profile needs 'name' and 'retrievers'")
        d["retrievers"] = tuple(RetrieverSpec.from_dict(r) for r in d["retrievers"])
        for key, sub in (("fusion", FusionSpec), ("lexical", LexicalSpec), ("boosts", BoostSpec),
                         ("photo", PhotoSpec), ("facets", FacetSpec)):
            if key in d:
                d[key] = sub.from_dict(d[key])
        try:
            return cls(**d)
        except TypeError as exc:
            raise ProfileError(f"profile: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if self.fusion.lower_bounds:
            d["fusion"]["lower_bounds"] = self.fusion.bounds_dict()
        else:
            del d["fusion"]["lower_bounds"]   # a profile without bounds writes what it always did
        d["lexical"] = self.lexical.to_dict()
        d["retrievers"] = [{**{k: v for k, v in asdict(r).items()
                               if not (k in ("min_score", "no_words_min_score") and v is None)},
                            "requests": list(r.requests)} for r in self.retrievers]
        d["facets"]["price_ranges"] = [list(r) for r in self.facets.price_ranges]
        return d


def shipped_profiles() -> list[str]:
    """Names of the profiles shipped in ``query_builder/profiles``."""
    folder = resources.files(__package__) / "profiles"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json"))


def load_profile(source: str | Path | Mapping[str, Any] | Profile) -> Profile:
    """A profile from an object, a JSON file path, or the name of a shipped profile."""
    if isinstance(source, Profile):
        return source
    if isinstance(source, Mapping):
        return Profile.from_dict(source)
    path = Path(source)
    if not path.is_file():
        shipped = resources.files(__package__) / "profiles" / f"{source}.json"
        if not shipped.is_file():
            raise ProfileError(f"no profile file {source!r}; shipped profiles: {shipped_profiles()}")
        text = shipped.read_text(encoding="utf-8")
        where = f"shipped profile {source}"
    else:
        text = path.read_text(encoding="utf-8")
        where = str(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProfileError(f"{where}: not valid JSON ({exc})") from None
    try:
        profile = Profile.from_dict(data)
    except ProfileError as exc:
        raise ProfileError(f"{where}: {exc}") from None
    if profile.synonyms and path.is_file() and not Path(profile.synonyms).is_absolute():
        profile = profile.with_(synonyms=str(path.resolve().parent / profile.synonyms))
    return profile
