"""The fusion registry: each way of turning several ranked lists into one is one entry.

A :class:`FusionMethod` (a profile's ``fusion.normalization``) holds its client-side
normalization, the search-pipeline processor that does the same server-side, what the
capability probe tries, and how explain names it; a :class:`Combination` (``fusion.combination``)
holds its client-side mean and is probed as a variant of the normalization processor.  The
client-side code mirrors neural-search's processors (2.19; ``z_score`` as added in 3.0), so a
ranking does not change when a search moves between the two paths:

- ``min_max``: ``(s - min) / (max - min)`` over that retriever's returned list;
  a score equal to the min becomes 0.001 (not 0, so it still counts as found);
  a list whose scores are all equal gets 1.0.  A :class:`LowerBound` (neural-search 3.0+,
  ``parameters.lower_bounds``, one per sub-query) puts a fixed score in place of the list's
  min, so a k-NN list's last neighbour is not stretched to 0 however similar it is; see
  :func:`min_max_bounded` for its modes (as 3.2+ computes them).
- ``l2``: ``s / sqrt(sum(s^2))`` over the list.
- ``z_score``: ``(s - mean) / std`` (sample std); at or below the mean 0.001;
  a score equal to the mean takes the list's max raw score and a zero std the
  min raw score (the server's edge cases, kept so both paths agree).
- ``rrf``: ``1 / (rank_constant + rank)``, rank from 1; rank based, so no combination:
  the scores are summed.  Client-side, non-uniform weights scale each retriever's share, and
  equal weights give the server's plain sum.  neural-search 2.19's RRF takes no weights; 3.1+
  takes them as ``parameters.weights`` (summing to 1: the same order as client-side, each score
  smaller by the number of retrievers), which the probe finds out by the score a weighted
  pipeline gives, so unequal weights go server-side only where they count.
- combinations: ``arithmetic_mean`` is ``sum(w_i * s_i) / sum(w_i)`` over *all* retrievers,
  a retriever that did not return the product contributing 0; ``geometric_mean`` and
  ``harmonic_mean`` count only the retrievers that returned it.

Nothing here talks to a cluster: the probe in :mod:`query_builder.fusion_probe` puts each
entry's processor in a throw-away pipeline and keeps the entries that work.
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Mapping, Sequence

__all__ = ["FusionMethod", "Combination", "LowerBound", "BOUND_MODES", "NO_BOUND_PARAM", "min_max_bounded",
           "FUSION_METHODS", "COMBINATION_METHODS", "register_fusion", "register_combination", "fusion_method",
           "combination_method", "MIN_SCORE", "SINGLE_RESULT_SCORE"]

MIN_SCORE = 0.001
SINGLE_RESULT_SCORE = 1.0
BOUND_MODES = ("apply", "clip", "ignore")
BOUND_SCORE_LIMIT = 10_000.0   # neural-search refuses a bound's min_score outside [-10000, 10000]


@dataclass(frozen=True)
class LowerBound:
    """One sub-query's min-max lower bound: ``mode`` (``apply``, ``clip``, ``ignore``) and the score
    that stands in for the list's min (``min_score``, in that retriever's raw score units).
    The defaults are neural-search's (``apply``, 0.0)."""

    mode: str = "apply"
    min_score: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in BOUND_MODES:
            raise ValueError(f"lower bound mode {self.mode!r}; allowed: {list(BOUND_MODES)}")
        if isinstance(self.min_score, bool) or not isinstance(self.min_score, (int, float)) \
                or not math.isfinite(self.min_score) or abs(self.min_score) > BOUND_SCORE_LIMIT:
            raise ValueError(f"lower bound min_score must be a number within [-{BOUND_SCORE_LIMIT:g}, "
                             f"{BOUND_SCORE_LIMIT:g}], got {self.min_score!r}")
        object.__setattr__(self, "min_score", float(self.min_score))

    def to_param(self) -> dict[str, Any]:
        """The ``lower_bounds`` entry of the normalization processor's parameters."""
        return {"mode": self.mode, "min_score": self.min_score}


# the entry for a sub-query without a bound: plain min-max in every release that takes bounds
NO_BOUND_PARAM: Mapping[str, str] = MappingProxyType({"mode": "ignore"})


@dataclass(frozen=True)
class Combination:
    """A mean over one document's normalized scores (None: that retriever did not return it)."""

    name: str
    combine: Callable[[Sequence[float | None], Sequence[float]], float]


