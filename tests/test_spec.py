"""Sweep specs: the shipped ones validate, every bad input is one SpecError naming file and key."""

from __future__ import annotations

import math
import random
from pathlib import Path

import optuna
import pytest
import yaml

from ckpd_core import TrialConfig
from sweeps.folder import sweep_location
from sweeps.spec import (
    Choice,
    Grid,
    IntRange,
    LogUniform,
    SpecError,
    Uniform,
    check_model,
    load_spec,
    parse_spec,
)

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted((REPO / "search_spaces").rglob("*.yaml"))
FULL_SPEC = """
name: every-domain
description: one of each domain, a nested pruner and every top-level key
trial: {top_n: null, steps: 5}
space:
  rank: {int: [2, 64], log: true}
  replay_per_class: {int: [1, 10]}
  asr_threshold: {uniform: [0.05, 0.5]}
  lr: {loguniform: [1.0e-4, 1.0e-2]}
  neck: {choice: [mlp, none]}
  peft_mode: {grid: [ckpd, lora, full]}
search: {algorithm: optuna, sampler: tpe, sampler_args: {n_startup_trials: 3}}
pruner:
  name: patient
  args: {patience: 2, wrapped_pruner: {name: median, args: {n_warmup_steps: 1}}}
metric: val_acc_base
mode: min
num_samples: 4
seeds: [3, 1]
resources: {cpu: 0.5, gpu: 0.25}
max_concurrent: 3
max_failures: 2
results: out
"""


