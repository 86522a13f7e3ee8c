"""Hostile queries against the real node: paging past the end, scripts other than Chinese and Latin.

The catalog is small and synthetic: every product's text vector is a random unit vector
near the "query" vector, so the dense retrievers find every product and a hybrid search has
a known number of results.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

import mappings
from analysis import Tokenizer
from mappings import VectorDims
from mappings import fields as F
from query_builder import Profile, QueryVectors, SearchError, Searcher, SearchRequest, detect_fusion, load_profile
from query_builder.search_flow import engine_message as _engine_message

pytestmark = pytest.mark.engine

DIMS = VectorDims(shared=384, image_feature=1280)
_rng = np.random.default_rng(15)
QUERY = _rng.normal(size=DIMS.shared)
QUERY /= np.linalg.norm(QUERY)


def _unit_near(rng) -> list[float]:
    v = QUERY + 0.5 * rng.normal(size=DIMS.shared) / np.sqrt(DIMS.shared)
    return (v / np.linalg.norm(v)).tolist()


CHAIRS = [(f"c{i:02d}", f"红色 餐椅 {i}号") for i in range(23)]
SCRIPTS = [
    ("ru1", "Кровать белая двуспальная"),
    ("ru2", "Стол обеденный деревянный"),
    ("he1", "שולחן עץ מלא"),
    ("ar1", "طاولة خشب طبيعي"),
    ("ja1", "ソファベッド 東京タワー"),
    ("ja2", "ノートパソコン スタンド"),
    ("ko1", "원목 책상"),
]
CATALOG = CHAIRS + SCRIPTS
TEXT_PROFILE = Profile.from_dict({"name": "lex_text", "retrievers": [{"kind": "lexical", "weight": 0.5},
                                                                      {"kind": "text_knn", "weight": 0.5, "k": 100}],
                                  "fusion": {"normalization": "min_max", "combination": "arithmetic_mean"},
                                  "verbose_query_words": 9})


@pytest.fixture(scope="module")
def catalog(os_client, request):
    import uuid

    name = f"hostile-q-{uuid.uuid4().hex[:8]}"
    os_client.indices.create(index=name, body=mappings.product_index_body(DIMS))
    tk = Tokenizer()
    rng = np.random.default_rng(5)
    for pid, title in CATALOG:
        vec = _unit_near(rng)
        doc = {F.ID: pid, F.TITLE: tk.field_text(title), F.TITLE_RAW: title, F.TEXT_VECTOR: vec, F.FUSED_VECTOR: vec}
        if pid.startswith("c"):
            doc[F.BRAND] = "ikea"
        os_client.index(index=name, id=pid, body=doc)
    os_client.indices.refresh(index=name)
    request.addfinalizer(lambda: os_client.indices.delete(index=name, ignore_unavailable=True))
    return name


@pytest.fixture(scope="module")
def caps(os_client, catalog):
    return detect_fusion(os_client, catalog)


def _searcher(os_client, catalog, caps, mode: str, profile: Profile = TEXT_PROFILE) -> Searcher:
    return Searcher(os_client, profile.with_(fusion=replace(profile.fusion, mode=mode)), index=catalog,
                    capabilities=caps)


def _request(text="餐椅", **kw) -> SearchRequest:
    return SearchRequest(text=text, vectors=QueryVectors(text=tuple(QUERY)), **kw)


# --- item 7: paging past the last result ------------------------------------------------------
@pytest.mark.parametrize("mode", ["server", "client"])
def test_paging_past_the_last_hybrid_result_gives_an_empty_page(os_client, catalog, caps, mode):
    s = _searcher(os_client, catalog, caps, mode)
    first = s.search(_request(size=10))
    assert first.fusion_path == mode
    total = first.total
    assert total == len(CATALOG)       # the k-NN retriever finds every product
    last = s.search(_request(offset=total - 3, size=10))
    assert len(last.hits) == 3 and last.total == total
    for offset in (total, total + 1, total + 250):
        past = s.search(_request(offset=offset, size=10))
        assert past.hits == () and past.total == total, (mode, offset)
        assert past.fusion_path == mode


def test_paging_past_the_end_keeps_facets_and_the_total(os_client, catalog, caps):
    s = _searcher(os_client, catalog, caps, "server")
    past = s.search(_request(offset=500, size=10, facets=("brand",)))
    assert past.hits == () and past.total == len(CATALOG)
    assert [(b.value, b.count) for b in past.facets.brand] == [("ikea", len(CHAIRS))]


def test_an_engine_error_keeps_its_root_cause(os_client, catalog, caps):
    """A shard failure's own reason (the part that says what to do) reaches the SearchError."""
    from opensearchpy.exceptions import RequestError

    body = {"query": {"hybrid": {"queries": [{"match_all": {}}, {"match_all": {}}], "pagination_depth": 5}},
            "from": 100, "size": 10}
    built = _searcher(os_client, catalog, caps, "server").prepare(_request())
    p = built.pipeline
    os_client.transport.perform_request("PUT", f"/_search/pipeline/{p.name}", body=p.body)
    with pytest.raises(RequestError) as info:
        os_client.search(index=catalog, body=body, params=built.params())
    msg = _engine_message(info.value)
    assert "search_phase_execution_exception" in msg
    assert "pagination_depth" in msg, msg


