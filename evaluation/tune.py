"""Tuning a profile's fusion weights, k and boosts by seeded random search on a train split.

Why random search: the few knobs that matter differ per catalog and per query mix, and random
search finds good regions of such low-effective-dimension spaces about as fast as grid or
Bayesian search at a fraction of the machinery (Bergstra & Bengio, 2012); with a seed, a
tuning run can be repeated exactly.  The first trial is always the untouched base profile, so
the tuned profile is never worse than the default *on the train split*; the held-out split,
never seen while choosing, tells whether the gain is real.

Profiles are handled as plain dicts (the JSON form of ``query_builder.profile.Profile``) and
searched through ``search_factory(profile_dict) -> SearchFn``; a parameter set the factory
rejects (``ValueError``, e.g. a profile validation error) is recorded as an invalid trial.

A parameter is addressed by a dotted path into the profile dict:
``retrievers.<kind>.weight`` / ``retrievers.<kind>.k`` (by retriever kind), ``boosts.brand``,
``fusion.rank_constant``, ``candidates`` ...  (The weights of the fused vector are not a profile's:
they belong to the index's recorded space, the weights its products were fused with.)  A space file is JSON:
``{"retrievers.lexical.weight": {"low": 0.1, "high": 10, "log": true},
"fusion.rank_constant": {"choices": [10, 30, 60, 100]}}``.
"""
from __future__ import annotations

import copy
import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from query_builder.fusion_methods import FUSION_METHODS

from .judgments import JudgmentSet
from .metrics import DEFAULT_METRICS, MetricSpec
from .runner import EvalRun, ProfileSummary, SearchFn, run_profiles, summarize

__all__ = ["Param", "ParameterSpace", "Trial", "TuneResult", "SpaceError", "apply_params", "get_param",
           "default_space", "load_space", "tune", "format_report", "write_profile"]


class SpaceError(ValueError):
    """A parameter path or range is not valid for this profile."""


@dataclass(frozen=True)
class Param:
    """One tunable value: a ``[low, high]`` range (``log`` for log-uniform, ``integer`` to round) or ``choices``."""

    path: str
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] | None = None
    log: bool = False
    integer: bool = False

    def __post_init__(self) -> None:
        if self.choices is not None:
            object.__setattr__(self, "choices", tuple(self.choices))
            if not self.choices:
                raise SpaceError(f"{self.path}: empty choices")
            return
        if self.low is None or self.high is None or not self.low <= self.high:
            raise SpaceError(f"{self.path}: needs low <= high, or choices")
        if self.log and self.low <= 0:
            raise SpaceError(f"{self.path}: a log range needs low > 0")

    def sample(self, rng: random.Random) -> Any:
        if self.choices is not None:
            return rng.choice(self.choices)
        if self.log:
            v = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        else:
            v = rng.uniform(self.low, self.high)
        return int(round(v)) if self.integer else round(v, 4)

    @classmethod
    def from_dict(cls, path: str, data: Mapping[str, Any]) -> "Param":
        unknown = set(data) - {"low", "high", "choices", "log", "integer"}
        if unknown:
            raise SpaceError(f"{path}: unknown key(s) {sorted(unknown)}; allowed: low, high, choices, log, integer")
        return cls(path, data.get("low"), data.get("high"), data.get("choices"), bool(data.get("log", False)),
                   bool(data.get("integer", False)))


@dataclass(frozen=True)
class ParameterSpace:
    params: tuple[Param, ...]

    def sample(self, rng: random.Random) -> dict[str, Any]:
        return {p.path: p.sample(rng) for p in self.params}

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for p in self.params:
            d: dict[str, Any] = {"choices": list(p.choices)} if p.choices is not None else {"low": p.low, "high": p.high}
            if p.log:
                d["log"] = True
            if p.integer:
                d["integer"] = True
            out[p.path] = d
        return out


def _locate(profile: dict[str, Any], path: str) -> tuple[Any, Any]:
    """(container, key) of ``path`` inside ``profile``; retrievers are addressed by kind."""
    parts = path.split(".")
    node: Any = profile
    i = 0
    while i < len(parts) - 1:
        part = parts[i]
        if isinstance(node, dict) and part == "retrievers" and i + 1 < len(parts) - 1:
            kind = parts[i + 1]
            found = [r for r in node.get("retrievers", []) if isinstance(r, dict) and r.get("kind") == kind]
            if not found:
                raise SpaceError(f"{path}: the profile has no retriever {kind!r}")
            node, i = found[0], i + 2
            continue
        node = _child(node, part, path)
        i += 1
    last = parts[-1]
    if isinstance(node, list):
        if not last.isdigit() or int(last) >= len(node):
            raise SpaceError(f"{path}: no element {last}")
        return node, int(last)
    if not isinstance(node, dict) or last not in node:
        raise SpaceError(f"{path}: the profile has no such value")
    return node, last