@dataclass(frozen=True)
class FusionMethod:
    """One normalization, client- and server-side.

    - ``normalize(scores, rank_constant)``: one retriever's scores, in rank order, normalized.
    - ``rank_based``: scores are summed rank contributions (no combination; ``rank_constant`` applies).
    - ``processor(combination, weights, rank_constant)``: the search pipeline's
      ``phase_results_processors`` entry; ``weights`` per sub-query in hybrid order, summing to 1.
    - ``server_weights``: the processor honours weights in every version; if not, unequal weights
      are fused client-side unless the probe found this cluster's processor honours them.
    - ``label(combination, rank_constant)``: how explain names it.
    """

    name: str
    normalize: Callable[[Sequence[float], int], list[float]]
    processor: Callable[[str, Sequence[float], int], dict[str, Any]]
    label: Callable[[str, int], str]
    rank_based: bool = False
    server_weights: bool = True

    def probe_processor(self, combination: str = "arithmetic_mean") -> dict[str, Any]:
        """What the capability probe puts in a throw-away pipeline (and runs a hybrid query through)."""
        return self.processor(combination, (0.5, 0.5), 60)


_FUSION: dict[str, FusionMethod] = {}
_COMBINATIONS: dict[str, Combination] = {}
FUSION_METHODS: Mapping[str, FusionMethod] = MappingProxyType(_FUSION)
COMBINATION_METHODS: Mapping[str, Combination] = MappingProxyType(_COMBINATIONS)


def register_fusion(method: FusionMethod, *, replace: bool = False) -> FusionMethod:
    if method.name in _FUSION and not replace:
        raise ValueError(f"fusion method {method.name!r} is already registered")
    _FUSION[method.name] = method
    return method


def register_combination(combination: Combination, *, replace: bool = False) -> Combination:
    if combination.name in _COMBINATIONS and not replace:
        raise ValueError(f"combination {combination.name!r} is already registered")
    _COMBINATIONS[combination.name] = combination
    return combination


def fusion_method(name: str) -> FusionMethod:
    try:
        return _FUSION[name]
    except KeyError:
        raise ValueError(f"unknown normalization {name!r}; registered: {list(_FUSION)}") from None


def combination_method(name: str) -> Combination:
    try:
        return _COMBINATIONS[name]
    except KeyError:
        raise ValueError(f"unknown combination {name!r}; registered: {list(_COMBINATIONS)}") from None


# --- normalizations ------------------------------------------------------------------------
def _min_max(scores: Sequence[float], _rank_constant: int = 60) -> list[float]:
    return min_max_bounded(scores, None)


