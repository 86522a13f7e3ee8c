"""Running a search: the thin layer between the pure builder and an OpenSearch client.

``Searcher(client, profile).search(request)`` encodes (if encoders are given),
understands, builds, then runs the search one of three ways:

- *single*: the profile leaves one retriever for this request; a plain search;
- *server*: a ``hybrid`` query fused by a search pipeline (created on first use);
- *client*: when the cluster cannot fuse this way (no neural-search, a
  technique it lacks, weighted RRF, more than five retrievers), one ``msearch``
  of the sub-queries, fused in Python with the same semantics.

Whether the server can fuse is found out once per searcher, by trying.
"""
from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Any, Mapping, Sequence

from opensearchpy.exceptions import NotFoundError, OpenSearchException, RequestError, TransportError

from analysis import AliasTable, Tokenizer, Vocabulary
from engine.vocabulary import read_vocabulary
from mappings import fields

from .build import BuiltSearch, build_search
from .capabilities import FusionCapabilities, detect_fusion
from .dsl import Bool, Exists, Knn, Nested, transform
from .encode import Encoders, encode
from .explain import explain_hits, ranked_lists
from .facets import Facets, parse_facets
from .fusion import fuse
from .profile import Profile, Retriever, load_profile
from .request import SearchRequest
from .results import SearchResult, hit_from_source, hit_id
from .understand import understand

__all__ = ["SearchError", "Searcher", "nested_shortfall"]

NESTED_RETRIEVERS = (Retriever.TEXT_IMAGE_KNN, Retriever.IMAGE_IMAGE_KNN)


class SearchError(RuntimeError):
    """The engine refused or failed the search; the message says what it answered."""


def _engine_message(exc: Exception) -> str:
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

    def add(e: Any) -> None:
        if not isinstance(e, Mapping):
            return
        text = f"{e.get('type', '')}: {e.get('reason') or ''}".strip(": ")
        if text and text not in parts:
            parts.append(text)

    def walk(e: Any) -> None:
        if not isinstance(e, Mapping):
            return
        add(e)
        for root in e.get("root_cause") or ():
            walk(root)
        for shard in e.get("failed_shards") or ():
            if isinstance(shard, Mapping):
                walk(shard.get("reason"))
        walk(e.get("caused_by"))

    walk(err)
    return "; caused by ".join(parts)


def _past_the_end(exc: Exception) -> bool:
    """The hybrid query refused a ``from`` beyond its last result (neural-search's wording)."""
    return "Reached end of search result" in _engine_message(exc)


