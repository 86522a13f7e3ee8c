"""Turning a shopper's request into OpenSearch requests: pure builders plus a thin executor.

Building needs no connection::

    from query_builder import SearchRequest, load_profile, understand, build_search
    from analysis import Tokenizer, Vocabulary

    profile = load_profile("hybrid_minmax")
    request = SearchRequest(text="红色 椅子", vectors=QueryVectors(text=vec), filters=Filters(price=NumberRange(max=500)))
    built = build_search(request, profile, understand(request, profile, Tokenizer(), vocabulary), vocabulary=vocabulary)
    client.search(index="products", body=built.body(), params=built.params())   # after PUT built.pipeline

Running it, with server- or client-side fusion chosen by what the cluster can do::

    space = Space.load(models_dir, heads_dir, strict=False)      # from models.space
    Searcher(client, "hybrid_minmax", space, index="products").search(request)
    await AsyncSearcher(async_client, "hybrid_minmax", space, index="products").search(request)

What a retriever kind and a fusion method are lives in two registries,
:mod:`query_builder.retrievers` and :mod:`query_builder.fusion_methods`.
"""
from .async_searcher import AsyncSearcher
from .bodies import BuildError, BuiltSearch, SubQuery, build_search, fused_query_vector
from .index_space import recorded_space, space_for_index
from .query_vectors import QueryImageError, encode
from .regions import Box, RegionSpec, cut_regions, merge_regions, region_requests
from .facets import FacetBucket, Facets, facet_aggs, parse_facets
from .fusion import FusedDoc, RankedList, combine, fuse, normalize_scores
from .fusion_methods import (COMBINATION_METHODS, FUSION_METHODS, Combination, FusionMethod, register_combination,
                             register_fusion)
from .fusion_probe import FusionCapabilities, detect_fusion
from .profile import (BoostSpec, FacetSpec, FusionSpec, LexicalSpec, PhotoSpec, Profile, ProfileError,
                      RetrieverSpec, load_profile, shipped_profiles)
from .request import Filters, NumberRange, QueryImage, QueryVectors, RequestError, SearchRequest
from .results import Hit, HitExplain, RetrieverScore, SearchResult
from .retrievers import RETRIEVERS, RetrieverKind, register as register_retriever
from .searcher import SearchError, Searcher
from .suggest import Suggestion
from .understand import CategoryBoost, Understanding, understand

__all__ = [
    "SearchRequest", "Filters", "NumberRange", "QueryImage", "QueryVectors", "RequestError",
    "Profile", "ProfileError", "RetrieverSpec", "LexicalSpec", "FusionSpec", "BoostSpec", "PhotoSpec",
    "FacetSpec", "load_profile", "shipped_profiles", "Suggestion",
    "understand", "Understanding", "CategoryBoost",
    "encode", "QueryImageError", "space_for_index", "recorded_space",
    "RegionSpec", "Box", "cut_regions", "merge_regions", "region_requests",
    "build_search", "BuiltSearch", "SubQuery", "BuildError", "fused_query_vector",
    "SearchPipeline", "search_pipeline", "facet_aggs", "parse_facets", "Facets", "FacetBucket",
    "fuse", "normalize_scores", "combine", "RankedList", "FusedDoc",
    "FusionCapabilities", "detect_fusion", "Searcher", "AsyncSearcher", "SearchError", "SearchResult", "Hit",
    "HitExplain", "RetrieverScore",
    "RETRIEVERS", "RetrieverKind", "register_retriever",
    "FUSION_METHODS", "COMBINATION_METHODS", "FusionMethod", "Combination", "register_fusion", "register_combination",
]