def _child(node: Any, part: str, path: str) -> Any:
    if isinstance(node, list) and part.isdigit() and int(part) < len(node):
        return node[int(part)]
    if isinstance(node, dict) and part in node:
        return node[part]
    raise SpaceError(f"{path}: the profile has no {part!r} there")


def get_param(profile: Mapping[str, Any], path: str) -> Any:
    node, key = _locate(dict(profile), path)
    return node[key]


def apply_params(profile: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of ``profile`` with each path set to its value."""
    out = copy.deepcopy(dict(profile))
    for path, value in params.items():
        node, key = _locate(out, path)
        node[key] = value
    return out


def default_space(profile: Mapping[str, Any]) -> ParameterSpace:
    """Fusion weights (when there is something to fuse), each retriever's k, RRF's rank constant,
    and the boost strengths (when boosts are on)."""
    retrievers = [r for r in profile.get("retrievers", []) if isinstance(r, dict)]
    params: list[Param] = []
    if len(retrievers) > 1:
        params += [Param(f"retrievers.{r['kind']}.weight", 0.05, 1.0, log=True) for r in retrievers]
    params += [Param(f"retrievers.{r['kind']}.k", choices=(25, 50, 100, 200)) for r in retrievers]
    fusion = profile.get("fusion") or {}
    method = FUSION_METHODS.get(fusion.get("normalization", "min_max"))
    if len(retrievers) > 1 and method is not None and method.rank_based:
        params.append(Param("fusion.rank_constant", 5, 100, integer=True))
    boosts = profile.get("boosts") or {}
    if boosts.get("enabled", True):
        # every boost strength the profile declares (BoostSpec's numeric fields)
        params += [Param(f"boosts.{k}", 0.0, 2.0) for k, v in boosts.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if not params:
        raise SpaceError("nothing to tune in this profile")
    return ParameterSpace(tuple(params))


def load_space(path: str | Path, profile: Mapping[str, Any]) -> ParameterSpace:
    """A space from a JSON file, every path checked against ``profile``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SpaceError(f"{path}: {exc}") from None
    if not isinstance(data, dict) or not data:
        raise SpaceError(f"{path}: a space is a non-empty object of path -> range")
    params = tuple(Param.from_dict(k, v if isinstance(v, dict) else {"choices": v}) for k, v in data.items())
    return _checked(ParameterSpace(params), profile)


def _checked(space: ParameterSpace, profile: Mapping[str, Any]) -> ParameterSpace:
    for p in space.params:
        get_param(profile, p.path)   # raises SpaceError for a path the profile lacks
    return space


@dataclass(frozen=True)
class Trial:
    index: int
    params: Mapping[str, Any]
    train_score: float | None          # None: the profile was rejected
    error: str = ""


@dataclass
class TuneResult:
    metric: str
    base: dict[str, Any]
    best: dict[str, Any]
    best_params: dict[str, Any]
    trials: list[Trial]
    train_queries: int
    heldout_queries: int
    seed: int
    not_applicable: int = 0            # judged queries the base profile cannot search, left out
    default_train: ProfileSummary | None = None
    tuned_train: ProfileSummary | None = None
    default_heldout: ProfileSummary | None = None
    tuned_heldout: ProfileSummary | None = None
    heldout_run: EvalRun | None = field(default=None, repr=False)

    @property
    def improved(self) -> bool:
        return bool(self.best_params)


def _mean_of(run: EvalRun, name: str, metric: str) -> float:
    v = run.summaries[name].means[metric]
    return v if v == v else 0.0


def tune(base: Mapping[str, Any], jset: JudgmentSet, search_factory: Callable[[dict[str, Any]], SearchFn], *,
         space: ParameterSpace | None = None, metric: str | MetricSpec = "ndcg@10", trials: int = 30,
         holdout: float = 0.3, seed: int = 0, time_budget_s: float | None = None,
         metrics: Sequence[MetricSpec] = DEFAULT_METRICS, tuned_name: str | None = None,
         progress: Callable[[Trial], None] | None = None) -> TuneResult:
    """Random search over ``space`` (default: :func:`default_space`) maximizing ``metric`` on the train split.

    ``trials`` bounds the number of profiles tried (the base profile included), ``time_budget_s``
    the wall time; whichever comes first stops the search.  The base profile is run once over
    every judged query first: queries it cannot search at all (a photo for a text-only profile)
    are left out before the split, so neither side is made of queries no trial can answer, and
    that run is the default's score on both splits.
    """
    if trials < 1:
        raise ValueError("trials must be at least 1")
    metric = metric if isinstance(metric, MetricSpec) else MetricSpec.parse(metric)
    metrics = tuple(dict.fromkeys((metric, *metrics)))
    base = copy.deepcopy(dict(base))
    space = _checked(space or default_space(base), base)
    default_search = search_factory(base)
    probe = run_profiles(jset.judged(), {"default": default_search}, metrics)
    usable = jset.subset(r.query_id for r in probe.results)
    if len(usable) < 2:
        raise ValueError(f"tuning needs at least 2 judged queries the profile can search; {jset.name} has {len(usable)}")
    train, held = usable.split(holdout, seed)
    train_ids = {q.id for q in train}
    default_rows = {"train": [r for r in probe.results if r.query_id in train_ids],
                    "held": [r for r in probe.results if r.query_id not in train_ids]}
    rng = random.Random(seed)
    name = tuned_name or f"{base.get('name', 'profile')}_tuned"
    t0 = time.monotonic()
    results: list[Trial] = []
    best_score, best_params = -1.0, {}
    for i in range(trials):
        if i and time_budget_s is not None and time.monotonic() - t0 > time_budget_s:
            break
        params = {} if i == 0 else space.sample(rng)
        if i == 0:
            score = summarize("default", default_rows["train"], (metric,)).means[metric.name]
            trial = Trial(0, params, round(score, 6))
        else:
            candidate = apply_params(base, params)
            candidate["name"] = name   # one name for all trials: their pipelines can be found and removed
            try:
                search = search_factory(candidate)
            except ValueError as exc:
                trial = Trial(i, params, None, str(exc))
            else:
                run = run_profiles(train, {"trial": search}, (metric,))
                trial = Trial(i, params, round(_mean_of(run, "trial", metric.name), 6))
        if trial.train_score is not None and trial.train_score > best_score:
            best_score, best_params = trial.train_score, params
        results.append(trial)
        if progress:
            progress(trial)
    best = apply_params(base, best_params)
    best["name"] = name
    best["description"] = (f"{base.get('name', 'profile')} tuned on {jset.name} ({len(train)} train queries, "
                           f"seed {seed}, {len(results)} trials, {metric.name}); held-out queries: {len(held)}")
    out = TuneResult(metric.name, base, best, dict(best_params), results, len(train), len(held), seed,
                     not_applicable=probe.summaries["default"].not_applicable)
    out.default_train = summarize("default", default_rows["train"], metrics)
    out.default_heldout = summarize("default", default_rows["held"], metrics)
    tuned_search = search_factory(best)
    out.tuned_train = run_profiles(train, {"tuned": tuned_search}, metrics).summaries["tuned"]
    hr = run_profiles(held, {"default": default_search, "tuned": tuned_search}, metrics)
    out.tuned_heldout, out.heldout_run = hr.summaries["tuned"], hr
    return out


def format_report(res: TuneResult) -> str:
    """Default vs tuned on the train and held-out queries, then the chosen parameters."""
    names = list(res.default_heldout.means) if res.default_heldout else [res.metric]
    lines = [f"tuned {res.base.get('name')} by {res.metric}: {len(res.trials)} trials, seed {res.seed}, "
             f"{res.train_queries} train / {res.heldout_queries} held-out queries",
             f"{'split':<9} {'profile':<8} " + " ".join(f"{n:>10}" for n in names)]
    for split, d, t in (("train", res.default_train, res.tuned_train), ("held-out", res.default_heldout, res.tuned_heldout)):
        for label, s in (("default", d), ("tuned", t)):
            if s is not None:
                lines.append(f"{split:<9} {label:<8} " + " ".join(f"{s.means[n]:>10.4f}" for n in names))
    if res.best_params:
        lines.append("chosen parameters (default -> tuned):")
        for path, v in sorted(res.best_params.items()):
            lines.append(f"  {path}: {get_param(res.base, path)} -> {v}")
    else:
        lines.append("no sampled profile beat the default on the train split; the default is kept")
    if res.not_applicable:
        lines.append(f"{res.not_applicable} judged query(ies) the profile cannot search were left out")
    bad = [t for t in res.trials if t.train_score is None]
    if bad:
        lines.append(f"{len(bad)} trial(s) rejected, first: {bad[0].error}")
    return "\n".join(lines)


def write_profile(profile: Mapping[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(profile, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return path
