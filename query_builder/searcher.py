"""Running a search with a blocking client: the thin layer between the pure builder and OpenSearch.

``Searcher(client, profile).search(request)`` encodes (if encoders are given), understands,
builds, then runs the search as :mod:`query_builder.search_flow` describes (single, server-
or client-side fusion).  Whether the server can fuse is found out once per searcher, by trying.
:class:`~query_builder.async_searcher.AsyncSearcher` is the same over ``AsyncOpenSearch``.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Mapping, Sequence

from analysis import AliasTable, Vocabulary

from . import calls
from .bodies import BuiltSearch
from .fusion_probe import FusionCapabilities
from .profile import Profile
from .regions import Box, RegionSpec
from .request import SearchRequest
from .results import SearchResult
from .suggest import KINDS, Suggestion
from .search_flow import IndexSpace, SearchError, SearcherCore, nested_shortfall

__all__ = ["SearchError", "Searcher", "nested_shortfall"]


class Searcher(SearcherCore):
    """Searches one product index with one profile, over a blocking ``OpenSearch`` client.

    - ``space``: a :class:`models.space.Space` that computes query vectors from
      text and photos; without it a request must carry precomputed vectors for
      the dense retrievers (the lexical retriever needs none).  It must be the
      space the index records (see ``allow_other_space``).
    - ``ocr``: reads text off query photos (brand recognition), e.g.
      :class:`models.ocr.OcrReader`'s ``read``.
    - ``aliases``: brand/category alias table for recognition (see
      :mod:`analysis.vocabulary`).  The vocabulary itself is read from the
      index's facets on first use and re-read after ``vocabulary_max_age_s``
      or on :meth:`refresh_vocabulary`.
    - ``capabilities``: skip probing (e.g. share one probe between searchers).
    - ``synonyms``: a :class:`analysis.synonyms.SynonymTable` for the lexical retriever; unset,
      the profile's ``synonyms`` file (if it names one) is read once here.

    **Thread safety**: one ``Searcher`` may be shared by any number of threads (a
    backend's worker pool), and a search gives the same result whichever thread runs
    it.  Its profile, space and index are read-only after construction; what it finds
    once (the index's space, fusion capabilities, vocabulary and tokenizer, pipelines already put) is
    guarded by a lock held only for a look-up or an update, never across a cluster call,
    and the probe runs once however many threads ask at the same time.  It relies on the
    parts it is given being thread-safe too: opensearch-py's client (a connection pool),
    onnxruntime sessions (``run`` may be called concurrently) and the jieba tokenizer
    (built once under its own lock).  ``tests/test_async_searcher.py`` keeps this promise.
    """

    def __init__(self, client: Any, profile: Profile | str | Mapping[str, Any] = "hybrid_minmax",
                 space: Any = None, *, index: str = "products", aliases: AliasTable | None = None,
                 vocabulary: Vocabulary | None = None, vocabulary_max_age_s: float = 600.0,
                 capabilities: FusionCapabilities | None = None, ocr: Any = None,
                 allow_other_space: bool = False, synonyms: Any = None) -> None:
        super().__init__(client, profile, space, index=index, aliases=aliases, vocabulary=vocabulary,
                         vocabulary_max_age_s=vocabulary_max_age_s, capabilities=capabilities, ocr=ocr,
                         allow_other_space=allow_other_space, synonyms=synonyms)
        self._probe_lock = threading.Lock()

    # --- state found once ---------------------------------------------------------------
    def capabilities(self) -> FusionCapabilities:
        """Server-side fusion this cluster supports (probed on first call, then cached)."""
        caps = self._cached_capabilities()
        if caps is not None:
            return caps
        with self._probe_lock:   # one probe, however many threads ask at once
            caps = self._cached_capabilities()
            if caps is None:
                caps = self._set_capabilities(calls.run_sync(self.client, self._capabilities_flow()))
            return caps

    def index_space(self) -> IndexSpace:
        """What the index records of its vectors (:class:`IndexSpace`); read once.

        Raises :class:`SearchError` when the searcher's space is not the index's (unless
        ``allow_other_space``).
        """
        state = self._cached_space()
        return state if state is not None else self._set_space(calls.run_sync(self.client, self._space_flow()))

    def refresh_vocabulary(self) -> Vocabulary:
        """Re-read brands and categories from the index (e.g. after an ingest)."""
        return self._set_vocabulary(calls.run_sync(self.client, self._vocabulary_flow()))

    def vocabulary(self) -> Vocabulary:
        vocab = self._fresh_vocabulary()
        return vocab if vocab is not None else self.refresh_vocabulary()

    # --- building and running -----------------------------------------------------------
    def prepare(self, request: SearchRequest) -> BuiltSearch:
        """Encode, understand and build, without running anything on the cluster."""
        space_state = self.index_space()
        return self._build(request, self.vocabulary(), space_state)

    def search(self, request: SearchRequest) -> SearchResult:
        """Run ``request``; bad input raises :class:`RequestError`, engine failures :class:`SearchError`."""
        t0 = time.perf_counter()
        built = self.prepare(request)
        caps = self.capabilities() if self._needs_capabilities(built) else None
        return calls.run_sync(self.client, self._search_flow(request, built, caps, t0))

    def search_regions(self, request: SearchRequest, spec: RegionSpec | None = None,
                       regions: Sequence[tuple[Box, SearchRequest]] | None = None) -> SearchResult:
        """Shop the look: the request's one photo cut into regions (:mod:`query_builder.regions`),
        each searched with this searcher's profile, merged per product; each hit carries the
        ``region`` box that found it.  Needs a searcher with a space, unless ``regions`` brings the
        region requests already embedded (:func:`~query_builder.regions.region_requests`, e.g.
        by a backend that runs the encoders elsewhere, or to search one scene with several profiles)."""
        t0 = time.perf_counter()
        spec = spec or RegionSpec()
        prepared = self._region_builds(request, spec, self.vocabulary(), self.index_space(), regions)
        caps = self.capabilities() if any(self._needs_capabilities(b) for _, _, b in prepared) else None
        return calls.run_sync(self.client, self._regions_flow(request, spec, prepared, caps, t0))

    def suggest(self, prefix: str, size: int = 10, kinds: Sequence[str] = KINDS) -> list[Suggestion]:
        """Titles, brands and categories that ``prefix`` (Chinese, pinyin or initials) begins, most
        popular first, then best matched; see :mod:`query_builder.suggest`."""
        return calls.run_sync(self.client, self._suggest_flow(prefix, size, kinds))
