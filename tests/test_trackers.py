"""Experiment trackers without Ray: which are accepted, the message for a missing extra, what a run gives.

What each tracker gets from a real sweep is read back in tests/test_sweep_ray.py.
"""

from __future__ import annotations

import math
import os
import sys
from types import SimpleNamespace

import optuna
import pytest
from typer.testing import CliRunner

from sweeps.cli import app
from sweeps.spec import SpecError, parse_spec
from sweeps.storage import Location
from sweeps.study import PRUNED_AT, SEED, STUDY_FILE, SweepStudies
from sweeps.trackers import TRACKERS, RunRecord, check_trackers

from .helpers import session_row

runner = CliRunner()


def test_each_tracker_is_checked_once_in_the_order_given():
    assert check_trackers(["mlflow", "tensorboard", "mlflow"]) == ["mlflow", "tensorboard"]
    with pytest.raises(SpecError, match=r"--log 'tb' is not a tracker; choose from tensorboard, mlflow,"):
        check_trackers(["tb"])


MISSING = [
    ("wandb", "wandb", "pip install 'ckpd-sweep[wandb]'"),
    ("mlflow", "mlflow", "pip install 'ckpd-sweep[mlflow]'"),
    ("tensorboard", "tensorboardX", "pip install 'ray[tune]'"),
]


@pytest.mark.parametrize("tracker, module, install", MISSING)
def test_a_missing_tracker_client_names_what_to_install(monkeypatch, tracker, module, install):
    monkeypatch.setitem(sys.modules, module, None)  # as if it were not installed
    with pytest.raises(SpecError) as raised:
        check_trackers([tracker])
    assert str(raised.value).startswith(f"--log {tracker} needs ")
    assert str(raised.value).endswith(f"which is not installed: {install}")


def test_launch_with_a_missing_extra_exits_2_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: t\nlog: [tensorboard]\n")
    results = tmp_path / "results"
    result = runner.invoke(app, ["launch", str(spec), "--results", str(results), "--log", "wandb"])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: --log wandb needs the W&B client")
    assert "pip install 'ckpd-sweep[wandb]'" in result.output and result.output.count("\n") == 1
    assert not results.exists()


def test_mlflow_with_results_on_a_remote_store_needs_a_tracking_uri(monkeypatch):
    remote = SimpleNamespace(is_local=False, __str__=lambda self: "s3://bucket/sweeps/t")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(SpecError, match="set MLFLOW_TRACKING_URI"):
        check_trackers(["mlflow"], remote)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert check_trackers(["mlflow"], remote) == ["mlflow"]


def test_the_spec_keeps_its_trackers():
    spec = parse_spec({"name": "t", "log": ["wandb", "tensorboard"]})
    assert spec.log == ["wandb", "tensorboard"] and parse_spec(spec.to_dict()).log == spec.log
    assert parse_spec({"name": "t"}).log == [] and set(TRACKERS) == {"tensorboard", "mlflow", "wandb"}


@pytest.fixture
def record(tmp_path) -> RunRecord:
    spec = parse_spec(
        {
            "name": "t",
            "trial": {"steps": 7, "benchmark_kwargs": {"ways": 5}},
            "space": {"rank": {"choice": [2, 4]}},
        }
    )
    return RunRecord(spec, SweepStudies(tmp_path / STUDY_FILE, "t", "max"), num_sessions=3)


def test_a_session_is_logged_with_its_index_as_the_step_and_only_numbers(record):
    result = {**session_row("t1", 2), "adapted_layers": ["blocks.0.attn.qkv"], "train_loss": math.nan}
    result.update(training_iteration=7, timesteps_total=70, config={"rank": 4})
    metrics = record.metrics(result)
    # Ray's loggers take the step from timesteps_total, else training_iteration: both say session 2
    assert (
        metrics["training_iteration"] == 2 and metrics["timesteps_total"] is None and metrics["session"] == 2
    )
    assert metrics["val_acc_all"] == result["val_acc_all"]
    assert "adapted_layers" not in metrics and "train_loss" not in metrics and "config" not in metrics


def test_a_run_s_settings_are_every_setting_with_the_sampled_ones(record):
    settings = record.settings({"rank": 4, "seed": 3, "optuna_trial": 0, "run_trial": 0})
    assert settings["rank"] == 4 and settings["seed"] == 3 and settings["steps"] == 7
    assert settings["backbone"] == "vit_tiny_convstem" and settings["benchmark_kwargs/ways"] == 5
    assert "optuna_trial" not in settings and not any(isinstance(v, dict) for v in settings.values())


def test_the_final_status_comes_from_the_seed_s_study_and_the_sessions_reported(record):
    runs = record.studies.runs(0).study
    for _ in range(2):
        trial = runs.ask()
        trial.set_user_attr(SEED, 0)
    pruned = optuna.trial.Trial(runs, runs.trials[1]._trial_id)
    pruned.set_user_attr(PRUNED_AT, 1)
    runs.tell(1, state=optuna.trial.TrialState.PRUNED)
    assert record.status({"seed": 0, "run_trial": 0}, False, 2) == {"status": "completed"}
    assert record.status({"seed": 0, "run_trial": 0}, False, 1) == {"status": "failed"}  # ended early
    assert record.status({"seed": 0, "run_trial": 0}, True, 2) == {"status": "failed"}
    assert record.status({"seed": 0, "run_trial": 1}, False, 1) == {"status": "pruned", PRUNED_AT: 1}


def test_setting_up_the_trackers_leaves_the_environment_as_it_was(tmp_path, record, monkeypatch):
    """MLflow exports its tracking URI, and W&B offline needs WANDB_MODE while Ray sets up: neither may
    stay, or the next sweep launched from this process would log into this one's database, or offline."""
    from sweeps.trackers import mlflow, wandb

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    callback, note = mlflow.tracker(record, Location.of(tmp_path))
    callback.setup()
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert (tmp_path / "mlflow.db").exists() and note == f"experiment 't' at sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setattr(wandb.wandb, "login", lambda **kwargs: False)  # not logged in
    callback, note = wandb.tracker(record, Location.of(tmp_path))
    callback.setup()
    assert callback.kwargs["mode"] == "offline" and "WANDB_MODE" not in os.environ
    assert f"offline runs in {tmp_path}/wandb" in note
