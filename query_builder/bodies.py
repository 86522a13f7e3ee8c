"""From a request, its understanding and its vectors to OpenSearch request bodies.

Pure: no connection, no clock, no randomness; the same inputs give the same
bodies (the golden tests hold them to that).  One :class:`BuiltSearch` carries
both forms of the same search:

- server-side: one ``hybrid`` query (or the single retriever's query) plus the
  search pipeline that fuses it;
- client-side: one body per retriever for an ``msearch``, fused in Python with
  the same semantics (:mod:`query_builder.fusion`), plus a facet body.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from typing import Any, Sequence

from analysis import Vocabulary
from analysis.pinyin import INITIALS
from mappings import fields

from .boosts import BOOST_KINDS, EXPANSION_KINDS, Boost, boost_clauses, plan_boosts

from .dsl import Bool, Hybrid, Ids, InnerHits, Knn, MatchPhrase, MinScore, MultiMatch, Nested, Query
from .facets import facet_aggs
from .filters import filter_clauses, filter_query
from .profile import FusionSpec, Profile, RetrieverSpec
from .request import QueryVectors, SearchRequest
from .retrievers import (INPUT_IMAGE_FEATURE, INPUT_IMAGE_VECTOR, INPUT_TEXT, INPUT_TEXT_VECTOR, VECTOR_FUSED,
                         RetrieverKind)
from .search_pipelines import SearchPipeline, search_pipeline
from .understand import Understanding

__all__ = ["BuildError", "SubQuery", "BuiltSearch", "build_search", "DISPLAY_FIELDS", "fused_query_vector",
           "request_inputs", "VARIANTS", "FLOOR_LEVELS"]
FLOOR_LEVELS = ("normal", "no_words", "none")

VARIANTS = "variants"   # the inner hits of a collapsed group

# What a hit needs for display (the product id included), read from doc values.  Bodies load no
# stored fields at all: not _source (it would parse every stored vector of every hit) and not
# even _id: a hybrid query pays for them on its candidates, not its page.  On a 10k-product
# index, one segment, the engine took 29 ms at size 1 or 10 with stored fields, 9 ms without
# (bench/bench_took.py, BENCHMARKS.md).
DISPLAY_FIELDS = (fields.ID, fields.TITLE_RAW, fields.BRAND, fields.CATEGORY_LEAF, fields.PRICE, fields.RATING,
                 fields.IMAGE_URLS)


class BuildError(ValueError):
    """The request cannot be built with this profile (e.g. no retriever can use its inputs)."""


@dataclass(frozen=True)
class SubQuery:
    retriever: str
    weight: float      # share of the fusion, the active sub-queries' weights sum to 1
    query: Query
    k: int = 0         # products the retriever is meant to return (its profile k; 0: lexical or floored)


def _normalize(v: Sequence[float]) -> tuple[float, ...]:
    n = math.sqrt(sum(x * x for x in v))
    if n == 0:
        raise BuildError("a query vector is all zeros")
    return tuple(x / n for x in v)


def fused_query_vector(vectors: QueryVectors, weights: tuple[float, float]) -> tuple[float, ...] | None:
    """The query's point in the fused space, by the space's one fuse formula (:func:`models.space.fuse`).

    ``weights`` are ``(w_img, w_txt)`` of the index's recorded space, the weights its products
    were fused with; with only one side present, that side (normalized).
    """
    img, txt = vectors.image, vectors.text
    if img is not None and txt is not None:
        if len(img) != len(txt):
            raise BuildError(f"query image vector ({len(img)}-d) and text vector ({len(txt)}-d) "
                             "are not in the same shared space")
        from models.space import fuse

        _normalize(img), _normalize(txt)   # all-zero vectors are a BuildError, as below
        return tuple(float(x) for x in fuse([img], [txt], *weights)[0])
    if img is not None:
        return _normalize(img)
    if txt is not None:
        return _normalize(txt)
    return None


def request_inputs(u: Understanding, vectors: QueryVectors | None) -> set[str]:
    """What a request offers the retrievers, in the names :meth:`Profile.active` takes."""
    inputs = set()
    if u.tokens:
        inputs.add(INPUT_TEXT)
    if vectors is not None:
        if vectors.text is not None:
            inputs.add(INPUT_TEXT_VECTOR)
        if vectors.image is not None:
            inputs.add(INPUT_IMAGE_VECTOR)
        if vectors.image_feature is not None:
            inputs.add(INPUT_IMAGE_FEATURE)
    return inputs


@dataclass(frozen=True)
class BuiltSearch:
    """A search ready to run, as one server-side request and as client-side parts."""

    profile_name: str
    sub_queries: tuple[SubQuery, ...]
    fusion: FusionSpec
    depth: int                          # candidates per retriever before fusion
    offset: int
    size: int
    aggs_json: str                      # canonical JSON of the facet aggregations ('' for none)
    boosts: tuple[Boost, ...]
    understanding: Understanding
    notes: tuple[str, ...] = ()
    image_probe: tuple[str, str, tuple[float, ...]] | None = None   # (retriever, nested field, vector)
    filters: tuple[Query, ...] = ()     # the filter clauses every retriever carries
    floored: bool = False               # a k-NN retriever has a floor (its hits are real matches only)
    real_matches: "BuiltSearch | None" = None  # the search with the no-words floors: counted for the total
    collapse: str | None = None         # near-duplicates share this keyword field: one per page
    collapse_variants: int = 3
    nearest: "BuiltSearch | None" = None   # the same search without floors (profile no_match: nearest)

    # --- shape -------------------------------------------------------------------------
    @property
    def retrievers(self) -> tuple[str, ...]:
        return tuple(s.retriever for s in self.sub_queries)

    @property
    def weights(self) -> tuple[float, ...]:
        return tuple(s.weight for s in self.sub_queries)

    @property
    def is_fused(self) -> bool:
        return len(self.sub_queries) > 1

    @property
    def aggs(self) -> dict[str, Any]:
        return json.loads(self.aggs_json) if self.aggs_json else {}

    @property
    def pipeline(self) -> SearchPipeline | None:
        """The search pipeline the server-side body needs (None for a single retriever)."""
        if not self.is_fused:
            return None
        return search_pipeline(self.profile_name, self.fusion, self.weights, self.retrievers)

    @property
    def server_fits(self) -> bool:
        """False when a hybrid query could not hold this many sub-queries."""
        return len(self.sub_queries) <= Hybrid.MAX_QUERIES

    # --- bodies ------------------------------------------------------------------------
    def _display(self) -> dict[str, Any]:
        extra = [self.collapse] if self.collapse else []
        return {"_source": False, "stored_fields": "_none_", "docvalue_fields": [*DISPLAY_FIELDS, *extra]}

    @property
    def collapse_client_side(self) -> bool:
        """Near-duplicates are folded after fusion: neural-search 2.19 accepts ``collapse`` beside a
        ``hybrid`` query but ignores it (tests/test_floor_live.py), and a client-side fusion has no
        engine to do it."""
        return bool(self.collapse) and self.is_fused

    def body(self) -> dict[str, Any]:
        """The server-side body: a hybrid query (or the lone retriever's query) with page and facets.

        With ``collapse``: the lone retriever's query collapses in the engine (the variants as
        inner hits); a hybrid query returns its whole candidate list, folded after fusion.
        """
        if self.is_fused:
            query = Hybrid(tuple(s.query for s in self.sub_queries), pagination_depth=self.depth).to_dict()
        else:
            query = self.sub_queries[0].query.to_dict()
        body: dict[str, Any] = {"query": query, "from": self.offset, "size": self.size, **self._display()}
        if self.collapse_client_side:
            body["from"], body["size"] = 0, self.depth
        elif self.collapse:
            body["collapse"] = {"field": self.collapse, "inner_hits": {
                "name": VARIANTS, "size": self.collapse_variants + 1, "_source": False,
                "docvalue_fields": [fields.ID]}}
        if self.aggs_json:
            body["aggs"] = self.aggs
        return body

    def params(self) -> dict[str, str]:
        """URL parameters for ``client.search(..., params=...)``."""
        p = self.pipeline
        return {"search_pipeline": p.name} if p is not None else {}

    def sub_query_body(self, i: int, query: Query | None = None) -> dict[str, Any]:
        """One retriever alone, ``depth`` deep, for client-side fusion and explain."""
        q = query if query is not None else self.sub_queries[i].query
        return {"query": q.to_dict(), "from": 0, "size": self.depth, **self._display(),
                "track_total_hits": False}

    def count_body(self) -> dict[str, Any]:
        """How many products any retriever matches, as a search that returns only the exact total:
        with floors, the real matches.  A search rather than ``_count`` so that it can ride in the
        same ``_msearch`` as the search it counts for (one round trip instead of two)."""
        query = Bool(should=tuple(s.query for s in self.sub_queries), minimum_should_match=1).to_dict()
        return {"query": query, "size": 0, "track_total_hits": True}

    def facet_body(self) -> dict[str, Any]:
        """The total and the facets over the union of what the retrievers match (client-side path)."""
        union = Bool(should=tuple(s.query for s in self.sub_queries), minimum_should_match=1)
        body: dict[str, Any] = {"query": union.to_dict(), "size": 0, "track_total_hits": True}
        if self.aggs_json:
            body["aggs"] = self.aggs
        return body

    def best_image_body(self, ids: Sequence[str]) -> dict[str, Any] | None:
        """For these products, their best-matching image (as an inner hit).

        A ``hybrid`` query drops its sub-queries' inner hits (neural-search
        2.19), so after a server-side search the page's best images are asked
        for separately: the image retriever's k-NN, restricted to the page's
        ids (an exact search over a handful of products).
        """
        if self.image_probe is None or not ids:
            return None
        retriever, field_name, vector = self.image_probe
        knn = Knn(field_name, vector, len(ids), filter=Ids(tuple(ids)))
        nested = Nested(fields.IMAGES, knn, score_mode="max",
                        inner_hits=InnerHits(name=retriever, size=1, docvalue_fields=(fields.nested(fields.IMAGE_URL),)))
        return {"query": nested.to_dict(), "size": len(ids), "_source": False, "stored_fields": "_none_",
                "docvalue_fields": [fields.ID]}

    def msearch_body(self, index: str) -> list[dict[str, Any]]:
        """Header/body pairs: every retriever, then the total and facets body."""
        lines: list[dict[str, Any]] = []
        for i in range(len(self.sub_queries)):
            lines += [{"index": index}, self.sub_query_body(i)]
        return lines + [{"index": index}, self.facet_body()]


# the fields a misspelled Latin word is matched fuzzily in: where brands and English titles are
FUZZY_FIELDS = (fields.TITLE, fields.BRAND_TEXT)


def lexical_query(u: Understanding, profile: Profile, name: str | None = None,
                  minimum_should_match: str | None = None) -> Query:
    """The words as typed, or any of the other readings the understanding found.

    Each reading is one should-clause, so a product matches if any reading does, and one that
    matches several (the words *and* their pinyin) scores higher:

    - the words, ``multi_match`` over the profile's fields with its minimum match;
    - pinyin: the other words as above, and every pinyin run as a phrase on the pinyin (or
      initials) field, any of its segmentations (``lian yi qun``); or the other words with the
      indexed Chinese words the runs spell (``boniaosuan`` -> 玻尿酸), matched like typed ones;
    - fuzzy: the other words as above, and each unknown Latin word fuzzily (``fuzziness: AUTO``,
      first letter kept) in titles and brands;
    - the corrected words (``连衣裙`` for ``连衣群``), and each synonym variant.

    ``minimum_should_match`` overrides the profile's (a long query's lower minimum match).
    """
    lex = profile.lexical
    msm = minimum_should_match or lex.minimum_should_match

    def words(tokens) -> MultiMatch:
        return MultiMatch(" ".join(tokens), lex.fields, type=lex.type, minimum_should_match=msm)

    literal = words(u.tokens)
    readings: list[Query] = []
    if u.pinyin:
        covered = {i for r in u.pinyin for i in range(r.start, r.end)}
        rest = [t for i, t in enumerate(u.tokens) if i not in covered]
        runs = []
        for r in u.pinyin:
            field_name = fields.PINYIN_INITIALS if r.kind == INITIALS else fields.PINYIN
            phrases = tuple(MatchPhrase(field_name, p) for p in r.phrases())
            runs.append(phrases[0] if len(phrases) == 1 else Bool(should=phrases, minimum_should_match=1))
        phrases = Bool(must=((words(rest),) if rest else ()) + tuple(runs))
        spelled = (words((*rest, *u.pinyin_words)),) if u.pinyin_words else ()
        readings.append(Bool(should=(phrases, *spelled), minimum_should_match=1, boost=lex.pinyin,
                             name="reading:pinyin"))
    if u.fuzzy_words:
        fuzzy = set(u.fuzzy_words)
        rest = [t for t in u.tokens if t not in fuzzy]
        clauses = tuple(MultiMatch(w, tuple((f, wt) for f, wt in lex.fields if f in FUZZY_FIELDS) or lex.fields,
                                   type="best_fields", fuzziness="AUTO", prefix_length=1)
                        for w in u.fuzzy_words)
        readings.append(Bool(must=((words(rest),) if rest else ()) + clauses, name="reading:fuzzy"))
    if u.corrected_tokens and u.corrected_tokens != u.tokens:
        readings.append(Bool(must=(words(u.corrected_tokens),), name="reading:corrected"))
    for variant in u.synonym_variants:
        readings.append(Bool(must=(words(variant),), name="reading:synonym"))
    if not readings:
        return MultiMatch(literal.query, lex.fields, type=lex.type, minimum_should_match=msm, name=name)
    return Bool(should=(literal, *readings), minimum_should_match=1, name=name)


def _query_vector(entry: RetrieverKind, vectors: QueryVectors, fused: tuple[float, ...] | None
                  ) -> tuple[float, ...] | None:
    return fused if entry.vector == VECTOR_FUSED else getattr(vectors, entry.vector)


def _dense_query(spec: RetrieverSpec, vectors: QueryVectors, fused: tuple[float, ...] | None,
                 profile: Profile, knn_filter: Query | None, floors: str = "normal") -> Query:
    entry = spec.entry
    vector = _query_vector(entry, vectors, fused)
    floor = spec.floor(floors)
    # the no-words floors only count the real matches: among the retriever's k nearest, those
    # above the floor (bounded work at any catalog size); a radial search (every product above
    # the floor) costs in proportion to how many there are, which grows with the catalog
    counting = floors == "no_words" and floor is not None
    radial = None if counting else floor
    if not entry.nested:
        q: Query = Knn(entry.field_path, vector, spec.k, filter=knn_filter, name=spec.kind, min_score=radial)
        return MinScore(q, floor) if counting else q
    # nested image vectors: a product scores as its best image (score_mode max), and the
    # best image itself comes back as an inner hit
    nested_k = max(spec.k, int(math.ceil(spec.k * profile.nested_overfetch)))
    inner = Knn(entry.field_path, vector, nested_k, filter=knn_filter, min_score=radial)
    q = Nested(fields.IMAGES, inner, score_mode="max", name=spec.kind,
               inner_hits=InnerHits(name=spec.kind, size=1, docvalue_fields=(fields.nested(fields.IMAGE_URL),)))
    return MinScore(q, floor) if counting else q


def sub_query_weights(active: Sequence[Any]) -> tuple[float, ...]:
    """Each active retriever's share of the fusion (they sum to 1, as the fusion processor wants)."""
    total = sum(r.weight for r in active)
    return tuple(round(r.weight / total, 6) for r in active)


