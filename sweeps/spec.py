"""The YAML sweep spec: fixed trial settings, a search space, the search, the pruner, metric and resources.

Everything is checked before a sweep starts, so a bad spec fails with one message naming file and key.
Pydantic checks what each key may hold (``_SpecFile`` and the models in it); the code here checks what
needs several keys or a look elsewhere: trial settings that go together, optuna's arguments, the data.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import importlib.util
import inspect
import itertools
import math
import random
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union

import optuna
import torch
import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    FiniteFloat,
    NonNegativeInt,
    PositiveInt,
    Tag,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from ckpd_core import (
    SESSION_METRICS,
    CKPDError,
    ConfigError,
    TrialConfig,
    build_benchmark,
    check_rank,
    find_linear_layers,
)
from ckpd_core.data import check_data_root, count_sessions
from ckpd_core.metrics import with_validation
from ckpd_core.models.backbone import create_backbone
from ckpd_core.validation import STRICT, Number, Problem, dotted, pair, problem

from .errors import SpecError
from .objective import DEFAULT_OBJECTIVE, OBJECTIVES, Objective

ALGORITHMS = ("grid", "random", "optuna")
METRICS = with_validation(SESSION_METRICS)
TRACKERS = ("tensorboard", "mlflow", "wandb")  # experiment trackers a sweep can log to (``--log``)
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
# The trial settings a spec may fix or sweep (the seed comes from the top-level seeds).
_Setting = Literal[tuple(f.name for f in dataclasses.fields(TrialConfig) if f.name != "seed")]
# ``key:`` with nothing after it means the key's empty default.
_EMPTY_IF_NULL = BeforeValidator(lambda value: {} if value is None else value)


class _Invalid(Exception):
    """A problem at one key of a spec; the public functions add the file and raise SpecError."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")


# ----------------------------------------------------------------------------------------- domains


class _Domain(BaseModel):
    """The values a swept setting takes, written ``{keyword: ...}`` in YAML."""

    model_config = ConfigDict(**STRICT, frozen=True)
    keyword: ClassVar[str]

    def to_yaml(self) -> dict[str, Any]:
        values = self.model_dump(exclude_defaults=True)
        return {key: list(value) if isinstance(value, tuple) else value for key, value in values.items()}


class _Values(_Domain):
    """A finite list of values; subclasses differ in whether the searcher picks or a grid crosses them."""

    @property
    def values(self) -> tuple[Any, ...]:
        return getattr(self, self.keyword)

    @model_validator(mode="after")
    def _distinct(self) -> _Values:
        repeated = [value for i, value in enumerate(self.values) if value in self.values[:i]]
        if repeated:
            raise ValueError(f"{self.keyword} lists {repeated[0]!r} more than once")
        return self

    def extremes(self) -> list[Any]:
        return list(self.values)

    def to_optuna(self, trial: optuna.Trial, name: str) -> Any:
        return trial.suggest_categorical(name, list(self.values))

    def sample(self, rng: random.Random) -> Any:
        return rng.choice(self.values)


_ValueList = Annotated[
    tuple[Any, ...], Field(min_length=1, strict=False, description="a non-empty list of values")
]


class Choice(_Values):
    """A categorical value the searcher picks (crossed like a grid under ``algorithm: grid``)."""

    keyword = "choice"
    choice: _ValueList


class Grid(_Values):
    """Values run exhaustively: every one is crossed with every other grid value and every seed."""

    keyword = "grid"
    grid: _ValueList


_Integers = pair(int, "two integers")
_Numbers = pair(FiniteFloat, "two numbers")
_PositiveNumbers = pair(Annotated[FiniteFloat, Field(gt=0)], "two numbers > 0")


class _Range(_Domain):
    """A range ``{keyword: [low, high]}``; ``low`` must be below ``high``."""

    @property
    def low(self) -> Any:
        return getattr(self, self.keyword)[0]

    @property
    def high(self) -> Any:
        return getattr(self, self.keyword)[1]

    @model_validator(mode="after")
    def _ordered(self) -> _Range:
        if self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        return self

    def extremes(self) -> list[Any]:
        return [self.low, self.high]