class Searcher:
    """Searches one product index with one profile.

    - ``encoders``: compute query vectors from text and photos; without them a
      request must carry precomputed vectors for the dense retrievers (the
      lexical retriever needs none).
    - ``aliases``: brand/category alias table for recognition (see
      :mod:`analysis.vocabulary`).  The vocabulary itself is read from the
      index's facets on first use and re-read after ``vocabulary_max_age_s``
      or on :meth:`refresh_vocabulary`.
    - ``capabilities``: skip probing (e.g. share one probe between searchers).
    """

    def __init__(self, client: Any, profile: Profile | str | Mapping[str, Any] = "hybrid_minmax",
                 encoders: Encoders | None = None, *, index: str = "products", aliases: AliasTable | None = None,
                 vocabulary: Vocabulary | None = None, vocabulary_max_age_s: float = 600.0,
                 capabilities: FusionCapabilities | None = None) -> None:
        self.client = client
        self.profile = load_profile(profile)
        self.encoders = encoders
        self.index = index
        self.aliases = aliases
        self.vocabulary_max_age_s = vocabulary_max_age_s
        self._lock = threading.Lock()
        self._caps = capabilities
        self._vocab = vocabulary
        self._vocab_at = time.monotonic() if vocabulary is not None else 0.0
        self._tokenizer: Tokenizer | None = None
        self._pipelines: set[str] = set()

    # --- state found once ---------------------------------------------------------------
    def capabilities(self) -> FusionCapabilities:
        """Server-side fusion this cluster supports (probed on first call, then cached)."""
        with self._lock:
            if self._caps is None:
                try:
                    self._caps = detect_fusion(self.client, self.index)
                except NotFoundError:
                    raise SearchError(f"index {self.index!r} does not exist") from None
            return self._caps

    def refresh_vocabulary(self) -> Vocabulary:
        """Re-read brands and categories from the index (e.g. after an ingest)."""
        try:
            vocab = read_vocabulary(self.client, self.index, self.aliases)
        except NotFoundError:
            raise SearchError(f"index {self.index!r} does not exist") from None
        except (OpenSearchException, TransportError) as exc:
            raise SearchError(f"reading the vocabulary of {self.index!r} failed: {_engine_message(exc)}") from None
        tokenizer = Tokenizer(vocab.words())
        with self._lock:
            self._vocab, self._tokenizer, self._vocab_at = vocab, tokenizer, time.monotonic()
        return vocab

    def vocabulary(self) -> Vocabulary:
        with self._lock:
            vocab, at = self._vocab, self._vocab_at
        if vocab is None or time.monotonic() - at > self.vocabulary_max_age_s:
            return self.refresh_vocabulary()
        return vocab

    def _tokenizer_for(self, vocab: Vocabulary) -> Tokenizer:
        with self._lock:
            if self._tokenizer is None:
                self._tokenizer = Tokenizer(vocab.words())
            return self._tokenizer

    # --- building ---------------------------------------------------------------------
    def prepare(self, request: SearchRequest) -> BuiltSearch:
        """Encode, understand and build, without running anything on the cluster."""
        vocab = self.vocabulary()
        if self.encoders is not None:
            request = encode(request, self.encoders)
        u = understand(request, self.profile, self._tokenizer_for(vocab), vocab)
        return build_search(request, self.profile, u, vocabulary=vocab)

    def _route(self, built: BuiltSearch) -> tuple[str, str | None]:
        if not built.is_fused:
            return "single", None
        if built.fusion.mode == "client":
            return "client", None
        if not built.server_fits:
            why = "more retrievers than a hybrid query holds"
        else:
            ok, why = self.capabilities().supports(built.fusion, built.weights)
            if ok:
                return "server", None
        if built.fusion.mode == "server":
            raise SearchError(f"profile {self.profile.name} asks for server-side fusion, but {why}")
        return "client", f"fused client-side: {why}"

    # --- running ----------------------------------------------------------------------
    def search(self, request: SearchRequest) -> SearchResult:
        """Run ``request``; bad input raises :class:`RequestError`, engine failures :class:`SearchError`."""
        t0 = time.perf_counter()
        built = self.prepare(request)
        path, why = self._route(built)
        notes = list(built.notes) + ([why] if why else [])
        try:
            if path == "client":
                raw_hits, total, facets, sub_responses = self._run_client(built, notes)
            else:
                raw_hits, total, facets = self._run_server(built, path)
                sub_responses = None
            hits = [hit_from_source(h, score) for h, score in raw_hits]
            if request.explain:
                if sub_responses is None:
                    sub_responses = self._msearch(built, with_facets=False)
                expl = explain_hits(built, sub_responses, {h.id: h.score for h in hits}, path)
                hits = [replace(h, explain=expl.get(h.id)) for h in hits]
        except NotFoundError:
            raise SearchError(f"index {self.index!r} does not exist") from None
        except (OpenSearchException, TransportError) as exc:
            raise SearchError(f"search on {self.index!r} failed: {_engine_message(exc)}") from None
        return SearchResult(hits=tuple(hits), total=total, facets=facets, notes=tuple(notes), fusion_path=path,
                            profile=self.profile.name, retrievers=built.retrievers, understanding=built.understanding,
                            took_ms=(time.perf_counter() - t0) * 1000)

    def _ensure_pipeline(self, built: BuiltSearch) -> None:
        p = built.pipeline
        with self._lock:
            if p is None or p.name in self._pipelines:
                return
        # PUT is idempotent: two threads racing here both write the same body
        self.client.transport.perform_request("PUT", f"/_search/pipeline/{p.name}", body=p.body)
        with self._lock:
            self._pipelines.add(p.name)

    def _run_server(self, built: BuiltSearch, path: str) -> tuple[list[tuple[dict, float]], int, Facets]:
        body = built.body()
        if path == "server":
            self._ensure_pipeline(built)
            if not self.capabilities().pagination_depth:
                body["query"]["hybrid"].pop("pagination_depth", None)
        try:
            resp = self.client.search(index=self.index, body=body, params=built.params())
        except RequestError as exc:
            if path != "server" or not built.offset or not _past_the_end(exc):
                raise
            # the page starts after the last result: an empty page, with the total and facets
            # of the whole result set from the same query asked for no hits
            resp = self.client.search(index=self.index, body={**body, "from": 0, "size": 0}, params=built.params())
            return [], _total(resp), parse_facets(resp.get("aggregations"))
        raw = [dict(h) for h in resp["hits"]["hits"]]
        if path == "server":
            self._attach_best_images(built, raw)
        return [(h, h.get("_score") or 0.0) for h in raw], _total(resp), parse_facets(resp.get("aggregations"))

    def _attach_best_images(self, built: BuiltSearch, raw: list[dict]) -> None:
        """Hybrid results carry no inner hits; fetch the page's best images in one more request."""
        body = built.best_image_body([hit_id(h) for h in raw])
        if body is None:
            return
        inner = {hit_id(h): h.get("inner_hits") or {} for h in self.client.search(index=self.index, body=body)
                 ["hits"]["hits"]}
        for h in raw:
            h["inner_hits"] = {**(h.get("inner_hits") or {}), **inner.get(hit_id(h), {})}

    def _msearch(self, built: BuiltSearch, *, with_facets: bool) -> list[Mapping[str, Any]]:
        lines = built.msearch_body(self.index)
        if not with_facets and built.facet_body() is not None:
            lines = lines[:-2]
        responses = self.client.msearch(body=lines)["responses"]
        for sub, resp in zip([*built.retrievers, "facets"], responses):
            _raise_for(resp, sub, self.index)
        return responses

    def _run_client(self, built: BuiltSearch, notes: list[str]
                    ) -> tuple[list[tuple[dict, float]], int, Facets, list[Mapping[str, Any]]]:
        responses = self._msearch(built, with_facets=True)
        n = len(built.sub_queries)
        subs, facet_resp = list(responses[:n]), (responses[n] if len(responses) > n else None)
        self._compensate_nested_shortfall(built, subs, notes)
        by_id = _merge_hits(subs)
        if built.is_fused:
            order = [(d.id, d.score) for d in fuse(ranked_lists(built, subs), built.weights, built.fusion)]
        else:
            order = [(hit_id(h), float(h["_score"] or 0.0)) for h in subs[0]["hits"]["hits"]]
        page = order[built.offset: built.offset + built.size]
        total = _total(facet_resp) if facet_resp is not None else len(order)
        facets = parse_facets(facet_resp.get("aggregations")) if facet_resp is not None else Facets()
        return [(by_id[doc], score) for doc, score in page], total, facets, subs

    def _compensate_nested_shortfall(self, built: BuiltSearch, subs: list[Mapping[str, Any]],
                                     notes: list[str]) -> None:
        """Re-run a filtered nested-image k-NN that came back short, with a larger k.

        Efficient filtering over nested vectors has returned fewer than k
        products in k-NN 2.x (k-NN issue 2347).  When a nested retriever lists
        fewer products than it should and more products match the filters, its
        k is raised (x4, at most 10000) and it runs once more.
        """
        if not built.filters:
            return
        for i, sub in enumerate(built.sub_queries):
            if sub.retriever not in NESTED_RETRIEVERS:
                continue
            got = len(((subs[i].get("hits") or {}).get("hits")) or [])
            want = min(sub.k, built.depth)
            if got >= want:
                continue
            matching = self.client.count(index=self.index, body={"query": Bool(
                filter=(*built.filters, Nested(fields.IMAGES, Exists(fields.nested(fields.IMAGE_VECTOR))))
            ).to_dict()})["count"]
            if not nested_shortfall(got, want, matching):
                continue
            bigger = transform(sub.query, lambda q: replace(q, k=min(q.k * 4, 10_000)) if isinstance(q, Knn) else q)
            resp = self.client.search(index=self.index, body=built.sub_query_body(i, bigger))
            _raise_for(resp, sub.retriever, self.index)
            notes.append(f"{sub.retriever}: filtered nested k-NN returned {got} of {want} products "
                         f"({matching} match the filters); re-ran with a larger k and got "
                         f"{len(resp['hits']['hits'])}")
            subs[i] = resp


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
