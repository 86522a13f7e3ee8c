"""What one search asks of the cluster, in order, written once for the blocking and the asyncio searcher.

:class:`SearcherCore` holds a searcher's settings and its state found once (the fusion
capabilities, the vocabulary and the tokenizer built from it, the search pipelines already
put), and writes the I/O as flows (:mod:`query_builder.calls`): reading the vocabulary, and
reading the space the index records, and running a built search one of three ways:

- *single*: the profile leaves one retriever for this request; a plain search;
- *server*: a ``hybrid`` query fused by a search pipeline (created on first use);
- *client*: when the cluster cannot fuse this way (no neural-search, a technique it lacks,
  weighted RRF, more than five retrievers), one ``msearch`` of the sub-queries, fused in
  Python with the same semantics.

The space an index records (its mapping's ``_meta``) is read once: query vectors of another
space would be compared with the index's as if they meant the same thing, so a different space
is refused (unless ``allow_other_space``, which turns the refusal into a note), and the fused
query vector is weighted as the index's products were.

Routing, fusion, explain and result shaping are plain functions of the responses, so
``Searcher`` and ``AsyncSearcher`` differ only in how they wait for the cluster and where the
encoders run.  The state lock is only ever held for a dictionary look-up or update, never
across a cluster call, so neither threads nor coroutines can deadlock on it.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

from opensearchpy.exceptions import (AuthorizationException, NotFoundError, OpenSearchException, RequestError,
                                     TransportError)

from analysis import AliasTable, Tokenizer, Vocabulary
from analysis.synonyms import SynonymTable
from engine.vocabulary import vocabulary_searches
from mappings import fields

from . import calls
from .bodies import VARIANTS, BuiltSearch, build_search, profile_pipelines
from .calls import Flow
from .dsl import Bool, Exists, Knn, Nested, transform
from .query_vectors import encode
from .regions import Box, RegionSpec, merge_regions, region_requests
from .explain import explain_hits, ranked_lists
from .facets import Facets, parse_facets
from .fusion import fuse
from .fusion_probe import FusionCapabilities
from .profile import Profile, load_profile
from .request import RequestError as BadRequest, SearchRequest   # opensearchpy's RequestError is the engine's
from .results import Hit, SearchResult, hit_from_source, hit_id
from .retrievers import RETRIEVERS
from .suggest import Suggestion, parse_suggestions, suggest_body
from .understand import understand

__all__ = ["SearchError", "SearcherCore", "nested_shortfall", "engine_message"]

class SearchError(RuntimeError):
    """The engine refused or failed the search; the message says what it answered."""


def engine_message(exc: Exception) -> str:
    """What the engine said, with every distinct cause it gave (the root cause often says what to do)."""
    info = getattr(exc, "info", None)
    if isinstance(info, Mapping):
        err = info.get("error")
        if isinstance(err, Mapping):
            return _error_text(err)
        if isinstance(err, str) and err:
            return err
    return str(getattr(exc, "error", "") or exc)


def _error_text(err: Mapping[str, Any]) -> str:
    """``type: reason`` of an engine error, then ``caused by`` each distinct deeper reason.

    A search phase failure says only "The phase has failed" or "all shards failed" at the
    top; the reason that names the problem sits in ``root_cause``, ``failed_shards`` or the
    ``caused_by`` chain.
    """
    parts: list[str] = []
    for e in calls.causes(err):
        text = f"{e.get('type', '')}: {e.get('reason') or ''}".strip(": ")
        if text and text not in parts:
            parts.append(text)
    return "; caused by ".join(parts)


def _no_such_pipeline(exc: Exception) -> bool:
    """The search named a search pipeline the cluster does not have."""
    msg = engine_message(exc)
    return "Pipeline" in msg and "is not defined" in msg


def _past_the_end(exc: Exception) -> bool:
    """The hybrid query refused a ``from`` beyond its last result (neural-search's wording)."""
    return "Reached end of search result" in engine_message(exc)


@dataclass
class _Ran:
    """What running a built search gave: the page's raw hits with their scores, the total, the
    facets, the sub-responses of a client-side fusion, the path it took, and the real-match count
    when one was asked for in the same request (None otherwise)."""

    hits: list[tuple[dict, float]]
    total: int
    facets: Facets
    subs: list[Mapping[str, Any]] | None
    path: str
    real: int | None = None


@dataclass(frozen=True)
class IndexSpace:
    """What a searcher reads once from the index's mapping: the fused weights its products were
    made with, a warning when its space was not checked or differs (and is allowed to), and
    whether it stores raw image features (its vector options)."""

    weights: tuple[float, float]
    warning: str | None = None
    image_features: bool = True


class SearcherCore:
    """Settings, state found once, and the search as flows; see ``Searcher`` for the parameters."""

    def __init__(self, client: Any, profile: Profile | str | Mapping[str, Any] = "hybrid_minmax",
                 space: Any = None, *, index: str = "products", aliases: AliasTable | None = None,
                 vocabulary: Vocabulary | None = None, vocabulary_max_age_s: float = 600.0,
                 capabilities: FusionCapabilities | None = None, ocr: Any = None,
                 allow_other_space: bool = False, synonyms: SynonymTable | None = None) -> None:
        self.client = client
        # "space" floors are the space's: a floor belongs to the vectors (models.floors)
        self.profile = load_profile(profile).with_floors(getattr(space, "floors", None) or {})
        # the request's synonyms, else the profile's file (read once; a bad file is an error now)
        self.synonyms = synonyms if synonyms is not None else \
            SynonymTable.load(self.profile.synonyms) if self.profile.synonyms else None
        self.space = space
        self.ocr = ocr
        self.allow_other_space = allow_other_space
        self._space_state: IndexSpace | None = None
        self.index = index
        self.aliases = aliases
        self.vocabulary_max_age_s = vocabulary_max_age_s
        self._lock = threading.Lock()
        self._caps = capabilities
        self._vocab = vocabulary
        self._vocab_at = time.monotonic() if vocabulary is not None else 0.0
        self._tokenizer: Tokenizer | None = None
        self._pipelines: set[str] = set()
        # a cluster older than 2.18 takes no ``search_pipeline`` inside an msearch body: found out once
        self._pipeline_in_msearch = True

    # --- state found once (look-ups only; the drivers fetch what is missing) --------------
    def _cached_capabilities(self) -> FusionCapabilities | None:
        with self._lock:
            return self._caps

    def _set_capabilities(self, caps: FusionCapabilities) -> FusionCapabilities:
        with self._lock:
            if self._caps is None:
                self._caps = caps
            return self._caps

    def _cached_space(self) -> IndexSpace | None:
        with self._lock:
            return self._space_state

    def _set_space(self, state: IndexSpace) -> IndexSpace:
        with self._lock:
            if self._space_state is None:
                self._space_state = state
            return self._space_state

    def _fresh_vocabulary(self) -> Vocabulary | None:
        """The vocabulary if it is young enough, else None (time to read it again)."""
        with self._lock:
            vocab, at = self._vocab, self._vocab_at
        if vocab is None or time.monotonic() - at > self.vocabulary_max_age_s:
            return None
        return vocab

    def _set_vocabulary(self, vocab: Vocabulary) -> Vocabulary:
        tokenizer = Tokenizer(vocab.words())
        with self._lock:
            self._vocab, self._tokenizer, self._vocab_at = vocab, tokenizer, time.monotonic()
        return vocab

    def _tokenizer_for(self, vocab: Vocabulary) -> Tokenizer:
        with self._lock:
            if self._tokenizer is None:
                self._tokenizer = Tokenizer(vocab.words())
            return self._tokenizer

    def _needs_capabilities(self, built: BuiltSearch) -> bool:
        """Whether routing ``built`` depends on what the cluster can fuse."""
        return built.is_fused and built.fusion.mode != "client" and built.server_fits

    # --- pure steps ------------------------------------------------------------------------
    def _build(self, request: SearchRequest, vocab: Vocabulary,
               space_state: IndexSpace) -> BuiltSearch:
        """Encode (CPU: the caller decides which thread), understand and build."""
        weights, warning = space_state.weights, space_state.warning
        if self.space is not None:
            request = encode(request, self.space, self.ocr)
        on_shared = not space_state.image_features and request.vectors is not None \
            and request.vectors.image is not None
        if on_shared:   # the index stores no raw image features: image -> image compares shared-space vectors
            request = replace(request, vectors=replace(request.vectors, image_feature=request.vectors.image))
        u = understand(request, self.profile, self._tokenizer_for(vocab), vocab, self.synonyms)

        def build(floors: str = "normal") -> BuiltSearch:
            b = build_search(request, self.profile, u, vocabulary=vocab, fused_weights=weights, floors=floors)
            return _image_image_on_shared_space(b) if on_shared else b

        built = build()
        if self.profile.no_match == "nearest" and any(r.floored for r in self.profile.retrievers):
            built = replace(built, nearest=build("none"))
        if any(r.no_words_floor is not None for r in self.profile.retrievers):
            strict = build("no_words")
            if strict.floored:
                built = replace(built, real_matches=strict)
        return replace(built, notes=(warning, *built.notes)) if warning else built

    def _region_builds(self, request: SearchRequest, spec: RegionSpec, vocab: Vocabulary,
                       space_state: IndexSpace,
                       regions: Sequence[tuple[Box, SearchRequest]] | None = None
                       ) -> list[tuple[Box, SearchRequest, BuiltSearch]]:
        """Cut, embed (CPU) and build one photo search per region (``regions``: already embedded
        ones); facets are asked of the first region only, since a product's facets do not depend
        on the region."""
        if regions is None:
            if self.space is None:
                raise BadRequest("a region search needs a searcher with a space (the models) to embed its "
                                   "regions")
            regions = region_requests(request, self.space, spec)
        if not regions:
            raise BadRequest("a region search needs at least one region")
        out = []
        for i, (box, req) in enumerate(regions):
            req = req if i == 0 else replace(req, facets=())
            out.append((box, req, self._build(req, vocab, space_state)))
        return out

    def _space_state_of(self, mapping: Mapping[str, Any]) -> IndexSpace:
        """What the index's mapping says of its vectors; a different space raises."""
        from mappings import MappingError, VectorOptions
        from models.identity import SpaceIdentity, mismatch_message

        try:
            image_features = VectorOptions.from_mapping(mapping).image_feature
        except MappingError:
            image_features = True

        try:
            recorded = SpaceIdentity.from_mapping(mapping)
        except ValueError:   # unreadable: treated as recording none
            recorded = None
        mine = getattr(self.space, "identity", None)
        warning = None
        if mine is not None:
            why = mismatch_message(self.index, recorded, mine,
                                   "re-ingest it with --recreate, or load the space that made it" if recorded
                                   is None else "search with the heads and models that made it, or re-ingest "
                                   "with --recreate")
            if why and not self.allow_other_space:
                raise SearchError(why)
            warning = f"searching anyway: {why}" if why else None
        weights = recorded.weights if recorded is not None else (mine.weights if mine is not None else (0.5, 0.5))
        return IndexSpace(weights, warning, image_features)

    def _route(self, built: BuiltSearch, caps: FusionCapabilities | None) -> tuple[str, str | None]:
        if not built.is_fused:
            return "single", None
        if built.fusion.mode == "client":
            return "client", None
        if not built.server_fits:
            why = "more retrievers than a hybrid query holds"
        else:
            assert caps is not None, "routing a fused search needs the cluster's capabilities"
            ok, why = caps.supports(built.fusion, built.weights, built.retrievers)
            if ok:
                return "server", None
        if built.fusion.mode == "server":
            raise SearchError(f"profile {self.profile.name} asks for server-side fusion, but {why}")
        return "client", f"fused client-side: {why}"

    # --- flows -----------------------------------------------------------------------------
    def _vocabulary_flow(self) -> Flow[Vocabulary]:
        """Every brand and category path of the index, by paged composite aggregations (no
        ``terms`` size limit cuts a term off); an empty index gives an empty vocabulary."""
        searches = vocabulary_searches(self.aliases)
        try:
            body = next(searches)
            while True:
                body = searches.send((yield from calls.read(calls.search(self.index, body))))
        except StopIteration as done:
            return done.value
        except NotFoundError:
            raise SearchError(f"index {self.index!r} does not exist") from None
        except (OpenSearchException, TransportError) as exc:
            raise SearchError(f"reading the vocabulary of {self.index!r} failed: {engine_message(exc)}") from None

    def _space_flow(self) -> Flow[IndexSpace]:
        try:
            resp = yield calls.perform("GET", f"/{self.index}/_mapping")
        except NotFoundError:
            raise SearchError(f"index {self.index!r} does not exist") from None
        except AuthorizationException:   # a role that may search but not read the mapping
            mine = getattr(self.space, "identity", None)
            return IndexSpace(mine.weights if mine is not None else (0.5, 0.5),
                              f"the vector space {self.index!r} records was not checked: this user may not read "
                              "its mapping (grant indices:admin/mappings/get on the index)")
        except (OpenSearchException, TransportError) as exc:
            raise SearchError(f"reading the mapping of {self.index!r} failed: {engine_message(exc)}") from None
        mapping = (resp.get(self.index) or next(iter(resp.values()), {})).get("mappings", {})
        return self._space_state_of(mapping)

    def _capabilities_flow(self) -> Flow[FusionCapabilities]:
        from .fusion_probe import probe_fusion

        try:
            return (yield from probe_fusion(self.index, self.profile.fusion, profile_pipelines(self.profile)))
        except NotFoundError:
            raise SearchError(f"index {self.index!r} does not exist") from None

    def _search_flow(self, request: SearchRequest, built: BuiltSearch, caps: FusionCapabilities | None,
                     t0: float) -> Flow[SearchResult]:
        path, why = self._route(built, caps)
        notes = list(built.notes) + ([why] if why else [])
        low_confidence = False
        try:
            # real matches: products that match the words, or k-NN neighbours above the
            # no-words floors, counted in the same request as the search; ranking uses the
            # normal search, the total is theirs
            count = built.real_matches.count_body() if built.real_matches is not None else None
            ran = yield from self._run(built, path, caps, notes, count)
            raw_hits, total, facets, sub_responses, path, real = \
                ran.hits, ran.total, ran.facets, ran.subs, ran.path, ran.real
            if real == 0:
                raw_hits, total, facets, sub_responses = [], 0, Facets(), None
            elif real is not None:
                total = real
            if not raw_hits and not total and built.nearest is not None:
                # nothing is a real match: the nearest products, said to be no more than that
                built = built.nearest
                path, why = self._route(built, caps)
                ran = yield from self._run(built, path, caps, notes)
                raw_hits, facets, sub_responses, path = ran.hits, ran.facets, ran.subs, ran.path
                low_confidence = bool(raw_hits)
                notes.append("no product really matches (no words matched, nothing above the k-NN floors); "
                             "the nearest products are shown, flagged low confidence")
            elif real == 0:
                notes.append("no product really matches: no word matched and no product is close enough "
                             "(the no-words k-NN floors)")
            hits = [hit_from_source(h, score) for h, score in raw_hits]
            if built.collapse:
                hits = fold_variants(hits, raw_hits, built)
            if request.explain and hits:
                if sub_responses is None:
                    sub_responses = yield from self._msearch(built, with_facets=False)
                expl = explain_hits(built, sub_responses, {h.id: h.score for h in hits}, path)
                hits = [replace(h, explain=expl.get(h.id)) for h in hits]
        except NotFoundError:
            raise SearchError(f"index {self.index!r} does not exist") from None
        except (OpenSearchException, TransportError) as exc:
            raise SearchError(f"search on {self.index!r} failed: {engine_message(exc)}") from None
        return SearchResult(hits=tuple(hits), total=total, facets=facets, notes=tuple(notes), fusion_path=path,
                            profile=self.profile.name, retrievers=built.retrievers, understanding=built.understanding,
                            took_ms=(time.perf_counter() - t0) * 1000, low_confidence=low_confidence)

    def _run(self, built: BuiltSearch, path: str, caps: FusionCapabilities | None, notes: list[str],
             count: Mapping[str, Any] | None = None) -> Flow[_Ran]:
        """Run ``built`` the way ``path`` says; ``count``: a search body whose exact total is wanted
        too (the real matches), sent in the same request."""
        if path != "client":
            try:
                return (yield from self._run_server(built, path, caps, count))
            except RequestError as exc:
                if path != "server" or not _no_such_pipeline(exc):
                    raise
                path = "client"   # e.g. a premade pipeline an admin has not created (yet)
                notes.append(f"fused client-side: {engine_message(exc)}, and this searcher does not create "
                             "it: an admin creates the profile's pipelines with `cmsearch pipelines put`")
        return (yield from self._run_client(built, notes, count))

    def _suggest_flow(self, prefix: str, size: int, kinds: Sequence[str]) -> Flow[list[Suggestion]]:
        try:
            body = suggest_body(prefix, size, kinds)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        if body is None:   # no letters or digits: nothing to complete
            return []
        try:
            resp = yield from calls.read(calls.search(self.index, body))
        except NotFoundError:
            raise SearchError(f"index {self.index!r} does not exist") from None
        except (OpenSearchException, TransportError) as exc:
            raise SearchError(f"suggestions on {self.index!r} failed: {engine_message(exc)} (an index made "
                              "before suggestions has no suggest field: re-ingest it with --recreate)") from None
        return parse_suggestions(resp, size)

    def _regions_flow(self, request: SearchRequest, spec: RegionSpec,
                      prepared: Sequence[tuple[Box, SearchRequest, BuiltSearch]], caps: FusionCapabilities | None,
                      t0: float) -> Flow[SearchResult]:
        """Each region's search as the ordinary flow, then one list merged per product."""
        results = []
        for _, req, built in prepared:
            results.append((yield from self._search_flow(req, built, caps, t0)))
        merged = merge_regions([[(h.id, h.score) for h in r.hits] for r in results], spec.merge, spec.rrf_k)
        page = merged[request.offset: request.offset + request.size]
        hit_in = [{h.id: h for h in r.hits} for r in results]
        hits = tuple(replace(hit_in[r][doc], score=score, region=prepared[r][0].as_tuple()) for doc, score, r in page)
        first = results[0]
        grids = "+".join(f"{n}x{n}" for n in spec.grids)
        notes = [f"regions: {len(prepared)} boxes ({grids}, overlap {spec.overlap:g}), merged by {spec.merge}",
                 *dict.fromkeys(n for r in results for n in r.notes)]
        return SearchResult(hits=hits, total=len(merged), facets=first.facets, notes=tuple(notes),
                            fusion_path=first.fusion_path, profile=self.profile.name, retrievers=first.retrievers,
                            understanding=first.understanding, took_ms=(time.perf_counter() - t0) * 1000)

    def _ensure_pipeline(self, built: BuiltSearch, caps: FusionCapabilities | None) -> Flow[None]:
        p = built.pipeline
        if caps is not None and caps.premade:   # this user may not create pipelines: an admin made them
            return
        with self._lock:
            if p is None or p.name in self._pipelines:
                return
        # PUT is idempotent: two threads racing here both write the same body
        yield calls.perform("PUT", f"/_search/pipeline/{p.name}", p.body)
        with self._lock:
            self._pipelines.add(p.name)

    def _run_server(self, built: BuiltSearch, path: str, caps: FusionCapabilities | None,
                    count: Mapping[str, Any] | None = None) -> Flow[_Ran]:
        body = built.body()
        if path == "server":
            yield from self._ensure_pipeline(built, caps)
            if caps is None or not caps.pagination_depth:
                body["query"]["hybrid"].pop("pagination_depth", None)
        resp, real = None, None
        if count is not None:
            real, resp = yield from self._counted_search(body, built.params(), count)
        if resp is None:
            try:
                resp = yield from calls.read(calls.search(self.index, body, built.params()))
            except RequestError as exc:
                if path != "server" or not built.offset or not _past_the_end(exc):
                    raise
                # the page starts after the last result: an empty page, with the total and facets
                # of the whole result set from the same query's first hit (a hybrid query asked for
                # size 0 can fail in the normalization processor: fetch phase 0 docs vs query phase n)
                resp = yield from calls.read(calls.search(self.index, {**body, "from": 0, "size": 1}, built.params()))
                return _Ran([], _total(resp), parse_facets(resp.get("aggregations")), None, path, real)
        raw = [dict(h) for h in resp["hits"]["hits"]]
        if path == "server":
            yield from self._attach_best_images(built, raw)
        return _Ran([(h, h.get("_score") or 0.0) for h in raw], _total(resp),
                    parse_facets(resp.get("aggregations")), None, path, real)

    def _counted_search(self, body: Mapping[str, Any], params: Mapping[str, str], count: Mapping[str, Any]
                        ) -> Flow[tuple[int, Mapping[str, Any] | None]]:
        """The real-match count and the search in one ``_msearch`` (the engine runs the two side by
        side): a second round trip per text query was what the count cost.  The search's response
        is None when it failed there; the caller then sends it alone, whose errors it knows how to
        read (a page past the end, a missing premade pipeline)."""
        pipeline = params.get("search_pipeline")
        if pipeline is not None and not self._pipeline_in_msearch:
            resp = yield from calls.read(calls.search(self.index, count))
            return _total(resp), None
        searched = {**body, "search_pipeline": pipeline} if pipeline is not None else body
        lines = [{"index": self.index}, count, {"index": self.index}, searched]
        counted, resp = (yield from calls.read(calls.msearch(lines)))["responses"]
        _raise_for(counted, "the real-match count", self.index)
        if "error" in resp:
            err = resp["error"]
            if pipeline is not None and isinstance(err, Mapping) and "search_pipeline" in _error_text(err):
                self._pipeline_in_msearch = False
            return _total(counted), None
        return _total(counted), resp

    def _attach_best_images(self, built: BuiltSearch, raw: list[dict]) -> Flow[None]:
        """Hybrid results carry no inner hits; fetch the page's best images in one more request.

        Only products with a choice of images are asked about: a product's one image is its best,
        and the hit already carries it (``image_urls`` doc values), so a page of single-image
        products costs no second round trip, which on a busy node is where a query's tail grew."""
        body = built.best_image_body([hit_id(h) for h in raw if _several_images(h)])
        if body is None:
            return
        resp = yield from calls.read(calls.search(self.index, body))
        inner = {hit_id(h): h.get("inner_hits") or {} for h in resp["hits"]["hits"]}
        for h in raw:
            h["inner_hits"] = {**(h.get("inner_hits") or {}), **inner.get(hit_id(h), {})}

    def _msearch(self, built: BuiltSearch, *, with_facets: bool, count: Mapping[str, Any] | None = None
                 ) -> Flow[list[Mapping[str, Any]]]:
        """Every retriever's response, then the facets' (``with_facets``), then ``count``'s."""
        lines = built.msearch_body(self.index)
        if not with_facets:
            lines = lines[:-2]
        if count is not None:
            lines += [{"index": self.index}, count]
        responses = (yield from calls.read(calls.msearch(lines)))["responses"]
        names = [*built.retrievers, *(["facets"] if with_facets else []), "the real-match count"]
        for sub, resp in zip(names, responses):
            _raise_for(resp, sub, self.index)
        return responses

    def _run_client(self, built: BuiltSearch, notes: list[str], count: Mapping[str, Any] | None = None
                    ) -> Flow[_Ran]:
        responses = yield from self._msearch(built, with_facets=True, count=count)
        real = None
        if count is not None:
            real = _total(responses[-1])
            responses = responses[:-1]
        n = len(built.sub_queries)
        subs, facet_resp = list(responses[:n]), (responses[n] if len(responses) > n else None)
        yield from self._compensate_nested_shortfall(built, subs, notes)
        by_id = _merge_hits(subs)
        if built.is_fused:
            order = [(d.id, d.score) for d in fuse(ranked_lists(built, subs), built.weights, built.fusion)]
        else:
            order = [(hit_id(h), float(h["_score"] or 0.0)) for h in subs[0]["hits"]["hits"]]
        # folding near-duplicates needs the whole fused list; the page is cut after it
        page = order if built.collapse_client_side else order[built.offset: built.offset + built.size]
        total = _total(facet_resp) if facet_resp is not None else len(order)
        facets = parse_facets(facet_resp.get("aggregations")) if facet_resp is not None else Facets()
        return _Ran([(by_id[doc], score) for doc, score in page], total, facets, subs, "client", real)

    def _compensate_nested_shortfall(self, built: BuiltSearch, subs: list[Mapping[str, Any]],
                                     notes: list[str]) -> Flow[None]:
        """Re-run a filtered nested-image k-NN that came back short, with a larger k.

        Efficient filtering over nested vectors has returned fewer than k
        products in k-NN 2.x (k-NN issue 2347).  When a nested retriever lists
        fewer products than it should and more products match the filters, its
        k is raised (x4, at most 10000) and it runs once more.
        """
        if not built.filters:
            return
        for i, sub in enumerate(built.sub_queries):
            entry = RETRIEVERS.get(sub.retriever)
            if entry is None or not entry.nested:
                continue
            got = len(((subs[i].get("hits") or {}).get("hits")) or [])
            want = min(sub.k, built.depth)
            if got >= want:
                continue
            matching = (yield calls.count(self.index, {"query": Bool(
                filter=(*built.filters, Nested(fields.IMAGES, Exists(entry.field_path)))
            ).to_dict()}))["count"]
            if not nested_shortfall(got, want, matching):
                continue
            bigger = transform(sub.query, lambda q: replace(q, k=min(q.k * 4, 10_000)) if isinstance(q, Knn) else q)
            resp = yield from calls.read(calls.search(self.index, built.sub_query_body(i, bigger)))
            _raise_for(resp, sub.retriever, self.index)
            notes.append(f"{sub.retriever}: filtered nested k-NN returned {got} of {want} products "
                         f"({matching} match the filters); re-ran with a larger k and got "
                         f"{len(resp['hits']['hits'])}")
            subs[i] = resp


def fold_variants(hits: Sequence[Hit], raw_hits: Sequence[tuple[Mapping[str, Any], float]],
                  built: BuiltSearch) -> list[Hit]:
    """The page with one product per ``collapse`` group, the group's others as its variants.

    Collapsed by the engine (one retriever): the variants are its inner hits.  Fused: the whole
    fused list is folded here, best first, and the page cut from what is left.
    """
    limit = built.collapse_variants
    if not built.collapse_client_side:
        out = []
        for hit, (raw, _) in zip(hits, raw_hits):
            inner = ((((raw.get("inner_hits") or {}).get(VARIANTS) or {}).get("hits") or {}).get("hits")) or []
            ids = [i for i in (hit_id(h) for h in inner) if i != hit.id][:limit]
            out.append(replace(hit, variants=tuple(ids)))
        return out
    first: dict[str, int] = {}
    kept: list[tuple[Hit, list[str]]] = []
    for hit, (raw, _) in zip(hits, raw_hits):
        values = (raw.get("fields") or {}).get(built.collapse) or []
        key = str(values[0]) if values else None
        if key is not None and key in first:
            variants = kept[first[key]][1]
            if len(variants) < limit:
                variants.append(hit.id)
            continue
        if key is not None:
            first[key] = len(kept)
        kept.append((hit, []))
    page = kept[built.offset: built.offset + built.size]
    return [replace(hit, variants=tuple(v)) for hit, v in page]


def _several_images(hit: Mapping[str, Any]) -> bool:
    """Whether a raw hit's product has more than one distinct image (unknown counts as yes)."""
    doc_values = hit.get("fields")
    if not isinstance(doc_values, Mapping):
        return True
    urls = doc_values.get(fields.IMAGE_URLS)
    return isinstance(urls, list) and len(urls) > 1


def _image_image_on_shared_space(built: BuiltSearch) -> BuiltSearch:
    """``built`` with the image -> image retriever on the images' shared-space vectors, for an index
    created without raw image features (``mappings.VectorOptions``)."""
    feature, shared = fields.nested(fields.IMAGE_FEATURE), fields.nested(fields.IMAGE_VECTOR)

    def on_shared(q):
        return replace(q, field=shared) if isinstance(q, Knn) and q.field == feature else q

    subs = tuple(replace(s, query=transform(s.query, on_shared)) for s in built.sub_queries)
    probe = built.image_probe
    if probe is not None and probe[1] == feature:
        probe = (probe[0], shared, probe[2])
    if subs == built.sub_queries:
        return built
    return replace(built, sub_queries=subs, image_probe=probe,
                   notes=(*built.notes, "image -> image on the shared-space image vectors: the index stores "
                                        "no raw image features"))


def nested_shortfall(got: int, want: int, matching: int) -> bool:
    """True when a nested k-NN returned fewer products than it could have."""
    return got < want and got < matching


def _raise_for(resp: Mapping[str, Any], what: str, index: str) -> None:
    if "error" not in resp:
        return
    err = resp["error"]
    if isinstance(err, Mapping) and err.get("type") == "index_not_found_exception":
        raise SearchError(f"index {index!r} does not exist")
    reason = _error_text(err) if isinstance(err, Mapping) else err
    raise SearchError(f"retriever {what} failed on {index!r}: {reason or err}")


def _total(resp: Mapping[str, Any]) -> int:
    t = (resp.get("hits") or {}).get("total")
    if isinstance(t, Mapping):
        return int(t.get("value", 0))
    return int(t or 0)


def _merge_hits(responses: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """One raw hit per doc id, with the inner hits (best images) of every retriever merged in."""
    out: dict[str, dict[str, Any]] = {}
    for resp in responses:
        for h in ((resp.get("hits") or {}).get("hits")) or []:
            cur = out.setdefault(hit_id(h), {**h, "inner_hits": dict(h.get("inner_hits") or {})})
            if cur is not h:
                cur["inner_hits"].update(h.get("inner_hits") or {})
    return out
