"""What fusion a cluster can do server-side, found once by trying it.

Plugin names differ between distributions and class-path nodes, so they prove
nothing; instead this puts each fusion method's processor (the entries of
:mod:`query_builder.fusion_methods`) in a throw-away search pipeline and runs a
tiny hybrid query through it against the product index itself.  Only search
pipelines are created (and deleted again), never an index.  The probe is a flow
(:mod:`query_builder.calls`), so the blocking and the asyncio searcher share it.

What neural-search added after 2.19 is found the same way, by feature rather than by
version number: ``z_score`` (3.0) is one more normalization to try; weighted RRF (3.1) is
told by the score of the first hit, not by the pipeline being accepted (2.19's normalization
processor accepts parameters it does not know and ignores them); a node without neural-search
(the local 3.x node) has no hybrid query at all, and every search is fused client-side.
Min-max lower bounds are told the same way, by scores (:func:`_bounds_honoured`): 2.19 takes
``lower_bounds`` (even malformed ones) and normalizes without them.

A searcher on a secured cluster usually may not create pipelines (a cluster privilege a
read-only role does not hold).  So a searcher's probe first runs its tiny query through the
pipelines an admin created for its profile (``cmsearch pipelines put``); when they answer, the
searcher names them and never creates a pipeline (``premade``), and no cluster API is called.
Only when they do not is every method tried with throw-away pipelines as above.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from opensearchpy.exceptions import AuthorizationException, NotFoundError, OpenSearchException, TransportError

from . import calls
from .calls import Flow
from .fusion_methods import COMBINATION_METHODS, FUSION_METHODS
from .profile import FusionSpec
from .search_pipelines import SearchPipeline

__all__ = ["FusionCapabilities", "detect_fusion", "probe_fusion", "NO_SERVER_FUSION"]

# the method whose pipeline decides whether hybrid queries work at all, and the combination
# every method is probed with
_BASE_METHOD, _BASE_COMBINATION = "min_max", "arithmetic_mean"


@dataclass(frozen=True)
class FusionCapabilities:
    hybrid: bool                                 # hybrid query + normalization-processor work
    normalizations: frozenset[str] = frozenset()  # fusion methods (registry names) that work server-side
    combinations: frozenset[str] = frozenset()
    pagination_depth: bool = False               # hybrid accepts pagination_depth (2.19+)
    weighted: frozenset[str] = frozenset()        # rank-based methods whose processor honours weights (3.1+ RRF)
    detail: str = ""
    shards: int = 1                              # shards of the probed index (its hybrid query's _shards.total)
    premade: bool = False                        # may not create pipelines: names those an admin made
    lower_bounds: bool = False                   # min_max honours lower_bounds as neural-search 3.2+ does

    @property
    def rrf(self) -> bool:
        """The score-ranker-processor (RRF) works."""
        return "rrf" in self.normalizations

    def supports(self, fusion: FusionSpec, weights: tuple[float, ...],
                 retrievers: tuple[str, ...] | None = None) -> tuple[bool, str]:
        """Whether this fusion can run server-side, and if not, why (for the result's notes).

        ``retrievers``: the sub-queries' kinds; without them, a profile with lower bounds counts as
        bounded whichever of its retrievers run (client-side fusion is then exact, if slower)."""
        if not self.hybrid:
            return False, f"the cluster has no hybrid search ({self.detail or 'neural-search not available'})"
        method = fusion.method
        if method.rank_based and self.shards > 1:
            # neural-search 2.19's score-ranker-processor ranks each sub-query within each shard
            # (neural-search#1718), so server-side RRF over several shards is not the RRF of the
            # whole index (tests/test_cluster.py measured recall@10 0.855 against one shard); the
            # probe cannot tell a release that ranks over all shards, and client-side RRF is exact
            return False, (f"the index has {self.shards} shards and server-side {method.name} ranks within "
                           "each shard")
        if method.name not in self.normalizations:
            return False, f"the cluster has no '{method.name}' {'ranker' if method.rank_based else 'normalization'}"
        if not method.server_weights and method.name not in self.weighted and \
                len(set(round(w, 6) for w in weights)) > 1:
            return False, (f"the cluster's {method.name} takes no weights; weighted {method.name} is fused "
                           "client-side")
        if not method.rank_based and fusion.combination not in self.combinations:
            return False, f"the cluster has no '{fusion.combination}' combination"
        if fusion.lower_bounds and not self.lower_bounds and (
                retrievers is None or any(fusion.lower_bound(kind) is not None for kind in retrievers)):
            if self.premade:   # a searcher that may not create pipelines cannot try bounds by scores
                return False, ("whether the cluster's min_max honours lower_bounds is not known (pipelines made "
                               "beforehand are not tried for it); fused client-side with the profile's bounds")
            return False, ("the cluster's min_max does not honour lower_bounds (neural-search 3.2+); fused "
                           "client-side with the profile's bounds")
        return True, ""


NO_SERVER_FUSION = FusionCapabilities(hybrid=False, detail="not probed")


def _put(name: str, processor: dict) -> Flow[bool]:
    """True when the pipeline was created; a refusal for want of privileges raises."""
    try:
        yield calls.perform("PUT", f"/_search/pipeline/{name}", {"phase_results_processors": [processor]})
        return True
    except AuthorizationException:
        raise
    except (OpenSearchException, TransportError):
        return False


def _delete(name: str) -> Flow[None]:
    try:
        yield calls.perform("DELETE", f"/_search/pipeline/{name}")
    except (OpenSearchException, TransportError):
        pass


def _hybrid_search(index: str, pipeline: str, depth: bool, queries: int = 2) -> Flow[dict]:
    """match_all beside match_none: every product is in the first list only, at rank 1 the first."""
    hybrid: dict[str, Any] = {"queries": [{"match_all": {}}] + [{"match_none": {}}] * (queries - 1)}
    if depth:
        hybrid["pagination_depth"] = 10
    return (yield from calls.read(calls.search(index, {"query": {"hybrid": hybrid}, "size": 1, "_source": False},
                                               {"search_pipeline": pipeline})))


def _hybrid_runs(index: str, pipeline: str, depth: bool, queries: int = 2) -> Flow[tuple[bool, str, int]]:
    """(whether the hybrid query ran, why not, how many shards answered it)."""
    try:
        resp = yield from _hybrid_search(index, pipeline, depth, queries)
        return True, "", int(((resp or {}).get("_shards") or {}).get("total") or 1)
    except NotFoundError:
        raise
    except (OpenSearchException, TransportError) as exc:
        info = getattr(exc, "info", None)
        err = info.get("error") if isinstance(info, dict) else None
        if isinstance(err, dict) and err.get("reason"):
            return False, f"{err.get('type')}: {err['reason']}"[:200], 0
        return False, str(getattr(exc, "error", "") or exc)[:200], 0


# weights for the weighted-RRF probe: the first hit's score is 1/(60+1) unweighted, 0.25/61 weighted
_PROBE_WEIGHTS = (0.25, 0.75)


def _weights_count(index: str, pipeline: str, depth: bool) -> Flow[bool]:
    """Whether the rank-based pipeline ``pipeline`` (made with :data:`_PROBE_WEIGHTS`) weighs its
    lists: the first product's score is then the first list's weight times its rank score.  An
    empty index tells nothing, and counts as no."""
    try:
        resp = yield from _hybrid_search(index, pipeline, depth)
    except NotFoundError:
        raise
    except (OpenSearchException, TransportError):
        return False
    hits = resp.get("hits", {}).get("hits") or []
    if not hits or hits[0].get("_score") is None:
        return False
    return abs(float(hits[0]["_score"]) - _PROBE_WEIGHTS[0] / 61) < 1e-5


def _first_id(index: str) -> Flow[str | None]:
    try:
        resp = yield from calls.read(calls.search(index, {"query": {"match_all": {}}, "size": 1, "_source": False}))
    except NotFoundError:
        raise
    except (OpenSearchException, TransportError):
        return None
    hits = (resp or {}).get("hits", {}).get("hits") or []
    return hits[0].get("_id") if hits else None


def _second_hit_share(index: str, pipeline: str, depth: bool, doc_id: str) -> Flow[float | None]:
    """A hybrid query whose first list scores ``doc_id`` 2 and every other product 1 (beside a
    list that matches nothing): the second hit's score over the first's, None if it tells nothing."""
    first = {"bool": {"must": [{"match_all": {}}], "should": [{"ids": {"values": [doc_id]}}]}}
    hybrid: dict[str, Any] = {"queries": [first, {"match_none": {}}]}
    if depth:
        hybrid["pagination_depth"] = 10
    try:
        resp = yield from calls.read(calls.search(index, {"query": {"hybrid": hybrid}, "size": 2, "_source": False},
                                                  {"search_pipeline": pipeline}))
    except NotFoundError:
        raise
    except (OpenSearchException, TransportError):
        return None
    hits = (resp or {}).get("hits", {}).get("hits") or []
    if len(hits) < 2 or hits[0].get("_id") != doc_id or not hits[0].get("_score") or hits[1].get("_score") is None:
        return None
    return float(hits[1]["_score"]) / float(hits[0]["_score"])


# (bound of the first list, the second hit's share when the bound counts the 3.2+ way): raw scores
# 2 and 1; apply at 0 gives 1 / 2 (plain min-max: 0.001); clip at 1.5 gives 0.001 in 3.2+, where
# 3.0 and 3.1 give (1 - 1.5) / (2 - 1.5) = -1
_BOUND_PROBES = (({"mode": "apply", "min_score": 0.0}, 0.5), ({"mode": "clip", "min_score": 1.5}, 0.001))


def _bounds_honoured(index: str, probe: str, depth: bool, created: list[str]) -> Flow[bool]:
    """Whether min_max honours ``lower_bounds`` as neural-search 3.2+ does (the client-side mirror's
    semantics).  An index with fewer than two products tells nothing, and counts as no."""
    doc_id = yield from _first_id(index)
    if doc_id is None:
        return False
    base = FUSION_METHODS[_BASE_METHOD]
    for i, (bound, share) in enumerate(_BOUND_PROBES):
        processor = base.probe_processor(_BASE_COMBINATION)
        processor["normalization-processor"]["normalization"]["parameters"] = {
            "lower_bounds": [bound, {"mode": "ignore"}]}
        pipe = f"{probe}-bounds{i}"
        if not (yield from _put(pipe, processor)):
            return False
        created.append(pipe)
        got = yield from _second_hit_share(index, pipe, depth, doc_id)
        if got is None or abs(got - share) > 1e-4:
            return False
    return True


_DENIED = "this user may not create search pipelines (cluster:admin/search/pipeline/put)"


def _premade_probe(index: str, fusion: FusionSpec, premade: list[SearchPipeline]) -> Flow[FusionCapabilities]:
    """Whether hybrid queries run through the pipelines made for the profile beforehand."""
    pipe = premade[0]
    n = len(next(iter(pipe.body["phase_results_processors"][0].values())).get("combination", {})
            .get("parameters", {}).get("weights") or [0, 0])
    depth, why, shards = yield from _hybrid_runs(index, pipe.name, depth=True, queries=n)
    if not depth:
        ok, why, shards = yield from _hybrid_runs(index, pipe.name, depth=False, queries=n)
        if not ok:
            return FusionCapabilities(hybrid=False, detail=why)
    return FusionCapabilities(hybrid=True, normalizations=frozenset({fusion.method.name}),
                              combinations=frozenset({fusion.combination}), pagination_depth=depth, shards=shards,
                              detail="the profile's search pipelines exist (made beforehand)", premade=True)


def probe_fusion(index: str, fusion: FusionSpec | None = None,
                 premade: list[SearchPipeline] | tuple[SearchPipeline, ...] = ()) -> Flow[FusionCapabilities]:
    """The probe as a flow: every registered fusion method and combination is tried on ``index``
    (which must exist; a missing one raises ``NotFoundError``); its pipelines are removed again.

    With a profile's ``fusion`` and ``premade`` pipelines, those are tried first (see the
    module's docstring)."""
    premade = list(premade)
    if fusion is not None and premade:
        caps = yield from _premade_probe(index, fusion, premade)
        if caps.hybrid:
            return caps
    try:
        return (yield from _probe_all(index))
    except AuthorizationException:
        why = (", and the profile's pipelines were not made beforehand: an admin makes them with "
               "`cmsearch pipelines put`") if premade else ""
        return FusionCapabilities(hybrid=False, detail=_DENIED + why)


def _probe_all(index: str) -> Flow[FusionCapabilities]:
    created: list[str] = []
    # unique names: two searchers probing at once must not delete each other's pipelines
    probe = f"cmsearch-probe-{uuid.uuid4().hex[:8]}"
    base_method = FUSION_METHODS[_BASE_METHOD]
    try:
        base = f"{probe}-{_BASE_METHOD}"
        if not (yield from _put(base, base_method.probe_processor(_BASE_COMBINATION))):
            return FusionCapabilities(hybrid=False, detail="a normalization-processor pipeline cannot be created")
        created.append(base)
        depth, why, shards = yield from _hybrid_runs(index, base, depth=True)
        hybrid = depth
        if not depth:
            hybrid, why, shards = yield from _hybrid_runs(index, base, depth=False)
        if not hybrid:
            return FusionCapabilities(hybrid=False, detail=f"hybrid query failed: {why}")
        methods = {_BASE_METHOD}
        weighted = set()
        for name, method in FUSION_METHODS.items():
            if name == _BASE_METHOD:
                continue
            pipe = f"{probe}-{name}"
            if (yield from _put(pipe, method.probe_processor(_BASE_COMBINATION))):
                created.append(pipe)
                if (yield from _hybrid_runs(index, pipe, depth=depth))[0]:
                    methods.add(name)
            if name in methods and not method.server_weights and method.rank_based:
                pipe = f"{probe}-{name}-weighted"
                if (yield from _put(pipe, method.processor(_BASE_COMBINATION, _PROBE_WEIGHTS, 60))):
                    created.append(pipe)
                    if (yield from _weights_count(index, pipe, depth)):
                        weighted.add(name)

        combos = {_BASE_COMBINATION}
        for combination in COMBINATION_METHODS:
            if combination == _BASE_COMBINATION:
                continue
            pipe = f"{probe}-{_BASE_METHOD}-{combination}"
            if (yield from _put(pipe, base_method.probe_processor(combination))):
                created.append(pipe)
                combos.add(combination)
        bounds = yield from _bounds_honoured(index, probe, depth, created)
        return FusionCapabilities(hybrid=True, normalizations=frozenset(methods), combinations=frozenset(combos),
                                  pagination_depth=depth, shards=shards, weighted=frozenset(weighted),
                                  lower_bounds=bounds)
    finally:
        for name in created:
            yield from _delete(name)


def detect_fusion(client: Any, index: str) -> FusionCapabilities:
    """Probe server-side fusion on ``index`` with a blocking client (see :func:`probe_fusion`)."""
    return calls.run_sync(client, probe_fusion(index))