def active_retriever_sets(profile: Profile) -> list[tuple[Any, ...]]:
    """Every set of retrievers :func:`build_search` can run for ``profile``: per combination of
    request inputs, with and without the retrievers a long query leaves out.  This is what an
    admin step needs to create every search pipeline the profile can ask for."""
    from itertools import combinations

    from .retrievers import INPUTS

    seen: dict[tuple[tuple[str, float], ...], tuple[Any, ...]] = {}
    for n in range(1, len(INPUTS) + 1):
        for inputs in combinations(INPUTS, n):
            for verbose in (False, True):
                active, _ = select_retrievers(profile, set(inputs), verbose)
                if active:
                    seen.setdefault(tuple((r.kind, r.weight) for r in active), active)
    return list(seen.values())


def select_retrievers(profile: Profile, inputs: set[str], verbose: bool) -> tuple[tuple[RetrieverSpec, ...], list[str]]:
    """The retrievers that run for these request inputs, with their weights, and the kinds a long
    query (``verbose``: the profile's ``verbose_query_words`` or more, with a lexical retriever)
    leaves out: there the text k-NN retrievers are weighted by ``verbose_text_weight``, or left
    out when it is 0."""
    active = profile.active(inputs)
    if not verbose or not any(r.entry.lexical for r in active):
        return active, []
    text_only = [r.kind for r in active if r.entry.text_vector_only]
    if text_only and profile.verbose_text_weight > 0:
        return tuple(replace(r, weight=r.weight * profile.verbose_text_weight) if r.entry.text_vector_only
                     else r for r in active), []
    return tuple(r for r in active if not r.entry.text_vector_only), text_only


