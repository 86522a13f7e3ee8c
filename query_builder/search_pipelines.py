"""The search-pipeline body a server-side hybrid query needs, with a name derived from it.

The name is a hash of the body (plus the profile's name for people reading
``GET _search/pipeline``), so the same profile and the same set of active
retrievers always use the same pipeline, and a changed weight can never reuse
a stale one.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Sequence

from .fusion_methods import NO_BOUND_PARAM
from .profile import FusionSpec

__all__ = ["SearchPipeline", "search_pipeline"]


@dataclass(frozen=True)
class SearchPipeline:
    name: str
    body_json: str  # canonical JSON, so the object stays immutable and hashable

    @property
    def body(self) -> dict[str, Any]:
        return json.loads(self.body_json)


def search_pipeline(profile_name: str, fusion: FusionSpec, weights: tuple[float, ...],
                    retrievers: Sequence[str] = ()) -> SearchPipeline:
    """The pipeline with the fusion method's processor (:mod:`query_builder.fusion_methods`):
    ``normalization-processor`` for score fusion, ``score-ranker-processor`` for RRF.

    ``weights`` are per sub-query, in hybrid order, and sum to 1 (the processor
    rejects anything else).  RRF in neural-search 2.19 takes no weights.
    ``retrievers`` are the sub-queries' kinds, in the same order: with ``fusion.lower_bounds``
    the min-max normalization gets one ``lower_bounds`` entry per sub-query (the server wants
    exactly as many as there are), ``ignore`` for a retriever without a bound; when no retriever
    that runs has one, the body is the one without bounds.
    """
    processor = fusion.method.processor(fusion.combination, weights, fusion.rank_constant)
    if fusion.lower_bounds:
        if len(retrievers) != len(weights):
            raise ValueError("a pipeline with lower bounds needs the kind of each sub-query")
        bounds = [fusion.lower_bound(kind) for kind in retrievers]
        if any(b is not None for b in bounds):
            normalization = processor["normalization-processor"]["normalization"]
            normalization["parameters"] = {"lower_bounds": [
                dict(NO_BOUND_PARAM) if b is None else b.to_param() for b in bounds]}
    body = {"description": f"cmsearch fusion for profile {profile_name}", "phase_results_processors": [processor]}
    body_json = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    digest = hashlib.sha1(body_json.encode("utf-8")).hexdigest()[:12]
    return SearchPipeline(name=f"cmsearch-{profile_name.lower()}-{digest}", body_json=body_json)