class IntRange(_Range):
    """An integer in [low, high] inclusive, optionally sampled log-uniformly."""

    keyword = "int"
    int: _Integers
    log: bool = False

    @model_validator(mode="after")
    def _log_from_one(self) -> IntRange:
        if self.log and self.low < 1:
            raise ValueError(f"a log-scaled int range needs low >= 1, got {self.low}")
        return self

    def to_optuna(self, trial: optuna.Trial, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high, log=self.log)

    def sample(self, rng: random.Random) -> int:
        if not self.log:
            return rng.randint(self.low, self.high)
        # floor(exp(U(log low, log(high + 1)))) gives each integer k the mass log((k + 1) / k).
        return min(self.high, math.floor(math.exp(rng.uniform(math.log(self.low), math.log(self.high + 1)))))


class Uniform(_Range):
    """A float drawn uniformly from [low, high]."""

    keyword = "uniform"
    uniform: _Numbers

    def to_optuna(self, trial: optuna.Trial, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high)

    def sample(self, rng: random.Random) -> float:
        return rng.uniform(self.low, self.high)


class LogUniform(_Range):
    """A positive float whose logarithm is uniform on [log low, log high]."""

    keyword = "loguniform"
    loguniform: _PositiveNumbers

    def to_optuna(self, trial: optuna.Trial, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, log=True)

    def sample(self, rng: random.Random) -> float:
        return math.exp(rng.uniform(math.log(self.low), math.log(self.high)))


_DOMAINS = (Choice, Grid, IntRange, Uniform, LogUniform)


def _domain_kind(raw: Any) -> str | None:
    """Which domain a space entry is: its one key besides ``log`` (which only ``int`` takes)."""
    kinds = [key for key in raw if key != "log"] if isinstance(raw, dict) else []
    return kinds[0] if len(kinds) == 1 and (kinds[0] == "int" or "log" not in raw) else None


# A space entry: the domain its key names (Union over a computed tuple, which ``|`` cannot write).
Domain = Annotated[
    Union[tuple(Annotated[cls, Tag(cls.keyword)] for cls in _DOMAINS)],  # noqa: UP007
    Discriminator(_domain_kind),
    Field(
        description=f"exactly one of {', '.join(cls.keyword for cls in _DOMAINS)} (int also takes "
        "log: true), e.g. {choice: [4, 8, 16]} or {loguniform: [1.0e-4, 1.0e-2]}"
    ),
]

# ------------------------------------------------------------------------------------ spec objects


class SearchSpec(BaseModel):
    """How non-grid values are chosen; ``sampler`` and ``sampler_args`` apply to ``optuna`` only.

    ``seed`` seeds the sampler (default: the sweep's first trial seed), so a search can be repeated
    with another sampler seed to check that its conclusions do not depend on the path it took.
    """

    model_config = STRICT
    algorithm: Literal[ALGORITHMS] = "optuna"
    sampler: Literal[tuple(SAMPLERS)] = "tpe"
    sampler_args: Annotated[dict[str, Any], _EMPTY_IF_NULL] = {}
    seed: NonNegativeInt | None = None

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


_MARGIN = "a number in [0, 1) in units of the objective (0.002 = 0.2 accuracy points)"


class PrunerSpec(BaseModel):
    """An Optuna pruner by name; ``patient`` holds its ``wrapped_pruner`` as a nested PrunerSpec or None.

    ``margin`` (in units of the objective, say 0.002 = 0.2 accuracy points): a run is pruned only if
    the pruner would still prune it with its value that much better, so a gap smaller than the
    seed-to-seed noise never stops a run.
    """

    model_config = STRICT
    name: Literal[tuple(PRUNERS)]
    args: Annotated[dict[str, Any], _EMPTY_IF_NULL] = {}
    margin: Annotated[float, Field(ge=0, lt=1, description=_MARGIN)] = 0.0

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


_Pruner = Annotated[
    PrunerSpec | None,
    BeforeValidator(lambda value: None if value == "none" else value),
    Field(description="null / none or {name: ..., args: {...}}"),
]


class _Resources(BaseModel):
    """What each trial reserves: CPUs and a share of a GPU (fractions allowed: 0.5 = half a GPU)."""

    model_config = STRICT
    cpu: Annotated[Number, Field(gt=0)] = 1
    gpu: Annotated[Number, Field(ge=0)] = 0


