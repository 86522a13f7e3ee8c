"""What fusion a cluster can do server-side, found once by trying it.

Plugin names differ between distributions and class-path nodes, so they prove
nothing; instead this creates the search pipelines a profile would need and
runs a tiny hybrid query against the product index itself.  Only search
pipelines are created (and deleted again), never an index.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from opensearchpy.exceptions import NotFoundError, OpenSearchException, TransportError

from .profile import COMBINATIONS, FusionSpec

__all__ = ["FusionCapabilities", "detect_fusion", "NO_SERVER_FUSION"]



@dataclass(frozen=True)
class FusionCapabilities:
    hybrid: bool                                 # hybrid query + normalization-processor work
    normalizations: frozenset[str] = frozenset()  # server-side score normalizations that work
    combinations: frozenset[str] = frozenset()
    rrf: bool = False                            # score-ranker-processor works
    pagination_depth: bool = False               # hybrid accepts pagination_depth (2.19+)
    detail: str = ""

    def supports(self, fusion: FusionSpec, weights: tuple[float, ...]) -> tuple[bool, str]:
        """Whether this fusion can run server-side, and if not, why (for the result's notes)."""
        if not self.hybrid:
            return False, f"the cluster has no hybrid search ({self.detail or 'neural-search not available'})"
        if fusion.is_rrf:
            if not self.rrf:
                return False, "the cluster has no score-ranker-processor (RRF)"
            if len(set(round(w, 6) for w in weights)) > 1:
                return False, "server-side RRF takes no weights; weighted RRF is fused client-side"
            return True, ""
        if fusion.normalization not in self.normalizations:
            return False, f"the cluster has no '{fusion.normalization}' normalization"
        if fusion.combination not in self.combinations:
            return False, f"the cluster has no '{fusion.combination}' combination"
        return True, ""


NO_SERVER_FUSION = FusionCapabilities(hybrid=False, detail="not probed")


def _put(client: Any, name: str, processor: dict) -> bool:
    try:
        client.transport.perform_request("PUT", f"/_search/pipeline/{name}",
                                         body={"phase_results_processors": [processor]})
        return True
    except (OpenSearchException, TransportError):
        return False


def _delete(client: Any, name: str) -> None:
    try:
        client.transport.perform_request("DELETE", f"/_search/pipeline/{name}")
    except (OpenSearchException, TransportError):
        pass


def _norm(technique: str, combination: str = "arithmetic_mean") -> dict:
    return {"normalization-processor": {"normalization": {"technique": technique},
                                        "combination": {"technique": combination}}}


def _hybrid_runs(client: Any, index: str, pipeline: str, depth: bool) -> tuple[bool, str]:
    hybrid: dict[str, Any] = {"queries": [{"match_all": {}}, {"match_none": {}}]}
    if depth:
        hybrid["pagination_depth"] = 10
    try:
        client.search(index=index, body={"query": {"hybrid": hybrid}, "size": 1, "_source": False},
                      params={"search_pipeline": pipeline})
        return True, ""
    except NotFoundError:
        raise
    except (OpenSearchException, TransportError) as exc:
        return False, str(getattr(exc, "error", "") or exc)[:200]


def detect_fusion(client: Any, index: str) -> FusionCapabilities:
    """Probe server-side fusion on ``index`` (which must exist); cleans up its pipelines."""
    created: list[str] = []
    # unique names: two searchers probing at once must not delete each other's pipelines
    probe = f"cmsearch-probe-{uuid.uuid4().hex[:8]}"
    try:
        base = f"{probe}-min_max"
        if not _put(client, base, _norm("min_max")):
            return FusionCapabilities(hybrid=False, detail="a normalization-processor pipeline cannot be created")
        created.append(base)
        depth, why = _hybrid_runs(client, index, base, depth=True)
        hybrid = depth
        if not depth:
            hybrid, why = _hybrid_runs(client, index, base, depth=False)
        if not hybrid:
            return FusionCapabilities(hybrid=False, detail=f"hybrid query failed: {why}")
        norms = {"min_max"}
        for technique in ("l2", "z_score"):
            name = f"{probe}-{technique}"
            if _put(client, name, _norm(technique)):
                created.append(name)
                norms.add(technique)
        combos = {"arithmetic_mean"}
        for combination in COMBINATIONS[1:]:
            name = f"{probe}-min_max-{combination}"
            if _put(client, name, _norm("min_max", combination)):
                created.append(name)
                combos.add(combination)
        rrf_name = f"{probe}-rrf"
        rrf = _put(client, rrf_name, {"score-ranker-processor": {"combination": {"technique": "rrf",
                                                                                 "rank_constant": 60}}})
        if rrf:
            created.append(rrf_name)
            rrf = _hybrid_runs(client, index, rrf_name, depth=depth)[0]
        return FusionCapabilities(hybrid=True, normalizations=frozenset(norms), combinations=frozenset(combos),
                                  rrf=rrf, pagination_depth=depth)
    finally:
        for name in created:
            _delete(client, name)
