"""The YAML sweep spec: fixed trial settings, a search space, the search, the pruner, metric and resources.

Everything is checked before a sweep starts, so a bad spec fails with one message naming file and key.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import importlib.util
import inspect
import itertools
import math
import random
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import optuna
import torch
import yaml

from ckpd_core import (
    SESSION_METRICS,
    CKPDError,
    ConfigError,
    TrialConfig,
    build_benchmark,
    find_linear_layers,
)
from ckpd_core.data import check_data_root, count_sessions
from ckpd_core.metrics import with_validation
from ckpd_core.models.backbone import create_backbone

from .errors import SpecError
from .objective import DEFAULT_OBJECTIVE, OBJECTIVES, Objective

ALGORITHMS = ("grid", "random", "optuna")
MODES = ("max", "min")
METRICS = with_validation(SESSION_METRICS)
SAMPLERS: dict[str, type[optuna.samplers.BaseSampler]] = {
    "tpe": optuna.samplers.TPESampler,
    "random": optuna.samplers.RandomSampler,
    "cmaes": optuna.samplers.CmaEsSampler,
    "qmc": optuna.samplers.QMCSampler,
    "gp": optuna.samplers.GPSampler,
}
PRUNERS: dict[str, type[optuna.pruners.BasePruner]] = {
    "median": optuna.pruners.MedianPruner,
    "percentile": optuna.pruners.PercentilePruner,
    "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
    "hyperband": optuna.pruners.HyperbandPruner,
    "wilcoxon": optuna.pruners.WilcoxonPruner,
    "patient": optuna.pruners.PatientPruner,
}
# Samplers that import an optional package only when they first sample, i.e. mid-sweep.
_SAMPLER_PACKAGES = {"cmaes": "cmaes", "gp": "scipy"}
TOP_LEVEL_KEYS = (
    "name",
    "description",
    "trial",
    "space",
    "search",
    "pruner",
    "metric",
    "objective",
    "mode",
    "num_samples",
    "seeds",
    "resources",
    "max_concurrent",
    "max_failures",
    "results",
)
DOMAIN_KEYS = ("choice", "grid", "int", "uniform", "loguniform")
RESOURCE_KEYS = ("cpu", "gpu")
_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# The annotated type of each trial setting, quoted when a value of the wrong type breaks TrialConfig.
_SETTING_TYPES = {f.name: str(f.type) for f in dataclasses.fields(TrialConfig)}


# ----------------------------------------------------------------------------------------- domains


@dataclass(frozen=True)
class _Values:
    """A finite list of values; subclasses differ in whether the searcher picks or a grid crosses them."""

    values: tuple[Any, ...]
    keyword: ClassVar[str]

    def extremes(self) -> list[Any]:
        return list(self.values)

    def to_optuna(self, trial: optuna.Trial, name: str) -> Any:
        return trial.suggest_categorical(name, list(self.values))

    def sample(self, rng: random.Random) -> Any:
        return rng.choice(self.values)

    def to_yaml(self) -> dict[str, Any]:
        return {self.keyword: list(self.values)}


class Choice(_Values):
    """A categorical value the searcher picks (crossed like a grid under ``algorithm: grid``)."""

    keyword = "choice"


class Grid(_Values):
    """Values run exhaustively: every one is crossed with every other grid value and every seed."""

    keyword = "grid"


@dataclass(frozen=True)
class IntRange:
    """An integer in [low, high] inclusive, optionally sampled log-uniformly."""

    low: int
    high: int
    log: bool = False

    def extremes(self) -> list[Any]:
        return [self.low, self.high]

    def to_optuna(self, trial: optuna.Trial, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high, log=self.log)

    def sample(self, rng: random.Random) -> int:
        if not self.log:
            return rng.randint(self.low, self.high)
        # floor(exp(U(log low, log(high + 1)))) gives each integer k the mass log((k + 1) / k).
        return min(self.high, math.floor(math.exp(rng.uniform(math.log(self.low), math.log(self.high + 1)))))

    def to_yaml(self) -> dict[str, Any]:
        return {"int": [self.low, self.high], **({"log": True} if self.log else {})}


@dataclass(frozen=True)
class Uniform:
    """A float drawn uniformly from [low, high]."""

    low: float
    high: float

    def extremes(self) -> list[Any]:
        return [self.low, self.high]

    def to_optuna(self, trial: optuna.Trial, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high)

    def sample(self, rng: random.Random) -> float:
        return rng.uniform(self.low, self.high)

    def to_yaml(self) -> dict[str, Any]:
        return {"uniform": [self.low, self.high]}


@dataclass(frozen=True)
class LogUniform:
    """A positive float whose logarithm is uniform on [log low, log high]."""

    low: float
    high: float

    def extremes(self) -> list[Any]:
        return [self.low, self.high]

    def to_optuna(self, trial: optuna.Trial, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, log=True)

    def sample(self, rng: random.Random) -> float:
        return math.exp(rng.uniform(math.log(self.low), math.log(self.high)))

    def to_yaml(self) -> dict[str, Any]:
        return {"loguniform": [self.low, self.high]}


Domain = Choice | Grid | IntRange | Uniform | LogUniform

# ------------------------------------------------------------------------------------ spec objects


@dataclass
class SearchSpec:
    """How non-grid values are chosen; ``sampler`` and ``sampler_args`` apply to ``optuna`` only.

    ``seed`` seeds the sampler (default: the sweep's first trial seed), so a search can be repeated
    with another sampler seed to check that its conclusions do not depend on the path it took.
    """

    algorithm: str = "optuna"
    sampler: str = "tpe"
    sampler_args: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None

    def build_sampler(self, seed: int | None = None) -> optuna.samplers.BaseSampler:
        with warnings.catch_warnings():  # qmc and gp are "experimental"
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return SAMPLERS[self.sampler](seed=seed, **self.sampler_args)

    def to_dict(self) -> dict[str, Any]:
        seed = {} if self.seed is None else {"seed": self.seed}
        if self.algorithm != "optuna":
            return {"algorithm": self.algorithm, **seed}
        return {
            "algorithm": self.algorithm,
            "sampler": self.sampler,
            "sampler_args": dict(self.sampler_args),
            **seed,
        }


@dataclass
class PrunerSpec:
    """An Optuna pruner by name; ``patient`` holds its ``wrapped_pruner`` as a nested PrunerSpec or None.

    ``margin`` (in units of the objective, say 0.002 = 0.2 accuracy points): a run is pruned only if
    the pruner would still prune it with its value that much better, so a gap smaller than the
    seed-to-seed noise never stops a run.
    """

    name: str
    args: dict[str, Any] = field(default_factory=dict)
    margin: float = 0.0

    def build(self) -> optuna.pruners.BasePruner:
        args = dict(self.args)
        if isinstance(args.get("wrapped_pruner"), PrunerSpec):
            args["wrapped_pruner"] = args["wrapped_pruner"].build()
        with warnings.catch_warnings():  # patient and wilcoxon are "experimental": noise, not news
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return PRUNERS[self.name](**args)

    @property
    def judges_best_so_far(self) -> bool:
        """Whether the pruner (or the one ``patient`` wraps) judges a trial by its best value over all
        steps rather than its current one: Optuna's median and percentile pruners."""
        wrapped = self.args.get("wrapped_pruner")
        if self.name == "patient":
            return isinstance(wrapped, PrunerSpec) and wrapped.judges_best_so_far
        return self.name in ("median", "percentile")

    def to_dict(self) -> dict[str, Any]:
        args = {k: v.to_dict() if isinstance(v, PrunerSpec) else v for k, v in self.args.items()}
        return {"name": self.name, "args": args, **({"margin": self.margin} if self.margin else {})}


@dataclass
class SweepSpec:
    """A validated sweep: build it with ``load_spec`` or ``parse_spec``, which check every field."""

    name: str
    path: Path | None = None
    description: str = ""
    trial: dict[str, Any] = field(default_factory=dict)
    space: dict[str, Domain] = field(default_factory=dict)
    search: SearchSpec = field(default_factory=SearchSpec)
    pruner: PrunerSpec | None = None
    metric: str = "val_acc_all"
    objective: Objective = field(default_factory=Objective)
    mode: str = "max"
    num_samples: int = 1
    seeds: list[int] = field(default_factory=lambda: [0])
    resources: dict[str, float] = field(default_factory=lambda: {"cpu": 1, "gpu": 0})
    max_concurrent: int | None = None
    max_failures: int = 1
    results: str = "results"

    def grid_points(self) -> list[dict[str, Any]]:
        """Every combination of the grid values (choices too under ``algorithm: grid``); [{}] if none."""
        names = [key for key, domain in self.space.items() if self._crossed(domain)]
        combos = itertools.product(*(self.space[key].values for key in names))
        return [dict(zip(names, combo, strict=True)) for combo in combos]

    def _crossed(self, domain: Domain) -> bool:
        return isinstance(domain, Grid) or (self.search.algorithm == "grid" and isinstance(domain, Choice))

    def build_pruner(self) -> optuna.pruners.BasePruner:
        return self.pruner.build() if self.pruner else optuna.pruners.NopPruner()

    @property
    def sampler_seed(self) -> int:
        """The seed of the search's sampler: ``search.seed``, else the first trial seed."""
        return self.seeds[0] if self.search.seed is None else self.search.seed

    def build_sampler(self) -> optuna.samplers.BaseSampler:
        """The Optuna sampler of an ``optuna`` search, seeded for reproducible suggestions."""
        return self.search.build_sampler(self.sampler_seed)

    def trial_config(self, params: dict[str, Any], seed: int) -> TrialConfig:
        """The trial's own copy of the fixed settings, with the sampled ``params`` and ``seed`` on top."""
        return TrialConfig.from_dict(copy.deepcopy({**self.trial, **params, "seed": seed}))

    def to_dict(self) -> dict[str, Any]:
        """Plain values (YAML-ready, a deep copy) that ``parse_spec`` turns back into an equal spec."""
        return copy.deepcopy(
            {
                "name": self.name,
                "description": self.description,
                "trial": self.trial,
                "space": {key: domain.to_yaml() for key, domain in self.space.items()},
                "search": self.search.to_dict(),
                "pruner": self.pruner.to_dict() if self.pruner else None,
                "metric": self.metric,
                "objective": self.objective.kind,
                "mode": self.mode,
                "num_samples": self.num_samples,
                "seeds": self.seeds,
                "resources": self.resources,
                "max_concurrent": self.max_concurrent,
                "max_failures": self.max_failures,
                "results": self.results,
            }
        )


# --------------------------------------------------------------------------------------- loading


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a sweep spec file; the sweep's name defaults to the file stem."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: no such sweep spec file")
    try:
        with path.open(encoding="utf-8") as stream:
            data = yaml.safe_load(stream)
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML{yaml_problem(exc)}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: cannot read the sweep spec: {exc}") from None
    return parse_spec(data, path=path)


def parse_spec(data: Any, path: str | Path | None = None, name_default: str | None = None) -> SweepSpec:
    """Validate plain values (parsed YAML) into a SweepSpec; raise SpecError at the first problem."""
    path = Path(path) if path is not None else None
    where = str(path) if path is not None else "<sweep spec>"
    if name_default is None:
        name_default = path.stem if path is not None else "sweep"
    check = _Checker(where)
    if not isinstance(data, dict):
        raise SpecError(f"{where}: the top level must be a mapping of sweep settings, got {_kind(data)}")
    check.known_keys(data, "", TOP_LEVEL_KEYS)

    name = data.get("name", name_default)
    if not isinstance(name, str) or not _NAME_PATTERN.fullmatch(name):
        raise check.fail("name", f"{name!r} is not a usable sweep name: letters, digits, '.', '_', '-'")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise check.fail("description", f"must be text, got {_kind(description)}")

    trial = check.mapping(data.get("trial", {}), "trial")
    check.setting_names(trial, "trial")
    _absolute_paths(trial)
    check.fixed_trial(trial)
    space = _parse_space(check.mapping(data.get("space", {}), "space"), trial, check)

    search = _parse_search(data.get("search", {}), check)
    _check_space_fits_search(space, search, check)
    pruner = _parse_pruner(data.get("pruner"), "pruner", check)

    metric = data.get("metric", "val_acc_all")
    if metric not in METRICS:
        raise check.fail("metric", f"{metric!r} is not a session metric; choose one of {', '.join(METRICS)}")
    kind = data.get("objective", DEFAULT_OBJECTIVE)
    if kind not in OBJECTIVES:
        raise check.fail(
            "objective",
            f"{kind!r} is unknown; choose avg (mean of the metric over all sessions, the default), "
            "last (the final session) or hm (harmonic mean of base and novel accuracy at the end)",
        )
    try:
        objective = Objective(kind, metric)
    except ValueError as exc:
        raise check.fail("objective", str(exc)) from None
    mode = data.get("mode", "max")
    if mode not in MODES:
        raise check.fail("mode", f"{mode!r} is not allowed; choose max or min")
    num_samples = check.integer(data.get("num_samples", 1), "num_samples", low=1)
    if search.algorithm == "grid" and num_samples != 1:
        raise check.fail(
            "num_samples",
            f"is {num_samples}, but a grid search runs each point once per seed: "
            "use 1 and list repeats under seeds",
        )
    seeds = _parse_seeds(data.get("seeds", [0]), check)
    resources = _parse_resources(data.get("resources", {}), trial, check)
    max_concurrent = data.get("max_concurrent")
    if max_concurrent is not None:
        check.integer(max_concurrent, "max_concurrent", low=1)
    max_failures = check.integer(data.get("max_failures", 1), "max_failures", low=-1)
    results = data.get("results", "results")
    if not isinstance(results, str) or not results:
        raise check.fail("results", f"must be a folder path, got {results!r}")
    _check_benchmark(trial, space, check)
    return SweepSpec(
        name=name,
        path=path,
        description=description,
        trial=trial,
        space=space,
        search=search,
        pruner=pruner,
        metric=metric,
        objective=objective,
        mode=mode,
        num_samples=num_samples,
        seeds=seeds,
        resources=resources,
        max_concurrent=max_concurrent,
        max_failures=max_failures,
        results=results,
    )


# ------------------------------------------------------------------------------------ validation


class _Checker:
    """Builds the SpecErrors of one file and holds the checks shared by several sections."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, key: str, message: str) -> SpecError:
        return SpecError(f"{self.where}: {key}: {message}")

    def known_keys(self, data: dict, section: str, allowed: tuple[str, ...]) -> None:
        for key in data:
            if key not in allowed:
                dotted = f"{section}.{key}" if section else str(key)
                raise self.fail(dotted, f"unknown key; allowed keys: {', '.join(allowed)}")

    def mapping(self, value: Any, key: str, allowed: tuple[str, ...] | None = None) -> dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(key, f"must be a mapping, got {_kind(value)}")
        if allowed is not None:
            self.known_keys(value, key, allowed)
        return dict(value)

    def integer(self, value: Any, key: str, low: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise self.fail(key, f"must be an integer >= {low}, got {_describe(value)}")
        return value

    def setting_names(self, values: dict, section: str) -> None:
        known = [f.name for f in dataclasses.fields(TrialConfig) if f.name != "seed"]
        for name in values:
            if name == "seed":
                raise self.fail(f"{section}.seed", "seeds come from the top-level seeds: list, not from here")
            if name not in known:
                close = difflib.get_close_matches(str(name), known, n=3)
                hint = f" (did you mean {' or '.join(close)}?)" if close else ""
                raise self.fail(
                    f"{section}.{name}", f"not a trial setting{hint}; settings: {', '.join(sorted(known))}"
                )

    def fixed_trial(self, trial: dict) -> None:
        error = _config_error(trial)
        if error is None:
            return
        key = _culprit(trial, str(error), lambda values: _config_error(values) is None)
        if key is None:
            raise self.fail("trial", str(error))
        raise self.fail(f"trial.{key}", _explain(error, key, trial[key]))


def _parse_space(raw: dict, trial: dict, check: _Checker) -> dict[str, Domain]:
    check.setting_names(raw, "space")
    space: dict[str, Domain] = {}
    for key, value in raw.items():
        if key in trial:
            raise check.fail(f"space.{key}", "is both fixed under trial: and swept under space:; keep one")
        space[key] = _parse_domain(value, f"space.{key}", check)
    for key, domain in space.items():
        for value in domain.extremes():
            error = _config_error({**trial, key: value})
            if error is not None:
                raise check.fail(f"space.{key}", _explain(error, key, value))
    return space


def _parse_domain(raw: Any, key: str, check: _Checker) -> Domain:
    kinds = [k for k in DOMAIN_KEYS if isinstance(raw, dict) and k in raw]
    extra = set(raw) - set(DOMAIN_KEYS) - {"log"} if isinstance(raw, dict) else set()
    if len(kinds) != 1 or extra or ("log" in raw and kinds != ["int"]):
        raise check.fail(
            key,
            f"must be exactly one of {', '.join(DOMAIN_KEYS)} (int also takes log: true), got {raw!r}; "
            "e.g. {choice: [4, 8, 16]} or {loguniform: [1.0e-4, 1.0e-2]}",
        )
    kind = kinds[0]
    arg = raw[kind]
    if kind in ("choice", "grid"):
        if not isinstance(arg, list) or not arg:
            raise check.fail(key, f"{kind} needs a non-empty list of values, got {_describe(arg)}")
        duplicates = [v for i, v in enumerate(arg) if v in arg[:i]]
        if duplicates:
            raise check.fail(key, f"{kind} lists {duplicates[0]!r} more than once")
        return (Choice if kind == "choice" else Grid)(tuple(arg))
    if not isinstance(arg, list) or len(arg) != 2:
        raise check.fail(key, f"{kind} needs [low, high], got {_describe(arg)}")
    low, high = arg
    if kind == "int":
        for bound in (low, high):
            if isinstance(bound, bool) or not isinstance(bound, int):
                message = f"int bounds must be integers, got {_describe(bound)}{_yaml_hint(bound)}"
                raise check.fail(key, message)
        log = raw.get("log", False)
        if not isinstance(log, bool):
            raise check.fail(f"{key}.log", f"must be true or false, got {_describe(log)}")
        if log and low < 1:
            raise check.fail(key, f"a log-scaled int range needs low >= 1, got {low}")
    else:
        for bound in (low, high):
            if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not math.isfinite(bound):
                message = f"{kind} bounds must be finite numbers, got {_describe(bound)}{_yaml_hint(bound)}"
                raise check.fail(key, message)
        low, high = float(low), float(high)
        if kind == "loguniform" and low <= 0:
            raise check.fail(key, f"loguniform needs low > 0, got {low}")
    if low >= high:
        raise check.fail(key, f"low ({low}) must be below high ({high})")
    if kind == "int":
        return IntRange(low, high, log)
    return Uniform(low, high) if kind == "uniform" else LogUniform(low, high)


def _parse_search(raw: Any, check: _Checker) -> SearchSpec:
    data = check.mapping(raw, "search", ("algorithm", "sampler", "sampler_args", "seed"))
    algorithm = data.get("algorithm", "optuna")
    if algorithm not in ALGORITHMS:
        allowed = ", ".join(ALGORITHMS)
        raise check.fail("search.algorithm", f"{algorithm!r} is unknown; choose one of {allowed}")
    seed = data.get("seed")
    if seed is not None:
        check.integer(seed, "search.seed", low=0)
    if algorithm != "optuna":
        for key in ("sampler", "sampler_args"):
            if key in data:
                raise check.fail(f"search.{key}", f"only applies to algorithm optuna, not {algorithm}")
        return SearchSpec(algorithm, seed=seed)
    sampler = data.get("sampler", "tpe")
    if not isinstance(sampler, str) or sampler not in SAMPLERS:
        raise check.fail("search.sampler", f"{sampler!r} is unknown; choose one of {', '.join(SAMPLERS)}")
    package = _SAMPLER_PACKAGES.get(sampler)
    if package and importlib.util.find_spec(package) is None:
        raise check.fail("search.sampler", f"{sampler} needs the {package} package: pip install {package}")
    args = check.mapping(data.get("sampler_args", {}), "search.sampler_args")
    cls = SAMPLERS[sampler]
    accepted = [p for p in inspect.signature(cls).parameters if p != "seed"]
    for arg in args:
        if arg == "seed":
            raise check.fail("search.sampler_args.seed", "set the sampler's seed as search.seed")
        if arg not in accepted:
            raise check.fail(
                f"search.sampler_args.{arg}",
                f"not an argument of optuna.samplers.{cls.__name__}; arguments: {', '.join(accepted)}",
            )
    search = SearchSpec(algorithm, sampler, args, seed)
    try:
        search.build_sampler()
    except (ValueError, TypeError) as exc:
        key = _culprit(args, str(exc), lambda a: _builds(SearchSpec("optuna", sampler, a).build_sampler))
        raise check.fail(f"search.sampler_args.{key}" if key else "search.sampler_args", str(exc)) from None
    return search


def _check_space_fits_search(space: dict[str, Domain], search: SearchSpec, check: _Checker) -> None:
    for key, domain in space.items():
        if search.algorithm == "grid" and not isinstance(domain, _Values):
            raise check.fail(
                f"space.{key}",
                f"{domain.to_yaml()} is a range, but search.algorithm grid only enumerates "
                "values: use choice or grid, or search.algorithm random / optuna",
            )
        if search.algorithm == "optuna" and isinstance(domain, Choice):
            for value in domain.values:
                if value is not None and not isinstance(value, (bool, int, float, str)):
                    raise check.fail(
                        f"space.{key}",
                        f"Optuna can only choose null, booleans, numbers or text, not "
                        f"{_describe(value)}: sweep these values with grid instead of choice",
                    )


def _parse_pruner(raw: Any, key: str, check: _Checker) -> PrunerSpec | None:
    if raw is None or raw == "none":
        return None
    if not isinstance(raw, dict):
        raise check.fail(key, f"must be null / none or {{name: ..., args: {{...}}}}, got {_describe(raw)}")
    data = check.mapping(raw, key, ("name", "args", "margin"))
    margin = data.get("margin", 0.0)
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 <= margin < 1:
        raise check.fail(
            f"{key}.margin",
            f"must be a number in [0, 1) in units of the objective (0.002 = 0.2 accuracy points), "
            f"got {_describe(margin)}{_yaml_hint(margin)}",
        )
    name = data.get("name")
    if not isinstance(name, str) or name not in PRUNERS:
        raise check.fail(
            f"{key}.name", f"{name!r} is not a pruner; choose one of {', '.join(PRUNERS)} (or pruner: null)"
        )
    args = check.mapping(data.get("args", {}), f"{key}.args")
    cls = PRUNERS[name]
    params = inspect.signature(cls).parameters
    for arg in args:
        if arg not in params:
            raise check.fail(
                f"{key}.args.{arg}",
                f"not an argument of optuna.pruners.{cls.__name__}; arguments: {', '.join(params)}",
            )
    for param in params.values():
        if param.default is param.empty and param.name not in args:
            raise check.fail(f"{key}.args.{param.name}", f"optuna.pruners.{cls.__name__} requires it")
    if name == "patient":
        args["wrapped_pruner"] = _parse_pruner(args["wrapped_pruner"], f"{key}.args.wrapped_pruner", check)
    spec = PrunerSpec(name, args, float(margin))
    try:
        spec.build()
    except (ValueError, TypeError) as exc:
        culprit = _culprit(args, str(exc), lambda a: _builds(PrunerSpec(name, a).build))
        raise check.fail(f"{key}.args.{culprit}" if culprit else f"{key}.args", str(exc)) from None
    return spec


def _parse_seeds(raw: Any, check: _Checker) -> list[int]:
    if not isinstance(raw, list) or not raw:
        raise check.fail("seeds", f"must be a non-empty list of integers, got {_describe(raw)}")
    for i, seed in enumerate(raw):
        check.integer(seed, f"seeds[{i}]", low=0)
        if seed in raw[:i]:
            raise check.fail(f"seeds[{i}]", f"seed {seed} is listed twice")
    return list(raw)


def _parse_resources(raw: Any, trial: dict, check: _Checker) -> dict[str, float]:
    data = check.mapping(raw, "resources", RESOURCE_KEYS)
    resources = {"cpu": data.get("cpu", 1), "gpu": data.get("gpu", 0)}
    for key, value in resources.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise check.fail(f"resources.{key}", f"must be a number, got {_describe(value)}")
    if resources["cpu"] <= 0:
        raise check.fail("resources.cpu", f"must be > 0 (fractions allowed), got {resources['cpu']}")
    if resources["gpu"] < 0:
        raise check.fail("resources.gpu", f"must be >= 0 (0.5 = half a GPU), got {resources['gpu']}")
    if str(trial.get("device", "cpu")).startswith("cuda") and resources["gpu"] == 0:
        raise check.fail("resources.gpu", "is 0 but trial.device is cuda: reserve a GPU share, e.g. gpu: 0.5")
    return resources


def _check_benchmark(trial: dict, space: dict[str, Domain], check: _Checker) -> None:
    """The benchmark name, its benchmark_kwargs and data_root being set, for every value the sweep uses
    (nothing is read: the driver may not hold the data)."""
    for values in _variants(trial, space, ("benchmark", "benchmark_kwargs", "data_root")):
        try:
            count_sessions(values["benchmark"], **values["benchmark_kwargs"])
        except ConfigError as exc:
            key = "benchmark" if str(exc).startswith("benchmark=") else "benchmark_kwargs"
            raise check.fail(_where(key, space), str(exc)) from None
        try:
            check_data_root(values["benchmark"], values["data_root"])
        except ConfigError as exc:
            raise check.fail(_where("data_root", space), str(exc)) from None


def check_model(spec: SweepSpec) -> None:
    """What every trial would otherwise find out after the sweep started: the backbone is a timm model
    that takes backbone_kwargs, every layer_patterns glob matches a linear layer, and the largest rank
    fits every candidate layer. Built on the meta device (no weights, no memory, no download, a
    fraction of a second); ``ckpd-sweep validate`` and ``launch`` run it, ``parse_spec`` does not.
    Raises SpecError naming the spec file and the key."""
    _check_backbone(
        spec.trial, spec.space, _Checker(str(spec.path) if spec.path is not None else "<sweep spec>")
    )


def _check_backbone(trial: dict, space: dict[str, Domain], check: _Checker) -> None:
    rank_domain = space.get("rank")
    ranks = [values["rank"] for values in _variants(trial, space, ("rank",))]
    for values in _variants(trial, space, ("backbone", "backbone_kwargs", "layer_patterns")):
        try:
            with torch.device("meta"):
                backbone = create_backbone(values["backbone"], **values["backbone_kwargs"])
        except ConfigError as exc:
            key = "backbone" if str(exc).startswith("backbone=") else "backbone_kwargs"
            raise check.fail(_where(key, space), str(exc)) from None
        except Exception:  # a model that cannot be built on the meta device: the trial will tell
            continue
        try:
            candidates = find_linear_layers(backbone, values["layer_patterns"])
        except ConfigError as exc:
            raise check.fail(_where("layer_patterns", space), str(exc)) from None
        rank = max(ranks, default=1)
        for name, layer in candidates.items():
            limit = min(layer.in_features, layer.out_features)
            if rank > limit:
                swept = " (the largest swept value)" if rank_domain else ""
                raise check.fail(
                    _where("rank", space),
                    f"rank={rank}{swept} is larger than layer {name} ({layer.out_features}x"
                    f"{layer.in_features}) of {values['backbone']} allows: use rank <= {limit}",
                )


def check_local_inputs(spec: SweepSpec) -> None:
    """Read, on this machine, the files the trials will read: every real dataset under its data_root
    (its tables and session lists, and that every listed image file exists) and every
    backbone_checkpoint (loaded into its backbone). Raises SpecError naming the spec, the key and the
    file. Meant for local runs, where the trials see this disk; images are not decoded, so a corrupt
    image file still fails the trial that reads it."""
    check = _Checker(str(spec.path) if spec.path is not None else "<sweep spec>")
    for values in _variants(spec.trial, spec.space, ("benchmark", "benchmark_kwargs", "data_root")):
        if values["benchmark"] == "icons":  # rendered and cached by ckpd_core itself
            continue
        try:
            build_benchmark(values["benchmark"], values["data_root"], **values["benchmark_kwargs"])
        except CKPDError as exc:
            raise check.fail(_where("data_root", spec.space), str(exc)) from None
    for values in _variants(spec.trial, spec.space, ("backbone", "backbone_kwargs", "backbone_checkpoint")):
        if values["backbone_checkpoint"] is None:
            continue
        try:
            create_backbone(
                values["backbone"], checkpoint=values["backbone_checkpoint"], **values["backbone_kwargs"]
            )
        except CKPDError as exc:
            raise check.fail(_where("backbone_checkpoint", spec.space), str(exc)) from None


# ------------------------------------------------------------------------------------------ helpers


def _absolute_paths(trial: dict) -> None:
    """Relative ``data_root`` / ``backbone_checkpoint`` made absolute from the current folder, as the
    results folder is: Ray runs each trial in a working folder of its own, where they would point
    elsewhere (``~`` is left for each node to expand)."""
    for key in ("data_root", "backbone_checkpoint"):
        value = trial.get(key)
        if isinstance(value, str) and value and "://" not in value:
            path = Path(value).expanduser()
            if not path.is_absolute():
                trial[key] = str(path.resolve())


def _variants(trial: dict, space: dict[str, Domain], keys: tuple[str, ...]) -> list[dict[str, Any]]:
    """Every combination of the values ``keys`` take in the sweep: fixed, the largest of a swept range
    or every swept value, else the default (each combination validated as a TrialConfig)."""
    options = []
    for key in keys:
        if key in space:
            values = space[key].extremes()
            options.append(
                [max(values)] if isinstance(space[key], (IntRange, Uniform, LogUniform)) else values
            )
        else:
            options.append([trial[key]] if key in trial else [None])
    combos = []
    for combo in itertools.product(*options):
        chosen = {k: v for k, v in zip(keys, combo, strict=True) if k in space or k in trial}
        try:
            config = TrialConfig.from_dict(copy.deepcopy({**trial, **chosen}))
        except (ValueError, TypeError):  # settings that do not go together are refused elsewhere
            continue
        combos.append({key: getattr(config, key) for key in keys})
    return combos


def _where(key: str, space: dict[str, Domain]) -> str:
    return f"space.{key}" if key in space else f"trial.{key}"


def yaml_problem(exc: yaml.YAMLError) -> str:
    """Where and what a YAML syntax error is, on one line: ``at line 3, column 7: <problem> (<context>)``."""
    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        return ": " + " ".join(str(exc).split())
    mark = exc.problem_mark
    text = f" at line {mark.line + 1}, column {mark.column + 1}: {exc.problem}"
    if exc.context:
        at = exc.context_mark
        text += f" ({exc.context}" + (f" at line {at.line + 1}, column {at.column + 1})" if at else ")")
    return text


def _config_error(values: dict) -> Exception | None:
    """What TrialConfig raises for these values (a ConfigError, or a TypeError for a value of the wrong
    type), or None if they make a valid trial."""
    try:
        TrialConfig.from_dict(values)
    except (ValueError, TypeError, AttributeError) as exc:
        return exc
    return None


def _explain(error: Exception, key: str, value: Any) -> str:
    if isinstance(error, ConfigError):
        return f"{error}{_yaml_hint(value)}"
    return f"{key} expects {_SETTING_TYPES[key]}, got {_describe(value)}{_yaml_hint(value)}"


def _builds(build: Callable[[], Any]) -> bool:
    try:
        build()
    except (ValueError, TypeError):
        return False
    return True


def _culprit(values: dict, problem: str, works: Callable[[dict], bool]) -> str | None:
    """The key an error is about: the first one the message names, else one whose removal fixes it."""
    named = [(m.start(), key) for key in values if (m := re.search(rf"\b{re.escape(str(key))}\b", problem))]
    if named:
        return min(named)[1]
    for key in values:
        if works({k: v for k, v in values.items() if k != key}):
            return key
    return None


def _kind(value: Any) -> str:
    return "nothing" if value is None else f"a {type(value).__name__} ({value!r})"


def _describe(value: Any) -> str:
    return repr(value) if value is None or isinstance(value, (bool, int, float)) else _kind(value)


def _yaml_hint(value: Any) -> str:
    """YAML 1.1 reads 1e-4 (no dot) as text: say so when a string is really a number."""
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return ""
        return f" (YAML read {value} as text: write numbers like 1.0e-4, with a dot and a signed exponent)"
    return ""