class _SpecFile(BaseModel):
    """Every key a sweep spec file may hold, what it allows and its default (fields as in SweepSpec)."""

    model_config = STRICT
    name: Annotated[
        str,
        Field(
            pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
            description="a usable sweep name (letters, digits, '.', '_', '-')",
        ),
    ]
    description: str = ""
    trial: Annotated[dict[_Setting, Any], _EMPTY_IF_NULL] = {}
    space: Annotated[dict[_Setting, Domain], _EMPTY_IF_NULL] = {}
    search: Annotated[SearchSpec, _EMPTY_IF_NULL] = Field(default_factory=SearchSpec)
    pruner: _Pruner = None
    metric: Literal[METRICS] = "val_acc_all"
    objective: Annotated[
        Literal[OBJECTIVES],
        Field(
            description="avg (mean of the metric over all sessions, the default), last (the final "
            "session) or hm (harmonic mean of base and novel accuracy at the end)"
        ),
    ] = DEFAULT_OBJECTIVE
    mode: Annotated[Literal["max", "min"], Field(description="max or min")] = "max"
    num_samples: PositiveInt = 1
    seeds: Annotated[
        list[NonNegativeInt], Field(min_length=1, description="a non-empty list of integers >= 0")
    ] = [0]
    resources: Annotated[_Resources, _EMPTY_IF_NULL] = Field(default_factory=_Resources)
    max_concurrent: PositiveInt | None = None
    max_failures: Annotated[int, Field(ge=-1)] = 1
    results: Annotated[str, Field(min_length=1, description="a folder path")] = "results"
    log: Annotated[
        list[Literal[TRACKERS]], Field(description="a list of trackers: tensorboard, mlflow, wandb")
    ] = []


@dataclass
class SweepSpec:
    """A validated sweep: build it with ``load_spec`` or ``parse_spec``, which check every field."""

    name: str
    path: Path | None
    description: str
    trial: dict[str, Any]
    space: dict[str, Domain]
    search: SearchSpec
    pruner: PrunerSpec | None
    metric: str
    objective: Objective
    mode: str
    num_samples: int
    seeds: list[int]
    resources: dict[str, float]
    max_concurrent: int | None
    max_failures: int
    results: str
    log: list[str] = field(default_factory=list)  # experiment trackers (see ``trackers``)

    def grid_axes(self) -> list[tuple[str, tuple[Any, ...]]]:
        """The crossed settings and their values: grids, and choices too under ``algorithm: grid``."""
        search_crosses = Grid if self.search.algorithm != "grid" else (Grid, Choice)
        return [
            (key, domain.values) for key, domain in self.space.items() if isinstance(domain, search_crosses)
        ]

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
        return build_trial_config(self.trial, params, seed)

    @property
    def max_runs(self) -> int:
        """The most runs the sweep can start: every configuration once per seed (twins and pruned
        configurations start fewer)."""
        return TrialPlan(self).size * len(self.seeds)

    @property
    def num_sessions(self) -> int:
        """Sessions per run, without reading any data (the driver, or ``status``, may not hold it)."""
        config = self.trial_config({k: d.extremes()[0] for k, d in self.space.items()}, self.seeds[0])
        return count_sessions(config.benchmark, **config.benchmark_kwargs)

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
                "log": self.log,
            }
        )


class TrialPlan:
    """The grid points a sweep samples, in order: ``num_samples`` passes over the crossed values (the
    last axis varying fastest), each sample drawing the other domains. A point is computed from its
    index, so neither a huge ``num_samples`` nor a large grid is ever listed in memory."""

    def __init__(self, spec: SweepSpec) -> None:
        self.axes = spec.grid_axes()
        self.grid_size = math.prod(len(values) for _, values in self.axes)
        self.size = spec.num_samples * self.grid_size

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self.size:
            raise IndexError(index)
        point, rest = [], index % self.grid_size
        for name, values in reversed(self.axes):  # the last axis varies fastest, as in itertools.product
            rest, i = divmod(rest, len(values))
            point.append((name, values[i]))
        return dict(reversed(point))