def write(tmp_path: Path, text: str, name: str = "bad-spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture
def full_spec(tmp_path):
    return load_spec(write(tmp_path, FULL_SPEC, "full.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(REPO)))
def test_shipped_specs_validate_and_build_trials(path):
    spec = load_spec(path)
    assert parse_spec(spec.to_dict(), path=path) == spec
    assert spec.search.algorithm in ("grid", "optuna")
    for point in spec.grid_points():
        params = {**point, **{k: d.extremes()[0] for k, d in spec.space.items() if k not in point}}
        config = spec.trial_config(params, spec.seeds[-1])
        assert isinstance(config, TrialConfig) and config.seed == spec.seeds[-1]
        assert all(getattr(config, key) == value for key, value in {**spec.trial, **params}.items())
    if "paper" in path.parts:
        assert spec.trial["device"] == "cuda" and spec.resources == {"cpu": 4, "gpu": 0.5}
        assert spec.name == f"paper-{path.stem}"


def test_shipped_specs_have_distinct_results_folders():
    names = [load_spec(path).name for path in SHIPPED]
    assert len(SHIPPED) == 8 and len(set(names)) == len(names)


def test_main_rank_spec():
    spec = load_spec(REPO / "search_spaces" / "rank.yaml")
    assert spec.name == "rank" and spec.trial["benchmark"] == "icons"
    assert spec.space == {"rank": Choice(choice=(2, 4, 8, 16, 32))}
    assert (spec.search.algorithm, spec.search.sampler) == ("optuna", "tpe")
    pruner_args = {"percentile": 75, "n_startup_trials": 2, "n_warmup_steps": 2}
    assert (spec.pruner.name, spec.pruner.args) == ("percentile", pruner_args)
    assert (spec.metric, spec.objective.kind, spec.mode, spec.num_samples) == ("val_acc_all", "avg", "max", 8)
    assert spec.seeds == [0, 1, 2, 3] and spec.trial["base_seed"] == 0  # seeds share one base session
    assert spec.pruner.margin == 0.002
    assert (spec.resources, spec.max_concurrent) == ({"cpu": 1, "gpu": 0}, 2)


def test_shipped_specs_name_the_objective_and_run_several_seeds_on_a_shared_base_session():
    for path in SHIPPED:
        raw = yaml.safe_load(path.read_text())
        spec = load_spec(path)
        assert raw["objective"] == "avg" and len(spec.seeds) >= 3, path
        assert spec.trial["base_seed"] == 0, path


def test_variants_spec_runs_every_mode_over_three_seeds():
    spec = load_spec(REPO / "search_spaces" / "variants.yaml")
    modes = [point["peft_mode"] for point in spec.grid_points()]
    assert modes == ["ckpd", "svd", "asvd", "pissa", "lora", "full", "frozen"]
    assert spec.seeds == [0, 1, 2] and spec.pruner is None and spec.search.algorithm == "grid"


def test_full_spec_fields_and_round_trip(full_spec, tmp_path):
    assert full_spec.space == {
        "rank": IntRange(int=(2, 64), log=True),
        "replay_per_class": IntRange(int=(1, 10)),
        "asr_threshold": Uniform(uniform=(0.05, 0.5)),
        "lr": LogUniform(loguniform=(1e-4, 1e-2)),
        "neck": Choice(choice=("mlp", "none")),
        "peft_mode": Grid(grid=("ckpd", "lora", "full")),
    }
    assert full_spec.pruner.args["wrapped_pruner"].name == "median"
    assert (full_spec.seeds, full_spec.resources) == ([3, 1], {"cpu": 0.5, "gpu": 0.25})
    assert parse_spec(full_spec.to_dict(), path=full_spec.path) == full_spec
    dumped = write(tmp_path, yaml.safe_dump(full_spec.to_dict()), "full.yaml")
    assert load_spec(dumped) == full_spec


def test_name_defaults_to_file_stem(tmp_path):
    assert load_spec(write(tmp_path, "seeds: [0]\n", "my-sweep.yaml")).name == "my-sweep"
    assert parse_spec({}).name == "sweep"
    assert parse_spec({}, name_default="other").name == "other"


def test_grid_points_cross_every_grid_value(full_spec):
    spec = parse_spec(
        {
            "space": {
                "peft_mode": {"grid": ["ckpd", "lora", "full"]},
                "continuous": {"grid": [True, False]},
                "rank": {"choice": [4, 8]},
            }
        }
    )
    points = spec.grid_points()
    assert len(points) == 6
    assert {(p["peft_mode"], p["continuous"]) for p in points} == {
        (mode, cont) for mode in ("ckpd", "lora", "full") for cont in (True, False)
    }
    assert all("rank" not in p for p in points)  # the searcher picks a choice...
    spec.search.algorithm = "grid"
    assert len(spec.grid_points()) == 12  # ...a grid search crosses it
    assert parse_spec({"space": {"rank": {"int": [2, 8]}}}).grid_points() == [{}]
    assert len(full_spec.grid_points()) == 3


def test_optuna_suggestions_stay_in_bounds(full_spec):
    study = optuna.create_study(direction="minimize", sampler=full_spec.build_sampler())
    for i in range(12):
        trial = study.ask()
        values = {k: d.to_optuna(trial, k) for k, d in full_spec.space.items()}
        assert isinstance(values["rank"], int) and 2 <= values["rank"] <= 64
        assert isinstance(values["replay_per_class"], int) and 1 <= values["replay_per_class"] <= 10
        assert 0.05 <= values["asr_threshold"] <= 0.5 and 1e-4 <= values["lr"] <= 1e-2
        assert values["neck"] in ("mlp", "none") and values["peft_mode"] in ("ckpd", "lora", "full")
        full_spec.trial_config(values, seed=0)  # every suggestion is a valid trial
        study.tell(trial, float(i))
    dists = study.trials[0].distributions
    assert dists["rank"].log and not dists["replay_per_class"].log and dists["lr"].log
    assert not dists["asr_threshold"].log


def test_random_samples_stay_in_bounds(full_spec):
    rng = random.Random(0)
    draws = [{k: d.sample(rng) for k, d in full_spec.space.items()} for _ in range(300)]
    ranks = [d["rank"] for d in draws]
    assert all(isinstance(r, int) and 2 <= r <= 64 for r in ranks) and {2, 64} <= set(ranks)
    assert sum(r <= 8 for r in ranks) > 100  # log-uniform: [2, 8] is a third of [2, 64] in log space
    assert all(0.05 <= d["asr_threshold"] <= 0.5 and 1e-4 <= d["lr"] <= 1e-2 for d in draws)
    assert sum(math.log10(d["lr"]) < -3 for d in draws) > 100
    assert {d["neck"] for d in draws} == {"mlp", "none"}


def test_trial_config_and_results_dir(full_spec):
    config = full_spec.trial_config({"rank": 8, "asr_threshold": 0.2}, seed=5)
    assert (config.rank, config.asr_threshold, config.top_n) == (8, 0.2, None)
    assert (config.steps, config.seed) == (5, 5)
    assert sweep_location(full_spec).local_path == Path("out").resolve() / "every-domain"
    assert sweep_location(full_spec, "/scratch").local_path == Path("/scratch/every-domain")


def _median_prunes_at(pruner: optuna.pruners.BasePruner, completed: int, step: int) -> bool:
    """Whether a trial far below ``completed`` good trials is pruned when it reports at ``step``."""
    study = optuna.create_study(direction="maximize", pruner=pruner)
    for _ in range(completed):
        good = study.ask()
        for s in range(3):
            good.report(0.9, s)
        study.tell(good, 0.9)
    bad = study.ask()
    for s in range(step + 1):
        bad.report(0.1, s)
    return bad.should_prune()


def test_build_pruner_applies_the_args():
    spec = load_spec(REPO / "search_spaces" / "rank.yaml")  # percentile 75, n_startup_trials 2, warm-up 2
    assert type(spec.build_pruner()) is optuna.pruners.PercentilePruner
    assert spec.pruner.judges_best_so_far
    assert not _median_prunes_at(spec.build_pruner(), completed=2, step=1)  # warm-up sessions
    assert _median_prunes_at(spec.build_pruner(), completed=2, step=2)
    assert not _median_prunes_at(spec.build_pruner(), completed=1, step=2)  # too few finished runs
    assert not _median_prunes_at(optuna.pruners.PercentilePruner(75), completed=2, step=2)  # defaults differ


@pytest.mark.parametrize(
    "pruner, cls, attribute, value",
    [
        ({"name": "percentile", "args": {"percentile": 25.0}}, "PercentilePruner", "_percentile", 25.0),
        (
            {"name": "successive_halving", "args": {"reduction_factor": 2}},
            "SuccessiveHalvingPruner",
            "_reduction_factor",
            2,
        ),
        ({"name": "hyperband", "args": {"max_resource": 9}}, "HyperbandPruner", "_max_resource", 9),
        ({"name": "wilcoxon", "args": {"p_threshold": 0.05}}, "WilcoxonPruner", "_p_threshold", 0.05),
        (
            {"name": "patient", "args": {"patience": 3, "wrapped_pruner": None}},
            "PatientPruner",
            "_patience",
            3,
        ),
    ],
)
def test_build_pruner_classes(pruner, cls, attribute, value):
    built = parse_spec({"pruner": pruner}).build_pruner()
    assert type(built) is getattr(optuna.pruners, cls) and getattr(built, attribute) == value


def test_patient_wraps_the_nested_pruner(full_spec):
    built = full_spec.build_pruner()
    assert type(built) is optuna.pruners.PatientPruner and built._patience == 2
    assert type(built._wrapped_pruner) is optuna.pruners.MedianPruner


@pytest.mark.parametrize("pruner", [None, "none"])
def test_no_pruner_is_nop(pruner):
    assert type(parse_spec({"pruner": pruner}).build_pruner()) is optuna.pruners.NopPruner


# Every bad spec: (id, YAML text, the key the message names (None: the file itself), a phrase of it).
# tests/test_bad_input.py runs each through the CLI too; docs/bad_input.md quotes most of them.
BAD_SPECS = [
    # the file
    ("not-yaml", "space: {rank: [1, 2\n", None, "not valid YAML at line 2, column 1"),
    ("tab-indent", "trial:\n\trank: 4\n", None, "not valid YAML at line 2, column 1: found character '\\t'"),
    (
        "top-level-list",
        "- rank\n- lr\n",
        None,
        "the top level must be a mapping of sweep settings, got a list",
    ),
    (
        "top-level-numbers",
        "- 1\n- 2\n",
        None,
        "the top level must be a mapping of sweep settings, got a list",
    ),
    ("empty-file", "", None, "the top level must be a mapping of sweep settings, got nothing"),
    ("top-level-text", "just text", None, "the top level must be a mapping of sweep settings, got a str"),
    # keys
    ("unknown-top-level-key", "serach: {algorithm: grid}\n", "serach", "unknown key (did you mean search?)"),
    ("unknown-key-like-none", "bogus: 1", "bogus", "unknown key; allowed keys: name, description, trial,"),
    ("unknown-trial-setting", "trial: {rnak: 4}\n", "trial.rnak", "unknown key (did you mean rank?)"),
    (
        "unknown-swept-setting",
        "space: {rnak: {choice: [1, 2]}}",
        "space.rnak",
        "unknown key (did you mean rank?)",
    ),
    ("seed-under-trial", "trial: {seed: 1}\n", "trial.seed", "seeds come from the top-level seeds"),
    ("trial-not-a-mapping", "trial: [rank, 4]", "trial", "must be a mapping, got a list"),
    ("fixed-and-swept", "trial: {rank: 4}\nspace: {rank: {choice: [2, 8]}}\n", "space.rank", "is both fixed"),
    # domains
    (
        "unknown-domain",
        "space: {rank: {range: [2, 4]}}\n",
        "space.rank",
        "must be exactly one of choice, grid",
    ),
    ("list-not-domain", "space: {rank: [2, 4]}\n", "space.rank", "must be exactly one of choice, grid"),
    (
        "two-domains",
        "space: {rank: {choice: [2], grid: [4]}}",
        "space.rank",
        "exactly one of choice, grid, int",
    ),
    ("log-float-range", "space: {lr: {uniform: [0.1, 0.2], log: true}}", "space.lr", "int also takes log"),
    (
        "low-above-high",
        "space: {lr: {uniform: [0.5, 0.1]}}\n",
        "space.lr",
        "low (0.5) must be below high (0.1)",
    ),
    ("int-low-above-high", "space: {rank: {int: [8, 2]}}", "space.rank", "low (8) must be below high (2)"),
    ("low-equals-high", "space: {lr: {uniform: [0.1, 0.1]}}", "space.lr", "low (0.1) must be below high"),
    ("range-not-two-values", "space: {rank: {int: [2]}}\n", "space.rank", "int must be [low, high] (two"),
    ("empty-grid", "space: {rank: {grid: []}}\n", "space.rank", "grid must be a non-empty list of values"),
    ("empty-choice", "space: {rank: {choice: []}}", "space.rank", "choice must be a non-empty list"),
    ("repeated-value", "space: {rank: {grid: [4, 4]}}\n", "space.rank", "grid lists 4 more than once"),
    (
        "loguniform-from-zero",
        "space: {lr: {loguniform: [0.0, 0.1]}}\n",
        "space.lr",
        "[0] must be a number > 0",
    ),
    (
        "bound-read-as-text",
        "space: {lr: {loguniform: [1e-4, 1.0e-2]}}",
        "space.lr",
        "(YAML read 1e-4 as text",
    ),
    ("fractional-int-bound", "space: {rank: {int: [1.5, 8]}}", "space.rank", "int[0] must be an integer"),
    ("log-int-range-from-zero", "space: {rank: {int: [0, 8], log: true}}", "space.rank", "low >= 1"),
    # trial settings, fixed or swept
    ("rank-zero", "trial: {rank: 0}\n", "trial.rank", "rank=0 must be an integer >= 1"),
    ("true-as-integer", "trial: {rank: true}", "trial.rank", "rank=True must be an integer >= 1"),
    (
        "text-as-boolean",
        "trial: {pretrained: 'yes'}",
        "trial.pretrained",
        "pretrained='yes' must be true or false",
    ),
    ("true-as-count", "num_samples: true", "num_samples", "must be an integer >= 1, got True"),
    (
        "negative-swept-value",
        "space: {rank: {choice: [-4, 8]}}\n",
        "space.rank",
        "rank=-4 must be an integer >= 1",
    ),
    ("swept-range-from-zero", "space: {rank: {int: [0, 8]}}", "space.rank", "rank=0 must be an integer >= 1"),
    (
        "swept-text",
        "space: {rank: {choice: [4, eight]}}",
        "space.rank",
        "rank='eight' must be an integer >= 1",
    ),
    ("number-read-as-text", "trial: {lr: 1e-3}\n", "trial.lr", "lr='1e-3' must be a number > 0 (YAML read"),
    (
        "wrong-type",
        "trial: {top_n: null, asr_threshold: high}\n",
        "trial.asr_threshold",
        "asr_threshold='high' must be a number in (0, 1] or null",
    ),
    (
        "swept-range-too-high",
        "trial: {top_n: null}\nspace: {asr_threshold: {uniform: [0.5, 1.5]}}",
        "space.asr_threshold",
        "asr_threshold=1.5 must be a number in (0, 1]",
    ),
    (
        "threshold-and-top-n",
        "space: {asr_threshold: {uniform: [0.1, 0.5]}}\n",
        "space.asr_threshold",
        "asr_threshold=0.1 and top_n=4 are both set",
    ),
    (
        "no-calibration-samples",
        "trial: {peft_mode: ckpd, replay_per_class: 0}",
        "trial.replay_per_class",
        "no calibration samples",
    ),
    (
        "unknown-peft-mode",
        "space: {peft_mode: {grid: [ckpd, dora]}}\n",
        "space.peft_mode",
        "peft_mode='dora' is unknown; choose one of ckpd",
    ),
    (
        "negative-base-seed",
        "trial: {base_seed: -1}\n",
        "trial.base_seed",
        "base_seed=-1 must be an integer >= 0",
    ),
    (
        "unknown-recipe",
        "trial: {recipe: offical}\n",
        "trial.recipe",
        "recipe='offical' is unknown; choose one of embedded, official",
    ),
    ("unknown-optimizer", "trial: {optimizer: adam}\n", "trial.optimizer", "optimizer='adam' is unknown"),
    (
        "one-replay-copy-count",
        "trial: {replay_base_copies: 2}\n",
        "trial.replay_base_copies",
        "replay_base_copies and replay_novel_copies go together",
    ),
    (
        "top-n-beside-the-official-fixed-layers",
        "trial: {recipe: official, benchmark: mini_imagenet, data_root: /data, top_n: 6}\n",
        "trial.top_n",
        "top_n=6 and fixed_last_blocks=2 are both set: select layers by one of them",
    ),
    # search
    (
        "unknown-algorithm",
        "search: {algorithm: bayes}\n",
        "search.algorithm",
        "'bayes' is unknown; choose one of grid, random, optuna",
    ),
    (
        "unknown-sampler",
        "search: {sampler: bogus}\n",
        "search.sampler",
        "'bogus' is unknown; choose one of tpe, random, cmaes, qmc, gp",
    ),
    (
        "sampler-of-a-random-search",
        "search: {algorithm: random, sampler: tpe}",
        "search.sampler",
        "only applies to algorithm optuna",
    ),
    (
        "unknown-sampler-argument",
        "search: {sampler_args: {n_startup: 3}}",
        "search.sampler_args.n_startup",
        "not an argument of optuna.samplers.TPESampler",
    ),
    (
        "sampler-seed-in-sampler-args",
        "search: {sampler_args: {seed: 3}}\n",
        "search.sampler_args.seed",
        "set the sampler's seed as search.seed",
    ),
    (
        "bad-sampler-argument",
        "search: {sampler: qmc, sampler_args: {qmc_type: bogus}}",
        "search.sampler_args.qmc_type",
        "halton",
    ),
    (
        "negative-sampler-seed",
        "search: {seed: -1}\n",
        "search.seed",
        "must be an integer >= 0 or null, got -1",
    ),
    (
        "range-under-grid-search",
        "search: {algorithm: grid}\nspace: {lr: {uniform: [0.1, 0.5]}}\n",
        "space.lr",
        "only enumerates",
    ),
    (
        "loguniform-under-grid-search",
        "search: {algorithm: grid}\nspace: {lr: {loguniform: [1.0e-4, 1.0e-2]}}",
        "space.lr",
        "is a range, but search.algorithm grid only enumerates values",
    ),
    (
        "optuna-choice-of-lists",
        "space: {layer_patterns: {choice: [[a.*], [b.*]]}}",
        "space.layer_patterns",
        "grid instead",
    ),
    # pruner
    ("unknown-pruner", "pruner: {name: asha}\n", "pruner.name", "'asha' is unknown; choose one of median"),
    ("pruner-not-a-mapping", "pruner: median", "pruner", "must be null / none or {name: ..., args: {...}}"),
    ("unknown-pruner-key", "pruner: {name: median, after: 1}", "pruner.after", "allowed keys: name, args"),
    (
        "unknown-pruner-argument",
        "pruner: {name: median, args: {n_warmup: 1}}\n",
        "pruner.args.n_warmup",
        "not an argument of optuna.pruners.MedianPruner; arguments: n_startup_trials, n_warmup_steps",
    ),
    (
        "negative-pruner-argument",
        "pruner: {name: median, args: {n_startup_trials: -1}}",
        "pruner.args.n_startup_trials",
        "negative",
    ),
    (
        "pruner-argument-of-the-wrong-type",
        "pruner: {name: median, args: {n_warmup_steps: one}}",
        "pruner.args.n_warmup_steps",
        "not supported",
    ),
    (
        "required-pruner-argument-missing",
        "pruner: {name: percentile, args: {n_startup_trials: 1}}",
        "pruner.args.percentile",
        "optuna.pruners.PercentilePruner requires it",
    ),
    (
        "bad-pruner-argument",
        "pruner: {name: percentile, args: {percentile: 150}}\n",
        "pruner.args.percentile",
        "between 0 and 100",
    ),
    (
        "bad-halving-argument",
        "pruner: {name: successive_halving, args: {reduction_factor: 1}}",
        "pruner.args.reduction_factor",
        ">= 2",
    ),
    (
        "unknown-wrapped-pruner-argument",
        "pruner: {name: patient, args: {patience: 2, wrapped_pruner: {name: median, args: {bogus: 1}}}}",
        "pruner.args.wrapped_pruner.args.bogus",
        "not an argument of optuna.pruners.MedianPruner",
    ),
    (
        "negative-patience",
        "pruner: {name: patient, args: {patience: -1, wrapped_pruner: null}}",
        "pruner.args.patience",
        "negative",
    ),
    (
        "negative-pruner-margin",
        "pruner: {name: median, margin: -0.01}\n",
        "pruner.margin",
        "must be a number in [0, 1) in units of the objective",
    ),
    # metric, objective, mode, samples, seeds, resources, the rest
    ("unknown-metric", "metric: accuracy\n", "metric", "'accuracy' is unknown; choose one of acc_all"),
    ("trial-metric-as-metric", "metric: avg_acc", "metric", "choose one of acc_all, acc_base"),
    (
        "unknown-objective",
        "objective: mean\n",
        "objective",
        "'mean' is unknown; choose avg (mean of the metric",
    ),
    (
        "hm-of-a-metric-without-novel",
        "metric: val_acc_new\nobjective: hm\n",
        "objective",
        "objective hm is the harmonic mean of base and novel accuracy, which exists for metric",
    ),
    ("unknown-mode", "mode: maximize\n", "mode", "'maximize' is unknown; choose max or min"),
    ("no-samples", "num_samples: 0\n", "num_samples", "must be an integer >= 1, got 0"),
    ("fractional-samples", "num_samples: 2.5", "num_samples", "must be an integer >= 1, got 2.5"),
    ("samples-of-a-grid-search", "search: {algorithm: grid}\nnum_samples: 3", "num_samples", "under seeds"),
    ("no-seeds", "seeds: []\n", "seeds", "must be a non-empty list of integers >= 0, got a list ([])"),
    ("seeds-not-a-list", "seeds: 0", "seeds", "must be a non-empty list"),
    ("repeated-seed", "seeds: [0, 0]\n", "seeds[1]", "seed 0 is listed twice"),
    ("seed-not-a-number", "seeds: [0, one]", "seeds[1]", "must be an integer >= 0, got a str ('one')"),
    ("no-cpu", "resources: {cpu: 0}\n", "resources.cpu", "must be a number > 0, got 0"),
    ("negative-gpu", "resources: {gpu: -0.5}", "resources.gpu", "must be a number >= 0, got -0.5"),
    ("unknown-resource", "resources: {tpu: 1}", "resources.tpu", "allowed keys: cpu, gpu"),
    ("cuda-without-gpu", "trial: {device: cuda}\n", "resources.gpu", "is 0 but trial.device is cuda"),
    ("no-concurrency", "max_concurrent: 0", "max_concurrent", "must be an integer >= 1"),
    ("too-few-failures", "max_failures: -2", "max_failures", "must be an integer >= -1"),
    ("unusable-name", "name: a/b\n", "name", "must be a usable sweep name (letters, digits"),
    ("no-results-folder", "results: ''", "results", "must be a folder path"),
    # the benchmark and the model
    (
        "unknown-benchmark",
        "trial: {benchmark: cifar10}\n",
        "trial.benchmark",
        "benchmark='cifar10' is unknown; choose one of icons, cifar100",
    ),
    (
        "unknown-benchmark-setting",
        "trial: {benchmark_kwargs: {shot: 3}}\n",
        "trial.benchmark_kwargs",
        "benchmark_kwargs for icons: unknown setting shot (did you mean shots?); known:",
    ),
    (
        "benchmark-kwargs-not-mapping",
        "trial: {benchmark_kwargs: 3}\n",
        "trial.benchmark_kwargs",
        "benchmark_kwargs=3 must be a mapping of settings",
    ),
    (
        "real-benchmark-without-data-root",
        "trial: {benchmark: cifar100}\n",
        "trial.data_root",
        "benchmark cifar100 needs data_root: the folder that holds cifar-100-python/",
    ),
    (
        "unknown-backbone",
        "trial: {backbone: vit_tiny_convstm}\n",
        "trial.backbone",
        "backbone='vit_tiny_convstm' is not a timm model name. Did you mean vit_tiny_convst",
    ),
    (
        "backbone-kwargs-not-accepted",
        "trial: {backbone_kwargs: {depht: 2}}\n",
        "trial.backbone_kwargs",
        "backbone_kwargs for 'vit_tiny_convstem' were not accepted",
    ),
    (
        "layer-pattern-matches-nothing",
        "trial: {layer_patterns: ['blocks.*.attn.qkvv']}\n",
        "trial.layer_patterns",
        "layer pattern 'blocks.*.attn.qkvv' matches no linear layer",
    ),
    (
        "rank-above-layer-size",
        "space: {rank: {choice: [64, 256]}}\n",
        "space.rank",
        "rank=256 (the largest swept value) is larger than layer blocks.0.attn.qkv (384x128)",
    ),
]


@pytest.mark.parametrize("text, key, fragment", [c[1:] for c in BAD_SPECS], ids=[c[0] for c in BAD_SPECS])
def test_bad_spec_is_one_clear_error(tmp_path, monkeypatch, text, key, fragment):
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as caught:
        check_model(load_spec(path))  # what `ckpd-sweep validate` runs
    message = str(caught.value)
    assert message.startswith(f"{path}: {key}: " if key else f"{path}: ") and fragment in message, message
    assert [p.name for p in tmp_path.iterdir()] == ["bad-spec.yaml"]  # nothing created, results neither


def test_missing_spec_file(tmp_path):
    with pytest.raises(SpecError, match="no such sweep spec file") as caught:
        load_spec(tmp_path / "nope.yaml")
    assert "nope.yaml" in str(caught.value)


def test_valid_spec_creates_no_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = load_spec(write(tmp_path, FULL_SPEC, "full.yaml"))
    spec.build_pruner(), spec.build_sampler(), sweep_location(spec)
    assert [p.name for p in tmp_path.iterdir()] == ["full.yaml"]
