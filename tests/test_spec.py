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
    TrialPlan,
    Uniform,
    check_model,
    load_spec,
    parse_spec,
)

from .bad_specs import BAD_SPECS

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


def grid_points(spec) -> list[dict]:
    """One pass of the spec's plan: every combination of the crossed values."""
    plan = TrialPlan(spec)
    return [plan[i] for i in range(plan.grid_size)]


@pytest.fixture
def full_spec(tmp_path):
    return load_spec(write(tmp_path, FULL_SPEC, "full.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(REPO)))
def test_shipped_specs_validate_and_build_trials(path):
    spec = load_spec(path)
    assert parse_spec(spec.to_dict(), path=path) == spec
    assert spec.search.algorithm in ("grid", "optuna")
    for point in grid_points(spec):
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
    modes = [point["peft_mode"] for point in grid_points(spec)]
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
    points = grid_points(spec)
    assert len(points) == 6
    assert {(p["peft_mode"], p["continuous"]) for p in points} == {
        (mode, cont) for mode in ("ckpd", "lora", "full") for cont in (True, False)
    }
    assert all("rank" not in p for p in points)  # the searcher picks a choice...
    spec.search.algorithm = "grid"
    assert len(grid_points(spec)) == 12  # ...a grid search crosses it
    assert grid_points(parse_spec({"space": {"rank": {"int": [2, 8]}}})) == [{}]
    assert len(grid_points(full_spec)) == 3


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