# --------------------------------------------------------------------------------------- loading


def build_trial_config(fixed: dict[str, Any], params: dict[str, Any], seed: int) -> TrialConfig:
    """A run's TrialConfig: a copy of the fixed settings with the sampled ``params`` and ``seed`` on top."""
    return TrialConfig.from_dict(copy.deepcopy({**fixed, **params, "seed": seed}))


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
    if name_default is None:
        name_default = path.stem if path is not None else "sweep"
    if not isinstance(data, dict):
        raise SpecError(
            f"{_label(path)}: the top level must be a mapping of sweep settings, got {_kind(data)}"
        )
    with _in_file(path):
        for section in ("trial", "space"):
            if isinstance(data.get(section), dict) and "seed" in data[section]:
                raise _Invalid(f"{section}.seed", "seeds come from the top-level seeds: list, not from here")
        file = _validated(_SpecFile, {"name": name_default, **data})
        for key in file.space:
            if key in file.trial:
                raise _Invalid(f"space.{key}", "is both fixed under trial: and swept under space:; keep one")
        _absolute_paths(file.trial)
        _check_settings(file.trial, file.space)
        _check_search(file.search, file.space)
        _check_pruner(file.pruner, ("pruner",))
        try:
            objective = Objective(file.objective, file.metric)
        except ValueError as exc:
            raise _Invalid("objective", str(exc)) from None
        if file.search.algorithm == "grid" and file.num_samples != 1:
            raise _Invalid(
                "num_samples",
                f"is {file.num_samples}, but a grid search runs each point once per seed: "
                "use 1 and list repeats under seeds",
            )
        for i, seed in enumerate(file.seeds):
            if seed in file.seeds[:i]:
                raise _Invalid(f"seeds[{i}]", f"seed {seed} is listed twice")
        if str(file.trial.get("device", "cpu")).startswith("cuda") and file.resources.gpu == 0:
            raise _Invalid(
                "resources.gpu", "is 0 but trial.device is cuda: reserve a GPU share, e.g. gpu: 0.5"
            )
        _check_benchmark(file.trial, file.space)
    return SweepSpec(path=path, **{**dict(file), "objective": objective, "resources": dict(file.resources)})


# ------------------------------------------------------------------------------------ validation


@contextlib.contextmanager
def _in_file(path: Path | None) -> Iterator[None]:
    """Raise the SpecError, naming the spec file, of a problem found inside."""
    try:
        yield
    except _Invalid as exc:
        raise SpecError(f"{_label(path)}: {exc}") from None


def _label(path: Path | None) -> str:
    return str(path) if path is not None else "<sweep spec>"


def _validated(expected: Any, data: Any, at: tuple[str | int, ...] = ()) -> Any:
    """``data`` as the type ``expected`` (found at ``at`` in the spec); pydantic's first error as ours."""
    try:
        return TypeAdapter(expected).validate_python(data)
    except ValidationError as exc:
        raise _invalid(problem(exc, expected), at) from None


def _invalid(found: Problem, at: tuple[str | int, ...]) -> _Invalid:
    """A problem pydantic found, worded: the key, what is wrong, what is allowed."""
    loc, inner = (*at, *found.loc), ""
    if loc[:1] == ("space",) and len(loc) > 2:  # inside a domain: name the space entry (loc[2] is its kind)
        loc, inner = loc[:2], f"{dotted(loc[3:])} " if len(loc) > 3 else ""
    key = dotted(loc)
    if found.kind == "unknown":
        return _Invalid(key, f"unknown key{found.hint}; allowed keys: {found.allowed}")
    if found.kind == "custom":
        return _Invalid(key, found.allowed)
    if found.kind == "choice":
        return _Invalid(key, f"{inner}{found.value!r} is unknown; choose {found.allowed}")
    got = f"{_describe(found.value)}{_yaml_hint(found.value)}"
    return _Invalid(key, f"{inner}must be {found.allowed}, got {got}")


