"""The bridge from judged queries to ``query_builder.Searcher``: search callables for the runner.

Two things make evaluation and tuning affordable on a small machine, and both live here:

- every query is **encoded once** (text vector, photo feature and projection, photo categories,
  OCR) and the encoded request is reused by every profile and every tuning trial; the searchers
  themselves run without a space (the space is checked once against the index's recorded one);
- the cluster's **fusion capabilities** and the index's **vocabulary** are read once and shared
  by all searchers instead of being probed per profile.

A profile none of whose retrievers can use a query's inputs (the ``bm25`` profile asked a photo
with no readable text) raises :class:`~evaluation.runner.NotApplicable`, which the runner counts
instead of scoring zero.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from query_builder import (BuildError, Profile, QueryImage, SearchRequest, Searcher, detect_fusion, encode,
                           load_profile)
from query_builder.bodies import request_inputs as build_inputs
from query_builder.request import MAX_PAGE_SIZE
from query_builder.understand import Understanding

from .judgments import JudgedQuery
from .runner import NotApplicable, SearchFn

__all__ = ["SearchFactory", "request_for", "request_inputs"]


def request_for(q: JudgedQuery, size: int) -> SearchRequest:
    """The search request a judged query stands for: its text and/or its photo, ``size`` results."""
    images = (QueryImage.from_path(q.image),) if q.image is not None else ()
    return SearchRequest(text=q.text, images=images, size=min(size, MAX_PAGE_SIZE))


def request_inputs(req: SearchRequest) -> set[str]:
    """Inputs an encoded request offers, as the query builder names them for ``Profile.active``.

    Text counts when the request has query text or text read off its photo (OCR), the same
    sources the understanding step tokenizes.
    """
    has_text = bool((req.text and req.text.strip()) or (req.image_text and req.image_text.strip()))
    return build_inputs(Understanding(text="", tokens=("_",) if has_text else ()), req.vectors)


class SearchFactory:
    """``factory(profile) -> SearchFn`` over one product index, sharing encodings, vocabulary and capabilities."""

    def __init__(self, client: Any, index: str, space: Any = None, *, aliases: Any = None, ocr: Any = None,
                 allow_other_space: bool = False, synonyms: Any = None):
        self.client = client
        self.synonyms = synonyms   # a SynonymTable for every profile (else each profile's own file)
        self.index = index
        self.space = space
        self.ocr = ocr
        self.allow_other_space = allow_other_space
        self.aliases = aliases
        self._encoded: dict[tuple[str, int], SearchRequest] = {}
        self._caps = None
        self._vocab = None
        self._seed_searcher: Searcher | None = None

    def encoded(self, q: JudgedQuery, size: int) -> SearchRequest:
        key = (q.id, size)
        if key not in self._encoded:
            req = request_for(q, size)
            if self.space is not None:
                self._shared()   # the space is checked against the index before any query is encoded
                req = encode(req, self.space, self.ocr)
            self._encoded[key] = req
        return self._encoded[key]

    def _shared(self) -> tuple[Any, Any]:
        if self._vocab is None:
            probe = Searcher(self.client, "bm25", self.space, index=self.index, aliases=self.aliases,
                             allow_other_space=self.allow_other_space)
            probe.index_space()   # SearchError when the space is not the index's
            self._vocab = probe.vocabulary()
            self._caps = detect_fusion(self.client, self.index)
        return self._vocab, self._caps

    def searcher(self, profile: Profile | str | Mapping[str, Any]) -> Searcher:
        vocab, caps = self._shared()
        return Searcher(self.client, load_profile(profile), None, index=self.index, aliases=self.aliases,
                        vocabulary=vocab, vocabulary_max_age_s=float("inf"), capabilities=caps,
                        synonyms=self.synonyms)

    def __call__(self, profile: Profile | str | Mapping[str, Any]) -> SearchFn:
        """A search callable; a malformed profile raises ``ProfileError`` (a ``ValueError``) here."""
        searcher = self.searcher(profile)

        def search(q: JudgedQuery, depth: int) -> Sequence[str]:
            req = self.encoded(q, depth)
            if not searcher.profile.active(request_inputs(req)):
                raise NotApplicable(f"profile {searcher.profile.name} has no retriever for {sorted(request_inputs(req))}")
            try:
                result = searcher.search(req)
            except BuildError:
                # lexical needs tokens, which a punctuation-only text or OCR text may not yield
                if all(r.entry.lexical for r in searcher.profile.active(request_inputs(req))):
                    raise NotApplicable(f"profile {searcher.profile.name}: nothing searchable in {q.label!r}") from None
                raise
            return [h.id for h in result.hits]

        return search

    def profiles(self, names: Sequence[str | Profile]) -> dict[str, SearchFn]:
        out: dict[str, SearchFn] = {}
        for n in names:
            p = load_profile(n)
            out[p.name] = self(p)
        return out

    def delete_pipelines(self, profile_name: str) -> int:
        """Remove the search pipelines made for ``profile_name`` (tuning trials leave one per weight set)."""
        prefix = f"cmsearch-{profile_name.lower()}-"
        try:
            names = list(self.client.transport.perform_request("GET", "/_search/pipeline") or {})
        except Exception:  # noqa: BLE001 - no pipelines (404) or no permission: nothing to clean
            return 0
        gone = 0
        for name in names:
            if name.startswith(prefix):
                self.client.transport.perform_request("DELETE", f"/_search/pipeline/{name}")
                gone += 1
        return gone