@pytest.mark.parametrize("mode", ["server", "client"])
def test_a_search_error_names_the_engines_cause(os_client, catalog, caps, mode):
    """A query vector of the wrong dimension: the error says so, not only "all shards failed"."""
    s = _searcher(os_client, catalog, caps, mode)
    with pytest.raises(SearchError) as info:
        s.search(SearchRequest(text="餐椅", vectors=QueryVectors(text=tuple(QUERY[:16]))))
    assert "dimension" in str(info.value).lower(), str(info.value)


# --- item 8: scripts other than Chinese and Latin ------------------------------------------------
def test_a_cyrillic_query_counts_two_words_and_finds_the_cyrillic_title(os_client, catalog, caps):
    s = Searcher(os_client, "hybrid_minmax", index=catalog, capabilities=caps)
    res = s.search(_request("кровать белая"))
    assert res.understanding.tokens == ("кровать", "белая")
    assert "text_knn" in res.retrievers                       # the long-query rule did not fire
    assert not any("-word query" in n for n in res.notes)
    assert res.hits and res.hits[0].id == "ru1"
    lexical = Searcher(os_client, "bm25", index=catalog).search(SearchRequest(text="КРОВАТЬ"))
    assert [h.id for h in lexical.hits] == ["ru1"]            # a word, not its letters, matches


@pytest.mark.parametrize("text, want", [
    ("стол", "ru2"), ("שולחן", "he1"), ("خشب", "ar1"), ("ソファベッド", "ja1"), ("タワー", "ja1"),
    ("ノートパソコン", "ja2"), ("책상", "ko1"),
])
def test_bm25_finds_words_of_each_script(os_client, catalog, text, want):
    res = Searcher(os_client, "bm25", index=catalog).search(SearchRequest(text=text))
    assert [h.id for h in res.hits] == [want], (text, [h.title for h in res.hits])


def test_the_async_searcher_pages_past_the_end_too(os_client, catalog, caps):
    import asyncio

    from engine.client import ConnectionSettings
    from query_builder import AsyncSearcher

    url = "http://{host}:{port}".format(**os_client.transport.hosts[0])

    async def run():
        client = ConnectionSettings.resolve(url).async_client()
        try:
            s = AsyncSearcher(client, TEXT_PROFILE, index=catalog, capabilities=caps)
            return await s.search(_request(offset=len(CATALOG) + 5, size=10))
        finally:
            await client.close()

    past = asyncio.run(run())
    assert past.fusion_path == "server" and past.hits == () and past.total == len(CATALOG)