def _check_settings(trial: dict, space: dict[str, Domain]) -> None:
    """The fixed settings make a trial, and so do they with either end of every swept range or value."""
    error = _config_error(trial)
    if error is not None:
        key = _culprit(trial, str(error), lambda values: _config_error(values) is None)
        raise _Invalid(f"trial.{key}" if key else "trial", f"{error}{_yaml_hint(trial.get(key))}")
    for key, domain in space.items():
        for value in domain.extremes():
            error = _config_error({**trial, key: value})
            if error is not None:
                raise _Invalid(f"space.{key}", f"{error}{_yaml_hint(value)}")


def _check_search(search: SearchSpec, space: dict[str, Domain]) -> None:
    """The sampler's arguments against its signature, and a space the search can handle."""
    if search.algorithm != "optuna":
        for key in ("sampler", "sampler_args"):
            if key in search.model_fields_set:
                raise _Invalid(f"search.{key}", f"only applies to algorithm optuna, not {search.algorithm}")
    else:
        package = _SAMPLER_PACKAGES.get(search.sampler)
        if package and importlib.util.find_spec(package) is None:
            raise _Invalid(
                "search.sampler", f"{search.sampler} needs the {package} package: pip install {package}"
            )
        cls = SAMPLERS[search.sampler]
        accepted = [p for p in inspect.signature(cls).parameters if p != "seed"]
        for arg in search.sampler_args:
            if arg == "seed":
                raise _Invalid("search.sampler_args.seed", "set the sampler's seed as search.seed")
            if arg not in accepted:
                raise _Invalid(
                    f"search.sampler_args.{arg}",
                    f"not an argument of optuna.samplers.{cls.__name__}; arguments: {', '.join(accepted)}",
                )
        try:
            search.build_sampler()
        except (ValueError, TypeError) as exc:
            key = _culprit(
                search.sampler_args,
                str(exc),
                lambda args: _builds(search.model_copy(update={"sampler_args": args}).build_sampler),
            )
            raise _Invalid(f"search.sampler_args.{key}" if key else "search.sampler_args", str(exc)) from None
    for key, domain in space.items():
        if search.algorithm == "grid" and not isinstance(domain, _Values):
            raise _Invalid(
                f"space.{key}",
                f"{domain.to_yaml()} is a range, but search.algorithm grid only enumerates "
                "values: use choice or grid, or search.algorithm random / optuna",
            )
        if search.algorithm == "optuna" and isinstance(domain, Choice):
            for value in domain.values:
                if value is not None and not isinstance(value, (bool, int, float, str)):
                    raise _Invalid(
                        f"space.{key}",
                        f"Optuna can only choose null, booleans, numbers or text, not "
                        f"{_describe(value)}: sweep these values with grid instead of choice",
                    )


def _check_pruner(pruner: PrunerSpec | None, at: tuple[str, ...]) -> None:
    """The pruner's arguments against its signature (a wrapped pruner's too), and that it builds."""
    if pruner is None:
        return
    cls = PRUNERS[pruner.name]
    params = inspect.signature(cls).parameters
    for arg in pruner.args:
        if arg not in params:
            raise _Invalid(
                dotted((*at, "args", arg)),
                f"not an argument of optuna.pruners.{cls.__name__}; arguments: {', '.join(params)}",
            )
    for param in params.values():
        if param.default is param.empty and param.name not in pruner.args:
            raise _Invalid(dotted((*at, "args", param.name)), f"optuna.pruners.{cls.__name__} requires it")
    if pruner.name == "patient":
        wrapped_at = (*at, "args", "wrapped_pruner")
        pruner.args["wrapped_pruner"] = _validated(_Pruner, pruner.args["wrapped_pruner"], wrapped_at)
        _check_pruner(pruner.args["wrapped_pruner"], wrapped_at)
    try:
        pruner.build()
    except (ValueError, TypeError) as exc:
        culprit = _culprit(
            pruner.args, str(exc), lambda args: _builds(PrunerSpec(name=pruner.name, args=args).build)
        )
        raise _Invalid(dotted((*at, "args", culprit) if culprit else (*at, "args")), str(exc)) from None