def profile_pipelines(profile: Profile) -> list[SearchPipeline]:
    """The search pipelines a server-side hybrid search with ``profile`` can name (none for a
    profile that always fuses client-side), each once."""
    if profile.fusion.mode == "client":
        return []
    out: dict[str, SearchPipeline] = {}
    for active in active_retriever_sets(profile):
        if 1 < len(active) <= Hybrid.MAX_QUERIES:
            p = search_pipeline(profile.name, profile.fusion, sub_query_weights(active),
                                tuple(r.kind for r in active))
            out.setdefault(p.name, p)
    return list(out.values())


def build_search(request: SearchRequest, profile: Profile, understanding: Understanding,
                 vectors: QueryVectors | None = None, vocabulary: Vocabulary | None = None,
                 fused_weights: tuple[float, float] = (0.5, 0.5), *, floors: str = "normal") -> BuiltSearch:
    """Build every retriever the request's inputs allow, with filters and boosts inside each.

    ``vectors`` defaults to ``request.vectors``; a retriever whose input is
    missing is left out (a text-only request runs no image->image k-NN).
    ``fused_weights`` (``w_img, w_txt``) come from the index's recorded space (the
    :class:`Searcher` reads them), so a query is fused as its products were.
    ``floors`` picks the k-NN floors: ``normal`` (``min_score``), ``no_words``
    (``no_words_min_score``: the products it matches are the real matches, which the searcher
    counts for the total) or ``none`` (the profile's ``no_match: nearest`` search).
    """
    vectors = (vectors or QueryVectors()).merged(request.vectors)
    inputs = request_inputs(understanding, vectors)
    notes = list(understanding.notes)
    words = len(understanding.tokens)
    verbose = bool(profile.verbose_query_words and words >= profile.verbose_query_words and
                   any(r.entry.lexical for r in profile.active(inputs)))
    active, dropped = select_retrievers(profile, inputs, verbose)
    minimum_should_match = profile.lexical.minimum_should_match
    if verbose:
        minimum_should_match = profile.verbose_minimum_should_match or minimum_should_match
        text_only = [r.kind for r in active if r.entry.text_vector_only]
        if text_only:
            notes.append(f"a {words}-word query: {text_only} weighted x{profile.verbose_text_weight:g}, "
                         f"lexical minimum match {minimum_should_match} (profile verbose_query_words "
                         f"{profile.verbose_query_words})")
        elif dropped:
            notes.append(f"a {words}-word query: {dropped} left out, the words decide "
                         f"(profile verbose_query_words {profile.verbose_query_words})")
    if not active:
        needs = {r.kind: list(r.entry.needs) for r in profile.retrievers}
        have = sorted(inputs) or ["nothing usable"]
        raise BuildError(f"profile {profile.name} has no retriever for this request (it has {have}); "
                         f"its retrievers need: {needs}. Pass encoders or precomputed vectors for dense retrievers.")
    # a retriever that would run had the request's text and photo been encoded: its vectors were
    # not computed
    offered = inputs | {n for n, present in ((INPUT_TEXT_VECTOR, request.has_text),
                                             (INPUT_IMAGE_VECTOR, request.has_image),
                                             (INPUT_IMAGE_FEATURE, request.has_image)) if present}
    missing = [r.kind for r in profile.active(offered) if r not in active and r.kind not in dropped]
    if missing:
        notes.append(f"retrievers {missing} skipped: their query vectors were not computed")

    filters = filter_clauses(request.filters, vocabulary)
    knn_filter = filter_query(filters)
    boosts = plan_boosts(understanding, profile.boosts, request.context_product_ids)
    fused = fused_query_vector(vectors, fused_weights) if any(
        r.entry.vector == VECTOR_FUSED for r in active) else None

    shares = sub_query_weights(active)
    subs: list[SubQuery] = []
    retrieving = BOOST_KINDS if profile.lexical.boosts_retrieve else EXPANSION_KINDS
    lifts = tuple(b for b in boosts if b.kind not in retrieving)
    expansions = tuple(b for b in boosts if b.kind in retrieving)
    for spec in active:
        if spec.entry.lexical:
            mm = lexical_query(understanding, profile, name=spec.kind, minimum_should_match=minimum_should_match)
            # brand and category boosts lift what the words matched (unless the profile's
            # lexical.boosts_retrieve says otherwise); accessories and related products are
            # retrieved too: their titles may never say the words (a phone case for 手机).
            matched = Bool(must=(mm,), should=boost_clauses(lifts, spec.boost_scale or 0.0))
            extra = boost_clauses(expansions, spec.boost_scale or 0.0)
            query: Query = (Bool(should=(matched, *extra), minimum_should_match=1, filter=filters) if extra
                            else matched.with_filter(*filters))
        else:
            dense = _dense_query(spec, vectors, fused, profile, knn_filter, floors)
            clauses = boost_clauses(boosts, spec.boost_scale or 0.0)
            query = Bool(must=(dense,), should=clauses) if clauses else dense
        subs.append(SubQuery(spec.kind, shares[len(subs)], query,
                             0 if spec.entry.lexical or spec.floor(floors) is not None else spec.k))

    depth = max(profile.candidates, request.offset + request.size)
    # the image retriever whose best image a hit shows (the registry's image_priority: a photo
    # match first, else text -> image)
    probe = None
    for spec in sorted((r for r in active if r.entry.nested), key=lambda r: r.entry.image_priority):
        vec = _query_vector(spec.entry, vectors, fused)
        if vec is not None:
            probe = (spec.kind, spec.entry.field_path, vec)
            break
    if len(subs) > Hybrid.MAX_QUERIES:
        notes.append(f"{len(subs)} retrievers exceed the hybrid query's limit of {Hybrid.MAX_QUERIES}; "
                     "fused client-side")
    aggs = facet_aggs(request.facets, profile.facets)
    if floors not in FLOOR_LEVELS:
        raise ValueError(f"floors {floors!r}; allowed: {list(FLOOR_LEVELS)}")
    floored = any(r.floor(floors) is not None for r in active if not r.entry.lexical)
    return BuiltSearch(profile_name=profile.name, sub_queries=tuple(subs), fusion=profile.fusion, depth=depth,
                       offset=request.offset, size=request.size, aggs_json=json.dumps(aggs, ensure_ascii=False) if aggs else "", boosts=boosts,
                       understanding=understanding, notes=tuple(notes), image_probe=probe,
                       filters=filters, floored=floored, collapse=profile.collapse,
                       collapse_variants=profile.collapse_variants)
