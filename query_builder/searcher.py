"""Running a search with a blocking client: the thin layer between the pure builder and OpenSearch.

``Searcher(client, profile).search(request)`` encodes (if encoders are given), understands,
builds, then runs the search as :mod:`query_builder.search_flow` describes (single, server-
or client-side fusion).  Whether the server can fuse is found out once per searcher, by trying.
:class:`~query_builder.async_searcher.AsyncSearcher` is the same over ``AsyncOpenSearch``.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Mapping

from analysis import AliasTable, Vocabulary

from . import calls
from .bodies import BuiltSearch
from .encode import Encoders
from .fusion_probe import FusionCapabilities
from .profile import Profile
from .request import SearchRequest
from .results import SearchResult
from .search_flow import SearchError, SearcherCore, nested_shortfall

__all__ = ["SearchError", "Searcher", "nested_shortfall"]


class Searcher(SearcherCore):
    """Searches one product index with one profile, over a blocking ``OpenSearch`` client.

    - ``encoders``: compute query vectors from text and photos; without them a
      request must carry precomputed vectors for the dense retrievers (the
      lexical retriever needs none).
    - ``aliases``: brand/category alias table for recognition (see
      :mod:`analysis.vocabulary`).  The vocabulary itself is read from the
      index's facets on first use and re-read after ``vocabulary_max_age_s``
      or on :meth:`refresh_vocabulary`.
    - ``capabilities``: skip probing (e.g. share one probe between searchers).

    **Thread safety**: one ``Searcher`` may be shared by any number of threads (a
    backend's worker pool), and a search gives the same result whichever thread runs
    it.  Its profile, encoders and index are read-only after construction; what it finds
    once (fusion capabilities, vocabulary and tokenizer, pipelines already put) is
    guarded by a lock held only for a look-up or an update, never across a cluster call,
    and the probe runs once however many threads ask at the same time.  It relies on the
    parts it is given being thread-safe too: opensearch-py's client (a connection pool),
    onnxruntime sessions (``run`` may be called concurrently) and the jieba tokenizer
    (built once under its own lock).  ``tests/test_async_searcher.py`` keeps this promise.
    """

    def __init__(self, client: Any, profile: Profile | str | Mapping[str, Any] = "hybrid_minmax",
                 encoders: Encoders | None = None, *, index: str = "products", aliases: AliasTable | None = None,
                 vocabulary: Vocabulary | None = None, vocabulary_max_age_s: float = 600.0,
                 capabilities: FusionCapabilities | None = None) -> None:
        super().__init__(client, profile, encoders, index=index, aliases=aliases, vocabulary=vocabulary,
                         vocabulary_max_age_s=vocabulary_max_age_s, capabilities=capabilities)
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

    def refresh_vocabulary(self) -> Vocabulary:
        """Re-read brands and categories from the index (e.g. after an ingest)."""
        return self._set_vocabulary(calls.run_sync(self.client, self._vocabulary_flow()))

    def vocabulary(self) -> Vocabulary:
        vocab = self._fresh_vocabulary()
        return vocab if vocab is not None else self.refresh_vocabulary()

    # --- building and running -----------------------------------------------------------
    def prepare(self, request: SearchRequest) -> BuiltSearch:
        """Encode, understand and build, without running anything on the cluster."""
        return self._build(request, self.vocabulary())

    def search(self, request: SearchRequest) -> SearchResult:
        """Run ``request``; bad input raises :class:`RequestError`, engine failures :class:`SearchError`."""
        t0 = time.perf_counter()
        built = self.prepare(request)
        caps = self.capabilities() if self._needs_capabilities(built) else None
        return calls.run_sync(self.client, self._search_flow(request, built, caps, t0))
