"""The backend's API on the real node: a shared Searcher across threads, and the AsyncSearcher.

Both run on the hand-made catalog of ``test_search_live`` (its ``catalog`` fixture, built
again for this module).  Results are compared as ``SearchResult.to_dict()`` without the
wall time: scores, order, facets, notes and explanations must be identical.
"""
from __future__ import annotations

import asyncio
import random
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from engine.client import ConnectionSettings
from query_builder import (AsyncSearcher, Filters, NumberRange, Profile, QueryVectors, SearchError,
                           Searcher, SearchRequest, load_profile)
from test_search_live import ALIASES, _photo_of, catalog, concept_vec  # noqa: F401 - catalog is a fixture

pytestmark = pytest.mark.engine

PROFILES = {
    "hybrid_minmax": "hybrid_minmax",                 # server-side fusion
    "hybrid_rrf": "hybrid_rrf",
    "client": Profile.from_dict({"name": "client_minmax", "fusion": {"mode": "client"},
                                 "retrievers": ["lexical", "text_knn", "text_image_knn", "image_image_knn",
                                                "fused_knn"]}),
    "bm25": "bm25",                                   # a single retriever
}


def _requests(docs) -> list[SearchRequest]:
    photo = _photo_of(docs, "p01", 1)
    return [
        SearchRequest(text="红色 椅子", vectors=QueryVectors(text=tuple(concept_vec(["chair", "red"]))),
                      facets=("brand", "category", "price"), explain=True),
        SearchRequest(text="雅诗兰黛 眼霜", vectors=QueryVectors(text=tuple(concept_vec(["eyecream"]))), size=5),
        SearchRequest(text="椅子", vectors=QueryVectors(text=tuple(concept_vec(["chair"]))),
                      filters=Filters(brand=("Muji",), price=NumberRange(max=300)), size=5, explain=True),
        SearchRequest(vectors=photo, size=5, explain=True),
        SearchRequest(text="红色", vectors=QueryVectors(text=tuple(concept_vec(["red"])), image=photo.image,
                                                      image_feature=photo.image_feature), offset=2, size=4),
    ]


def _shape(result) -> dict:
    d = result.to_dict()
    d.pop("took_ms")
    return d


def _runnable(profile, requests):
    """The requests this profile has a retriever for (bm25 cannot read a photo)."""
    p = load_profile(profile)
    return [r for r in requests if r.text or not all(s.entry.lexical for s in p.retrievers)]


class ProbeCounting:
    """The client, passed through, counting capability probes (the probe's first pipeline PUT)."""

    def __init__(self, client):
        self._client = client
        self.probes = 0
        self._lock = threading.Lock()
        self.transport = _CountingTransport(self)

    def __getattr__(self, name):
        return getattr(self._client, name)


class _CountingTransport:
    def __init__(self, owner: ProbeCounting):
        self._owner = owner

    def perform_request(self, method, url, *a, **kw):
        if method == "PUT" and url.startswith("/_search/pipeline/cmsearch-probe-") and url.endswith("-min_max"):
            with self._owner._lock:
                self._owner.probes += 1
        return self._owner._client.transport.perform_request(method, url, *a, **kw)


# --- a shared Searcher, many threads -------------------------------------------------------------
@pytest.mark.parametrize("name", list(PROFILES))
def test_a_shared_searcher_gives_every_thread_the_sequential_results(os_client, catalog, name):
    index, docs = catalog
    requests = _runnable(PROFILES[name], _requests(docs))
    sequential = Searcher(os_client, PROFILES[name], index=index, aliases=ALIASES)
    want = [_shape(sequential.search(r)) for r in requests]

    counting = ProbeCounting(os_client)
    shared = Searcher(counting, PROFILES[name], index=index, aliases=ALIASES)   # cold: probe and vocabulary race
    barrier = threading.Barrier(6)

    def worker(seed: int) -> list[tuple[int, dict]]:
        order = list(range(len(requests))) * 3
        random.Random(seed).shuffle(order)
        barrier.wait()
        return [(i, _shape(shared.search(requests[i]))) for i in order]

    with ThreadPoolExecutor(max_workers=6) as pool:
        runs = list(pool.map(worker, range(6)))
    for run in runs:
        for i, got in run:
            assert got == want[i], (name, i)
    assert counting.probes <= 1     # one probe however many threads asked (none for a lone retriever)


# --- the asyncio searcher -------------------------------------------------------------------------
def _async_client(os_client):
    url = "http://{host}:{port}".format(**os_client.transport.hosts[0])
    return ConnectionSettings.resolve(url).async_client()


async def _gather_searches(os_client, index, profile, requests, *, counting=False, encoders=None):
    client = _async_client(os_client)
    try:
        wrapped = ProbeCounting(client) if counting else client
        searcher = AsyncSearcher(wrapped, profile, encoders, index=index, aliases=ALIASES)
        results = await asyncio.gather(*(searcher.search(r) for r in requests))
        return results, (wrapped.probes if counting else None)
    finally:
        await client.close()


@pytest.mark.parametrize("name", list(PROFILES))
def test_the_async_searcher_returns_what_the_sync_one_does(os_client, catalog, name):
    index, docs = catalog
    requests = _runnable(PROFILES[name], _requests(docs))
    sync = Searcher(os_client, PROFILES[name], index=index, aliases=ALIASES)
    want = [_shape(sync.search(r)) for r in requests]
    # every request at once on a cold searcher: one probe, the same answers
    results, probes = asyncio.run(_gather_searches(os_client, index, PROFILES[name], requests * 2, counting=True))
    assert [_shape(r) for r in results] == want * 2
    assert probes <= 1


class RecordingSpace:
    """A space that embeds query text in the catalog's concept space and notes which thread ran it
    (no identity: the catalog index records none, and the searcher checks nothing)."""

    WORDS = {"红色": "red", "椅子": "chair", "手机": "phone", "眼霜": "eyecream"}

    def __init__(self):
        self.threads: set[int] = set()

    def embed_query(self, text=None, images=(), names=None):
        from models.space import QueryEmbedding

        self.threads.add(threading.get_ident())
        return QueryEmbedding(text=concept_vec([c for w, c in self.WORDS.items() if w in text] or ["chair"]))


def test_async_encoders_run_off_the_event_loop(os_client, catalog):
    index, _ = catalog
    requests = [SearchRequest(text=t, size=5) for t in ("红色 椅子", "手机", "眼霜")]
    enc = RecordingSpace()
    want = [_shape(Searcher(os_client, "dense_text", enc, index=index, aliases=ALIASES).search(r))
            for r in requests]
    async_enc = RecordingSpace()
    loop_thread: list[int] = []

    async def run():
        loop_thread.append(threading.get_ident())
        return await _gather_searches(os_client, index, "dense_text", requests, encoders=async_enc)

    results, _ = asyncio.run(run())
    assert [_shape(r) for r in results] == want
    assert async_enc.threads and loop_thread[0] not in async_enc.threads


def test_async_errors_are_search_errors(os_client, catalog):
    async def missing():
        client = _async_client(os_client)
        try:
            await AsyncSearcher(client, "bm25", index="no-such-index-here").search(SearchRequest(text="椅子"))
        finally:
            await client.close()

    with pytest.raises(SearchError, match="'no-such-index-here' does not exist"):
        asyncio.run(missing())
