"""Running a search over ``opensearchpy.AsyncOpenSearch``, for asyncio backends.

The same profile, building, routing, fusion and result shaping as the blocking
:class:`~query_builder.searcher.Searcher` (both drive the flows of
:mod:`query_builder.search_flow`); only the waiting differs.  The CPU work of a request
(photo decoding, the ONNX encoders, tokenizing, building) runs in a worker thread via
``asyncio.to_thread``, so one slow photo does not stall every other request on the loop.
"""
from __future__ import annotations

import asyncio
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
from .search_flow import IndexSpace, SearcherCore

__all__ = ["AsyncSearcher"]


class AsyncSearcher(SearcherCore):
    """Searches one product index with one profile, over an ``AsyncOpenSearch`` client.

    Parameters as for :class:`~query_builder.searcher.Searcher`.  One instance serves any
    number of concurrent requests on its event loop; the capability probe runs once even
    when many requests arrive before it has finished.  The client belongs to the caller:
    close it (``await client.close()``) when the application stops.
    """

    def __init__(self, client: Any, profile: Profile | str | Mapping[str, Any] = "hybrid_minmax",
                 space: Any = None, *, index: str = "products", aliases: AliasTable | None = None,
                 vocabulary: Vocabulary | None = None, vocabulary_max_age_s: float = 600.0,
                 capabilities: FusionCapabilities | None = None, ocr: Any = None,
                 allow_other_space: bool = False, synonyms: Any = None) -> None:
        super().__init__(client, profile, space, index=index, aliases=aliases, vocabulary=vocabulary,
                         vocabulary_max_age_s=vocabulary_max_age_s, capabilities=capabilities, ocr=ocr,
                         allow_other_space=allow_other_space, synonyms=synonyms)
        self._probe_lock: asyncio.Lock | None = None

    async def capabilities(self) -> FusionCapabilities:
        """Server-side fusion this cluster supports (probed on first call, then cached)."""
        caps = self._cached_capabilities()
        if caps is not None:
            return caps
        if self._probe_lock is None:   # made here, inside the running loop
            self._probe_lock = asyncio.Lock()
        async with self._probe_lock:
            caps = self._cached_capabilities()
            if caps is None:
                caps = self._set_capabilities(await calls.run_async(self.client, self._capabilities_flow()))
            return caps

    async def index_space(self) -> IndexSpace:
        """What the index records of its vectors (:class:`IndexSpace`); read once."""
        state = self._cached_space()
        return state if state is not None else self._set_space(await calls.run_async(self.client,
                                                                                      self._space_flow()))

    async def refresh_vocabulary(self) -> Vocabulary:
        """Re-read brands and categories from the index (e.g. after an ingest)."""
        vocab = await calls.run_async(self.client, self._vocabulary_flow())
        # the tokenizer normalizes every brand and category word: off the loop
        return await asyncio.to_thread(self._set_vocabulary, vocab)

    async def vocabulary(self) -> Vocabulary:
        vocab = self._fresh_vocabulary()
        return vocab if vocab is not None else await self.refresh_vocabulary()

    async def prepare(self, request: SearchRequest) -> BuiltSearch:
        """Encode, understand and build (in a worker thread), without running anything on the cluster."""
        space_state = await self.index_space()
        vocab = await self.vocabulary()
        return await asyncio.to_thread(self._build, request, vocab, space_state)

    async def search(self, request: SearchRequest) -> SearchResult:
        """Run ``request``; bad input raises :class:`RequestError`, engine failures :class:`SearchError`."""
        t0 = time.perf_counter()
        built = await self.prepare(request)
        caps = await self.capabilities() if self._needs_capabilities(built) else None
        return await calls.run_async(self.client, self._search_flow(request, built, caps, t0))

    async def search_regions(self, request: SearchRequest, spec: RegionSpec | None = None,
                             regions: Sequence[tuple[Box, SearchRequest]] | None = None) -> SearchResult:
        """Shop the look, as :meth:`Searcher.search_regions <query_builder.searcher.Searcher.search_regions>`;
        cutting and embedding the regions runs in a worker thread."""
        t0 = time.perf_counter()
        spec = spec or RegionSpec()
        space_state = await self.index_space()
        vocab = await self.vocabulary()
        prepared = await asyncio.to_thread(self._region_builds, request, spec, vocab, space_state, regions)
        caps = await self.capabilities() if any(self._needs_capabilities(b) for _, _, b in prepared) else None
        return await calls.run_async(self.client, self._regions_flow(request, spec, prepared, caps, t0))

    async def suggest(self, prefix: str, size: int = 10, kinds: Sequence[str] = KINDS) -> list[Suggestion]:
        """Titles, brands and categories that ``prefix`` (Chinese, pinyin or initials) begins; see
        :mod:`query_builder.suggest`."""
        return await calls.run_async(self.client, self._suggest_flow(prefix, size, kinds))