def _f32(x: float) -> float:
    """``x`` as the server holds it: scores and bounds are Java floats there."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def min_max_bounded(scores: Sequence[float], bound: LowerBound | None) -> list[float]:
    """Min-max over one retriever's list, with neural-search 3.2+'s lower bound ``bound``.

    Per score ``s`` (``lo``, ``hi``: the list's min and max), the min it is normalized against is:

    - ``apply``: the bound when ``hi > bound`` and ``s > bound``; else ``lo``.  A score at or
      below the bound is normalized against the list's own min, so it can come out *above* a
      score just over the bound (the server does this; the mirror keeps it).
    - ``clip``: the bound, unless ``hi < bound`` (then ``lo``); a score below it gets 0.001.
    - ``ignore`` (or no bound): ``lo``, plain min-max.

    Then ``(s - min) / (hi - min)``, 0 becoming 0.001; ``min == hi`` (a clip bound equal to the
    max) gives 1.0, as does a list whose scores are all equal.  neural-search 3.0 and 3.1 differ at
    the edges (no 0.001 floor in ``apply``, a negative score below a ``clip`` bound), which is why
    the probe asks for the 3.2+ behaviour before bounds go server-side.
    """
    if not scores:
        return []
    lo, hi = min(scores), max(scores)
    if bound is None or bound.mode == "ignore":
        out = []
        for s in scores:
            if hi == lo and s == hi:
                out.append(SINGLE_RESULT_SCORE)
                continue
            n = (s - lo) / (hi - lo)
            out.append(MIN_SCORE if n == 0 else n)
        return out
    # with a bound the comparisons are the server's, between Java floats (a bound of 0.6 and a
    # score of 0.6 are equal there, and not as Python floats)
    b, lo32, hi32 = _f32(bound.min_score), _f32(lo), _f32(hi)
    out = []
    for s in scores:
        if hi == lo and s == hi:
            out.append(SINGLE_RESULT_SCORE)
            continue
        s32 = _f32(s)
        if bound.mode == "apply":
            eff_min = b if (hi32 > b and s32 > b) else lo32
        else:   # clip
            eff_min = lo32 if hi32 < b else b
            if s32 < eff_min:
                out.append(MIN_SCORE)
                continue
        if eff_min == hi32:
            out.append(SINGLE_RESULT_SCORE)
            continue
        n = (s32 - eff_min) / (hi32 - eff_min)
        out.append(MIN_SCORE if n == 0 else n)
    return out


def _l2(scores: Sequence[float], _rank_constant: int = 60) -> list[float]:
    norm = math.sqrt(sum(s * s for s in scores))
    return [0.0 if norm == 0 else s / norm for s in scores]


def _z_score(scores: Sequence[float], _rank_constant: int = 60) -> list[float]:
    n = len(scores)
    mean = sum(scores) / n
    std = math.sqrt(sum((s - mean) ** 2 for s in scores) / (n - 1)) if n > 1 else 0.0
    lo, hi = min(scores), max(scores)
    out = []
    for s in scores:
        if math.isclose(s, mean, rel_tol=0, abs_tol=1e-7):
            out.append(hi)
        elif std == 0:
            out.append(lo)
        else:
            z = (s - mean) / std
            out.append(MIN_SCORE if z <= 0 else z)
    return out


def _rrf(scores: Sequence[float], rank_constant: int = 60) -> list[float]:
    return [1.0 / (rank_constant + rank) for rank in range(1, len(scores) + 1)]


def _normalization_processor(technique: str) -> Callable[[str, Sequence[float], int], dict[str, Any]]:
    def processor(combination: str, weights: Sequence[float], _rank_constant: int) -> dict[str, Any]:
        return {"normalization-processor": {
            "normalization": {"technique": technique},
            "combination": {"technique": combination, "parameters": {"weights": list(weights)}}}}
    return processor


def _rrf_processor(_combination: str, weights: Sequence[float], rank_constant: int) -> dict[str, Any]:
    combination: dict[str, Any] = {"technique": "rrf", "rank_constant": rank_constant}
    if len(set(round(w, 6) for w in weights)) > 1:   # equal weights: the plain sum every version has
        combination["parameters"] = {"weights": list(weights)}
    return {"score-ranker-processor": {"combination": combination}}


def _score_label(technique: str) -> Callable[[str, int], str]:
    return lambda combination, _rank_constant: f"{technique} + {combination}"


for _technique, _fn in (("min_max", _min_max), ("l2", _l2), ("z_score", _z_score)):
    register_fusion(FusionMethod(_technique, normalize=_fn, processor=_normalization_processor(_technique),
                                 label=_score_label(_technique)))
register_fusion(FusionMethod("rrf", normalize=_rrf, processor=_rrf_processor, rank_based=True, server_weights=False,
                             label=lambda _combination, rank_constant: f"rrf (rank_constant {rank_constant})"))


# --- combinations --------------------------------------------------------------------------
def _arithmetic(values: Sequence[float | None], weights: Sequence[float]) -> float:
    total_w = sum(weights)
    s = sum(w * (v or 0.0) for v, w in zip(values, weights))
    return 0.0 if total_w == 0 else s / total_w


def _present(values: Sequence[float | None], weights: Sequence[float]) -> list[tuple[float, float]]:
    return [(v, w) for v, w in zip(values, weights) if v is not None and v > 0]


def _geometric(values: Sequence[float | None], weights: Sequence[float]) -> float:
    present = _present(values, weights)
    sw = sum(w for _, w in present)
    return 0.0 if sw == 0 else math.exp(sum(w * math.log(v) for v, w in present) / sw)


def _harmonic(values: Sequence[float | None], weights: Sequence[float]) -> float:
    present = _present(values, weights)
    sw = sum(w for _, w in present)
    return 0.0 if sw == 0 else sw / sum(w / v for v, w in present)


register_combination(Combination("arithmetic_mean", _arithmetic))
register_combination(Combination("geometric_mean", _geometric))
register_combination(Combination("harmonic_mean", _harmonic))