def _check_benchmark(trial: dict, space: dict[str, Domain]) -> None:
    """The benchmark name, its benchmark_kwargs and data_root being set, for every value the sweep uses
    (nothing is read: the driver may not hold the data)."""
    for values in _variants(trial, space, ("benchmark", "benchmark_kwargs", "data_root")):
        try:
            count_sessions(values["benchmark"], **values["benchmark_kwargs"])
        except ConfigError as exc:
            key = "benchmark" if str(exc).startswith("benchmark=") else "benchmark_kwargs"
            raise _Invalid(_where(key, space), str(exc)) from None
        try:
            check_data_root(values["benchmark"], values["data_root"])
        except ConfigError as exc:
            raise _Invalid(_where("data_root", space), str(exc)) from None


def check_model(spec: SweepSpec) -> None:
    """What every trial would otherwise find out after the sweep started: the backbone is a timm model
    that takes backbone_kwargs, every layer_patterns glob matches a linear layer, and the largest rank
    fits every candidate layer. Built on the meta device (no weights, no memory, no download, a
    fraction of a second); ``ckpd-sweep validate`` and ``launch`` run it, ``parse_spec`` does not.
    Raises SpecError naming the spec file and the key."""
    with _in_file(spec.path):
        _check_backbone(spec.trial, spec.space)


def _check_backbone(trial: dict, space: dict[str, Domain]) -> None:
    rank_domain = space.get("rank")
    ranks = [values["rank"] for values in _variants(trial, space, ("rank",))]
    for values in _variants(trial, space, ("backbone", "backbone_kwargs", "layer_patterns")):
        try:
            with torch.device("meta"):
                backbone = create_backbone(values["backbone"], **values["backbone_kwargs"])
        except ConfigError as exc:
            key = "backbone" if str(exc).startswith("backbone=") else "backbone_kwargs"
            raise _Invalid(_where(key, space), str(exc)) from None
        except Exception:  # a model that cannot be built on the meta device: the trial will tell
            continue
        try:
            candidates = find_linear_layers(backbone, values["layer_patterns"])
        except ConfigError as exc:
            raise _Invalid(_where("layer_patterns", space), str(exc)) from None
        rank = max(ranks, default=1)
        swept = " (the largest swept value)" if rank_domain else ""
        try:
            check_rank(rank, candidates, rank_text=f"rank={rank}{swept}")
        except ConfigError as exc:
            raise _Invalid(_where("rank", space), f"{exc} (backbone {values['backbone']})") from None


def check_local_inputs(spec: SweepSpec) -> None:
    """Read, on this machine, the files the trials will read: every real dataset under its data_root
    (its tables and session lists, and that every listed image file exists) and every
    backbone_checkpoint (loaded into its backbone). Raises SpecError naming the spec, the key and the
    file. Meant for local runs, where the trials see this disk; images are not decoded, so a corrupt
    image file still fails the trial that reads it."""
    trial, space = spec.trial, spec.space
    with _in_file(spec.path):
        for values in _variants(trial, space, ("benchmark", "benchmark_kwargs", "data_root")):
            if values["benchmark"] == "icons":  # rendered and cached by ckpd_core itself
                continue
            try:
                build_benchmark(values["benchmark"], values["data_root"], **values["benchmark_kwargs"])
            except CKPDError as exc:
                raise _Invalid(_where("data_root", space), str(exc)) from None
        for values in _variants(trial, space, ("backbone", "backbone_kwargs", "backbone_checkpoint")):
            if values["backbone_checkpoint"] is None:
                continue
            try:
                create_backbone(
                    values["backbone"], checkpoint=values["backbone_checkpoint"], **values["backbone_kwargs"]
                )
            except CKPDError as exc:
                raise _Invalid(_where("backbone_checkpoint", space), str(exc)) from None


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
        except ConfigError:  # settings that do not go together are refused elsewhere
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


def _config_error(values: dict) -> ConfigError | None:
    """What TrialConfig raises for these values, or None if they make a valid trial."""
    try:
        TrialConfig.from_dict(values)
    except ConfigError as exc:
        return exc
    return None


def _builds(build: Callable[[], Any]) -> bool:
    try:
        build()
    except (ValueError, TypeError):
        return False
    return True


def _culprit(values: dict, message: str, works: Callable[[dict], bool]) -> str | None:
    """The key an error is about: the first one the message names, else one whose removal fixes it."""
    named = [(m.start(), key) for key in values if (m := re.search(rf"\b{re.escape(str(key))}\b", message))]
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
