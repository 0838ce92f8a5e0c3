"""Sweeps with real Ray Tune and real Optuna: pruning, Parquet rows, failures, resume after SIGKILL, CLI."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import ray
import yaml
from optuna.trial import TrialState
from typer.testing import CliRunner

from sweeps import launch
from sweeps.base_sessions import (
    CACHE_ENV,
    BaseSessionRegistry,
    base_checkpoint,
    ensure_base_session,
    start_registry,
)
from sweeps.cli import app
from sweeps.folder import finished_at
from sweeps.results import read_sessions, read_trials
from sweeps.spec import parse_spec
from sweeps.statistics import STAT_COLUMNS
from sweeps.storage import Location
from sweeps.study import load_study

from .helpers import S3_CREDENTIALS, TINY_BENCHMARK, cli_process, tiny_spec

pytestmark = pytest.mark.slow  # every test here starts Ray
NUM_SESSIONS = 3
runner = CliRunner()


@pytest.fixture(scope="module")
def ray_cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def pruned_sweep(ray_cluster, icons_cache, tmp_path_factory):
    """A grid over a good and a destructive learning rate, seeds 1 then 0, one run at a time."""
    root = tmp_path_factory.mktemp("results")
    spec = tiny_spec(icons_cache, "lr", seeds=[1, 0], log=["tensorboard", "mlflow", "wandb"])
    return launch(parse_spec(spec), root, quiet=True)


def test_pruned_runs_are_pruned_in_parquet_and_optuna_and_never_best(pruned_sweep):
    trials = read_trials(pruned_sweep.results_dir)
    good, bad = trials[trials.lr == 0.001], trials[trials.lr == 0.5]
    assert sorted(good.seed) == [0, 1] and set(good.status) == {"completed"}
    # the bad configuration is pruned on seed 1, its first; its seed 0 never starts
    assert bad.seed.tolist() == [1] and bad.status.tolist() == ["pruned"]
    assert bad.pruned_at_session.tolist() == [1]
    assert bad.last_acc.isna().all() and good.last_acc.notna().all()
    study = load_study(pruned_sweep.results_dir)
    assert {t.params["lr"]: t.state for t in study.trials} == {
        0.001: TrialState.COMPLETE,
        0.5: TrialState.PRUNED,
    }
    assert study.best_trial.params["lr"] == 0.001
    assert pruned_sweep.summary.best["lr"] == 0.001
    assert pruned_sweep.summary.counts == {"completed": 2, "pruned": 1, "failed": 0}
    assert pruned_sweep.base_trainings == 2  # one base session per seed, shared by both lr values
    assert finished_at(pruned_sweep.results_dir) is not None  # `status` says finished, gives no ETA


def test_pruning_compares_a_run_only_with_runs_of_its_own_seed(pruned_sweep):
    seed1 = load_study(pruned_sweep.results_dir, seed=1)
    pruned = [t for t in seed1.trials if t.state == TrialState.PRUNED]
    assert len(pruned) == 1 and pruned[0].params == {"lr": 0.5}
    assert {t.user_attrs["seed"] for t in seed1.trials} == {1}
    record = pruned[0].user_attrs["compared_with"]
    good_seed1 = next(t for t in seed1.trials if t.params == {"lr": 0.001})
    assert [(r["run"], r["seed"]) for r in record] == [(good_seed1.number, 1)]
    assert record[0]["value"] == pytest.approx(good_seed1.intermediate_values[1])
    # the completed seed-0 run of the same good configuration was never a comparison
    seed0 = load_study(pruned_sweep.results_dir, seed=0)
    assert [t.params for t in seed0.trials] == [{"lr": 0.001}]


def test_failing_trial_is_recorded_and_the_sweep_goes_on(ray_cluster, icons_cache, tmp_path):
    spec = tiny_spec(icons_cache, "fail", space={"rank": {"grid": [4, 65]}}, seeds=[0], pruner=None)
    outcome = launch(parse_spec(spec), tmp_path, quiet=True)
    trials = read_trials(outcome.results_dir).set_index("rank")
    assert trials.loc[4, "status"] == "completed"
    assert trials.loc[65, "status"] == "failed"
    assert "rank=65" in trials.loc[65, "error"]
    study = load_study(outcome.results_dir)
    assert sorted(t.state.name for t in study.trials) == ["COMPLETE", "FAIL"]


def test_a_twin_sampled_while_its_original_runs_is_not_run_twice(ray_cluster, icons_cache, tmp_path):
    """One configuration sampled three times, with three seeds on one shared base session and two slots:
    the second and third samples come while the first is still running its seeds."""
    spec = tiny_spec(
        icons_cache,
        "twins",
        space={"rank": {"choice": [4]}},
        search={"algorithm": "random"},
        num_samples=3,
        seeds=[0, 1, 2],
        pruner=None,
        max_concurrent=2,
    )
    spec["trial"]["base_seed"] = 0
    outcome = launch(parse_spec(spec), tmp_path, quiet=True)
    sessions, trials = read_sessions(outcome.results_dir), read_trials(outcome.results_dir)
    assert len(trials) == 3 and set(trials.status) == {"completed"}
    assert sessions.groupby(["rank", "seed"]).trial_id.nunique().tolist() == [1, 1, 1]
    assert outcome.base_trainings == 1
    base, last = sessions[sessions.session == 0], sessions[sessions.session == NUM_SESSIONS - 1]
    assert base.val_acc_all.nunique() == 1  # one base session for the three seeds
    assert last.groupby("seed").train_loss.first().nunique() == 3  # incremental sessions follow the seed
    study = load_study(outcome.results_dir)
    origin = [t for t in study.trials if "duplicate_of" not in t.user_attrs]
    twins = [t for t in study.trials if "duplicate_of" in t.user_attrs]
    assert len(origin) == 1 and len(twins) == 2
    assert {t.user_attrs["twin_state_when_sampled"] for t in twins} == {"running"}
    assert [t.value for t in twins] == [origin[0].value] * 2
    row = outcome.summary.ranking.iloc[0]
    assert row.n_seeds == 3 and row["mean"] == pytest.approx(origin[0].value)


# ------------------------------------------------------------------ trackers and optuna-dashboard


def _expected(sweep) -> tuple[pd.DataFrame, dict[str, str]]:
    """The sweep's session rows (what every tracker must hold) and each run's final status."""
    trials = read_trials(sweep.results_dir)
    return read_sessions(sweep.results_dir), dict(zip(trials.trial_id, trials.status, strict=True))


def test_tensorboard_event_files_hold_each_session_by_index_and_the_final_status(pruned_sweep):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    sessions, statuses = _expected(pruned_sweep)
    folders = sorted(pruned_sweep.results_dir.local_path.glob("tune/ckpd_trainable_*"))
    seen = {}
    for folder in folders:
        trial_id = folder.name.split("_")[2]
        events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
        events.Reload()
        mine = sessions[sessions.trial_id == trial_id].sort_values("session")
        logged = events.Scalars("ray/tune/val_acc_all")
        assert [e.step for e in logged] == mine.session.tolist()
        assert [e.value for e in logged] == pytest.approx(mine.val_acc_all.tolist(), abs=1e-6)
        (status,) = events.Tensors("status/text_summary")
        seen[trial_id] = status.tensor_proto.string_val[0].decode()
        (settings,) = events.Tensors("settings/text_summary")
        assert '"lr": ' + str(mine.lr.iloc[0]) in settings.tensor_proto.string_val[0].decode()
    assert {t: text.split(",")[0] for t, text in seen.items()} == {
        t: f"status {s}" for t, s in statuses.items()
    }
    assert "pruned_at_session 1" in next(text for text in seen.values() if "pruned" in text)


def test_mlflow_runs_hold_each_session_by_index_the_settings_and_the_final_status(pruned_sweep):
    from mlflow import MlflowClient

    sessions, statuses = _expected(pruned_sweep)
    client = MlflowClient(f"sqlite:///{pruned_sweep.results_dir.local_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("lr").experiment_id])
    assert len(runs) == len(statuses)
    for run in runs:
        trial_id = run.data.tags["trial_name"].split("_")[-1]
        mine = sessions[sessions.trial_id == trial_id].sort_values("session")
        history = client.get_metric_history(run.info.run_id, "val_acc_all")
        assert [(m.step, m.value) for m in history] == list(zip(mine.session, mine.val_acc_all, strict=True))
        assert run.data.tags["status"] == statuses[trial_id]
        assert run.info.status == "FINISHED"  # Tune's status: pruned and completed runs both finished
        params = run.data.params
        assert float(params["lr"]) == mine.lr.iloc[0] and int(params["seed"]) == mine.seed.iloc[0]
        assert params["steps"] == "10" and params["base_epochs"] == "40"  # fixed settings too


def test_wandb_offline_runs_hold_each_session_as_the_step_and_the_final_status(pruned_sweep):
    import json
    import shutil

    sessions, statuses = _expected(pruned_sweep)
    folders = sorted(pruned_sweep.results_dir.local_path.glob("wandb/offline-run-*"))
    assert len(folders) == len(statuses)
    wandb = shutil.which("wandb") or str(Path(sys.executable).with_name("wandb"))
    for folder in folders:
        (log,) = folder.glob("run-*.wandb")
        read = subprocess.run(
            [wandb, "leet", "inspect", "--json", str(log)], capture_output=True, text=True, timeout=60
        )
        assert read.returncode == 0, read.stderr
        records = [json.loads(line) for line in read.stdout.splitlines() if line.strip()]
        (run,) = [r["run"] for r in records if r["type"] == "run"]
        trial_id = run["run_id"]
        history = [r["history"]["item"] for r in records if r["type"] == "history"]
        mine = sessions[sessions.trial_id == trial_id].sort_values("session")
        assert [(h["_step"], h["session"]) for h in history] == [(s, s) for s in mine.session]
        assert [h["val_acc_all"] for h in history] == pytest.approx(mine.val_acc_all.tolist())
        config = {}
        for record in (r for r in records if r["type"] == "config"):
            config.update(record["config"].get("update", {}))
        assert config["status"] == statuses[trial_id] and config["steps"] == 10
        assert config["lr"] == mine.lr.iloc[0] and config["seed"] == mine.seed.iloc[0]


def test_optuna_dashboard_serves_the_sweep_s_studies_from_the_journal(pruned_sweep):
    import json
    import threading
    import urllib.request
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from optuna_dashboard import wsgi

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    sessions, _ = _expected(pruned_sweep)
    server = make_server(
        "127.0.0.1", 0, wsgi(str(pruned_sweep.results_dir / "optuna.journal")), handler_class=Quiet
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:

        def get(path: str):
            url = f"http://127.0.0.1:{server.server_port}{path}"
            with urllib.request.urlopen(url, timeout=30) as response:
                return json.load(response)

        studies = {s["study_name"]: s["study_id"] for s in get("/api/studies")["study_summaries"]}
        assert set(studies) == {"lr", "lr:seed-0", "lr:seed-1"}
        configurations = get(f"/api/studies/{studies['lr']}?after=0")["trials"]
        runs = get(f"/api/studies/{studies['lr:seed-0']}?after=0")["trials"]
    finally:
        server.shutdown()
        server.server_close()
    good = sessions[sessions.lr == 0.001]
    by_seed = {seed: rows.sort_values("session").val_acc_all.tolist() for seed, rows in good.groupby("seed")}
    (completed,) = [t for t in configurations if t["state"] == "Complete"]
    attrs = {a["key"]: a["value"] for a in completed["user_attrs"]}
    assert json.loads(attrs["seeds"]) == [0, 1]
    assert {int(k): v for k, v in json.loads(attrs["val_acc_all_by_seed"]).items()} == pytest.approx(by_seed)
    # the intermediate value at session t: the seeds' mean of the objective's partial value (avg: the mean
    # of the metric over sessions 0..t)
    partial = [sum(sum(v[: t + 1]) / (t + 1) for v in by_seed.values()) / 2 for t in range(NUM_SESSIONS)]
    assert [(v["step"], v["value"]) for v in completed["intermediate_values"]] == [
        (t, pytest.approx(p)) for t, p in enumerate(partial)
    ]
    (run,) = runs
    attrs = {a["key"]: a["value"] for a in run["user_attrs"]}
    assert attrs["seed"] == "0" and json.loads(attrs["val_acc_all"]) == pytest.approx(by_seed[0])
    assert [v["value"] for v in run["intermediate_values"]] == pytest.approx(
        [sum(by_seed[0][: t + 1]) / (t + 1) for t in range(NUM_SESSIONS)]
    )


def test_cli_table_status_report(pruned_sweep):
    path = str(pruned_sweep.results_dir)
    done = runner.invoke(app, ["table", path, "--rows", "lr", "--metric", "acc_all"])
    assert done.exit_code == 0, done.output
    lines = [line for line in done.output.splitlines() if line.startswith("|")]
    assert len(lines) == 3  # header, rule, one row: the pruned lr is not in the table
    assert "0.001" in lines[2] and "(n=2)" in lines[2]
    done = runner.invoke(app, ["table", path, "--format", "csv"])
    assert done.exit_code == 0, done.output
    frame = pd.read_csv(io.StringIO(done.output))
    assert list(frame.columns) == ["lr", *STAT_COLUMNS]
    assert frame.lr.tolist() == [0.001] and frame.n_seeds.tolist() == [2]
    done = runner.invoke(app, ["table", path, "--rows", "rank"])
    assert done.exit_code == 2 and "rank" in done.output
    done = runner.invoke(app, ["status", path])
    assert done.exit_code == 0 and "2 completed" in done.output and "1 pruned" in done.output
    assert "one configuration completed (lr=0.001)" in done.output
    done = runner.invoke(app, ["report", path])
    assert done.exit_code == 0
    pngs = sorted(Path(path, "report").glob("*.png"))
    assert [p.name for p in pngs] == ["accuracy_per_session.png", "objective.png", "pruning.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)


def test_bad_specs_exit_2_and_write_nothing(tmp_path, icons_cache):
    bad = [
        {**tiny_spec(icons_cache, "bad"), "searh": {"algorithm": "grid"}},
        {**tiny_spec(icons_cache, "bad"), "space": {"asr_threshold": {"uniform": [0.5, 0.1]}}},
        {
            **tiny_spec(icons_cache, "bad"),
            "space": {"rank": {"choice": ["four"]}},
            "search": {"algorithm": "random"},
        },
    ]
    for i, spec in enumerate(bad):
        path = tmp_path / f"bad{i}.yaml"
        path.write_text(yaml.safe_dump(spec))
        results = tmp_path / f"results{i}"
        done = runner.invoke(app, ["launch", str(path), "--results", str(results)])
        assert done.exit_code == 2, done.output
        assert path.name in done.output and "Traceback" not in done.output
        assert not results.exists()


def test_setup_failure_leaves_no_results_folder(ray_cluster, tmp_path, icons_cache):
    spec = tiny_spec(icons_cache, "setup")
    spec["trial"]["benchmark_kwargs"] = {**TINY_BENCHMARK, "colour": True}  # only the benchmark rejects it
    path = tmp_path / "setup.yaml"
    path.write_text(yaml.safe_dump(spec))
    done = runner.invoke(app, ["launch", str(path), "--results", str(tmp_path / "results")])
    assert done.exit_code == 2 and "colour" in done.output
    assert not (tmp_path / "results" / "setup").exists()


def test_launch_refuses_an_existing_results_folder(pruned_sweep, tmp_path, icons_cache):
    spec = tmp_path / "lr.yaml"
    spec.write_text(yaml.safe_dump(tiny_spec(icons_cache, "lr")))
    done = runner.invoke(
        app, ["launch", str(spec), "--results", str(pruned_sweep.results_dir.local_path.parent)]
    )
    assert done.exit_code == 2 and "ckpd-sweep resume" in done.output


def test_resume_after_sigkill_of_the_driver(ray_cluster, icons_cache, tmp_path):
    """Launched with progress lines, resumed with --quiet: the resume prints none."""
    spec_path = _kill_spec(icons_cache, tmp_path, "kill")
    results = tmp_path / "results"
    args = ["--address", ray_cluster, "--log", "mlflow"]
    driver = cli_process("launch", str(spec_path), "--results", str(results), *args)
    sweep_dir = results / "kill"
    deadline = time.time() + 240
    while time.time() < deadline:
        if (sweep_dir / "sessions").exists() and len(read_sessions(sweep_dir)) >= 4:
            break
        time.sleep(0.5)
    os.killpg(driver.pid, signal.SIGKILL)
    assert ": session 0 val_acc_all" in driver.communicate(timeout=60)[0]
    before = read_sessions(sweep_dir)
    assert 4 <= len(before) < 3 * NUM_SESSIONS, "the driver must die in the middle of the sweep"
    output = _resume_and_check_every_row(sweep_dir, before, "--address", ray_cluster, "--quiet")
    assert ": session" not in output and "running (of at most" not in output, output
    # the tracker kept one run per run, the resumed ones continued: every session once, the final status
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{sweep_dir / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("kill").experiment_id])
    trials, sessions = read_trials(sweep_dir), read_sessions(sweep_dir)
    assert sorted(r.data.tags["trial_name"].split("_")[-1] for r in runs) == sorted(trials.trial_id)
    for run in runs:
        trial_id = run.data.tags["trial_name"].split("_")[-1]
        steps = {m.step for m in client.get_metric_history(run.info.run_id, "val_acc_all")}
        assert steps == set(sessions[sessions.trial_id == trial_id].session)
        assert run.data.tags["status"] == trials.set_index("trial_id").status[trial_id]
        assert run.info.status == "FINISHED"


# Run as the sweep's driver: die by SIGKILL on the 4th session part, after writing it, before publishing it.
_DIE_BEFORE_PUBLISH = """
import os, signal, sys
from ckpd_core import atomic
from sweeps.cli import app

publish, seen = atomic._publish, []

def publish_or_die(tmp, final):
    if final.parent.name == "sessions":
        seen.append(final)
        if len(seen) == 4:
            os.kill(os.getpid(), signal.SIGKILL)
    publish(tmp, final)

atomic._publish = publish_or_die
app(sys.argv[1:])
"""


def test_a_writer_killed_before_publishing_leaves_no_partial_file(ray_cluster, icons_cache, tmp_path):
    spec_path = _kill_spec(icons_cache, tmp_path, "torn")
    results, sweep_dir = tmp_path / "results", tmp_path / "results" / "torn"
    args = ["launch", str(spec_path), "--results", str(results), "--address", ray_cluster, "--quiet"]
    log = tmp_path / "driver.log"
    with log.open("w") as out:
        driver = subprocess.run(
            [sys.executable, "-c", _DIE_BEFORE_PUBLISH, *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=400,
        )
    assert driver.returncode == -signal.SIGKILL, log.read_text()
    unpublished = list((sweep_dir / "sessions").glob(".part-*.tmp"))
    assert len(unpublished) == 1 and unpublished[0].stat().st_size > 0
    published = sorted((sweep_dir / "sessions").glob("part-*.parquet"))
    assert len(published) == 3

    before = pd.read_parquet(sweep_dir / "sessions")  # pandas skips the hidden temporary file
    assert len(before) == 3 and not before.duplicated(["trial_id", "seed", "session"]).any()
    table = runner.invoke(app, ["table", str(sweep_dir), "--rows", "rank", "--metric", "acc_all"])
    assert table.exit_code == 0 and "Traceback" not in table.output, table.output
    _resume_and_check_every_row(sweep_dir, read_sessions(sweep_dir), "--address", ray_cluster, "--quiet")


def _kill_spec(icons_cache: str, tmp_path: Path, name: str) -> Path:
    spec = tiny_spec(icons_cache, name, space={"rank": {"grid": [2, 4, 8]}}, pruner=None, seeds=[0])
    spec["trial"]["steps"] = 60  # long enough sessions to be killed in the middle of the sweep
    spec["trial"]["base_epochs"] = 10  # a base session that ends well before the kill's deadline
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _resume_and_check_every_row(
    sweep_dir: Path, before: pd.DataFrame, *flags: str, ranks: tuple[int, ...] = (2, 4, 8)
) -> str:
    """`ckpd-sweep resume` completes the sweep: one row per (trial, seed, session), earlier rows unchanged.
    Returns what it printed."""
    resumed = cli_process("resume", str(sweep_dir), *flags)
    output, _ = resumed.communicate(timeout=400)
    assert resumed.returncode == 0, output
    sessions, trials = read_sessions(sweep_dir), read_trials(sweep_dir)
    assert sorted(trials["rank"]) == list(ranks) and set(trials.status) == {"completed"}
    assert not sessions.duplicated(["trial_id", "seed", "session"]).any()
    for _, trial in trials.iterrows():
        mine = sessions[sessions.trial_id == trial.trial_id]
        assert sorted(mine.session) == list(range(NUM_SESSIONS))
    kept = before.merge(sessions, on=["trial_id", "seed", "session"], suffixes=("", "_after"))
    assert len(kept) == len(before) and (kept.val_acc_all == kept.val_acc_all_after).all()
    return output


def _session_processes(sid: int) -> list[str]:
    """The live processes of the session ``sid`` (a driver started by ``cli_process`` and Ray's that it
    started: raylet, gcs_server, workers), as 'pid name'."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            name, fields = stat.read_text().rsplit(")", 1)
        except OSError:  # gone meanwhile
            continue
        if int(fields.split()[3]) == sid:
            found.append(f"{stat.parent.name} {name.split('(', 1)[1]}")
    return found


# Ctrl-C signals the terminal's whole process group; `kill` (or a job scheduler) signals the driver.
STOPS = [(signal.SIGINT, os.killpg), (signal.SIGTERM, os.kill)]


@pytest.mark.slow
@pytest.mark.parametrize("signum, send", STOPS, ids=["ctrl-c", "sigterm"])
def test_a_stopped_launch_exits_within_seconds_and_resume_finishes_it(icons_cache, tmp_path, signum, send):
    """Stopped while the driver's base-session task trains (the trial waits for it): the launch ends in
    seconds with our resume hint and leaves no Ray process; the resume trains the base session and
    finishes, printing progress and counting that training."""
    spec = tiny_spec(icons_cache, "stop", space={"rank": {"grid": [2, 4]}}, pruner=None, seeds=[0])
    spec["trial"]["base_epochs"] = 4
    path = tmp_path / "stop.yaml"
    path.write_text(yaml.safe_dump(spec))
    results, sweep_dir = tmp_path / "results", tmp_path / "results" / "stop"
    driver = cli_process("launch", str(path), "--results", str(results), "--num-cpus", "1")
    deadline = time.time() + 120
    while not (sweep_dir / "tune" / "tuner.pkl").exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1)
    assert len(_session_processes(driver.pid)) > 2, "Ray runs"
    send(driver.pid, signum)
    start = time.monotonic()
    output, _ = driver.communicate(timeout=120)
    took = time.monotonic() - start
    print(f"{signum.name}: the launch exited {took:.1f} s after the signal")
    assert driver.returncode == 128 + signum and took < 20, output
    assert f"continue the sweep with `ckpd-sweep resume {sweep_dir}`" in output
    assert "Tuner.restore" not in output and "Traceback" not in output, output
    deadline = time.time() + 5
    while _session_processes(driver.pid) and time.time() < deadline:
        time.sleep(0.2)
    assert _session_processes(driver.pid) == []
    assert finished_at(Location.of(sweep_dir)) is None
    if signum == signal.SIGINT:
        before = read_sessions(sweep_dir)
        output = _resume_and_check_every_row(sweep_dir, before, "--num-cpus", "1", ranks=(2, 4))
        assert ": session 2 val_acc_all" in output and "runs: 2 completed, 0 pruned" in output, output
        assert "base session trained 1 time(s) for the whole sweep" in output, output
        assert finished_at(Location.of(sweep_dir)) is not None


def _ask_for_base(config, base):
    return ensure_base_session(config, base)


def test_nodes_without_a_shared_disk_train_a_base_session_once(ray_cluster, s3_root, tiny_config, tmp_path):
    """Two workers with separate local disks ask for the same base session on S3 at the same time."""
    config = tiny_config.replace(base_epochs=3)
    base = Location.of(s3_root) / "claims" / "base"
    start_registry(base)
    ask = ray.remote(_ask_for_base)
    nodes = [tmp_path / "node-a", tmp_path / "node-b"]
    refs = [
        ask.options(runtime_env={"env_vars": {**S3_CREDENTIALS, CACHE_ENV: str(node)}}).remote(config, base)
        for node in nodes
    ]
    answers = ray.get(refs, timeout=300)
    assert sorted(trained for _, trained in answers) == [False, True]
    paths = [path for path, _ in answers]
    assert [p.parent.parent for p in paths] == nodes and paths[0].read_bytes() == paths[1].read_bytes()
    assert [n for n in (base).files() if n.endswith(".pt")] == [base_checkpoint(config, base).name]


def test_a_claim_not_renewed_goes_to_the_next_caller(ray_cluster):
    registry = BaseSessionRegistry.remote(lease_s=1.0)
    assert ray.get(registry.claim.remote("base-k.pt", "trial-a"))
    assert not ray.get(registry.claim.remote("base-k.pt", "trial-b"))
    assert ray.get(registry.claim.remote("base-k.pt", "trial-a"))  # a renewal
    time.sleep(1.2)  # trial-a died: no renewal
    assert ray.get(registry.claim.remote("base-k.pt", "trial-b"))
    ray.get(registry.release.remote("base-k.pt", "trial-a"))  # not the holder: nothing happens
    assert not ray.get(registry.claim.remote("base-k.pt", "trial-c"))
    ray.get(registry.release.remote("base-k.pt", "trial-b"))
    assert ray.get(registry.claim.remote("base-k.pt", "trial-c"))


# -- the store shared by the sweeps under one results root ------------------------------------------
_COMPARED = ["val_acc_all", "acc_all", "acc_base", "acc_novel", "n_adapted", "train_loss"]


def _same(a: pd.Series, b: pd.Series) -> bool:
    """Equal values in order, NaN equal to NaN (acc_novel of the base session)."""
    return a.reset_index(drop=True).equals(b.reset_index(drop=True))


def _rank_spec(icons_cache: str, name: str, ranks: list[int], seeds=(0, 1)) -> dict:
    return tiny_spec(icons_cache, name, space={"rank": {"grid": ranks}}, seeds=list(seeds), pruner=None)


@pytest.fixture(scope="module")
def overlapping_sweeps(ray_cluster, icons_cache, tmp_path_factory):
    """Ranks 2 and 4, then ranks 4 and 8, over seeds 0 and 1, under one results root."""
    root = tmp_path_factory.mktemp("shared-root")
    first = launch(parse_spec(_rank_spec(icons_cache, "first", [2, 4])), root, quiet=True)
    second = launch(parse_spec(_rank_spec(icons_cache, "second", [4, 8])), root, quiet=True)
    return root, first, second


def test_a_second_sweep_reuses_the_overlap_and_computes_only_the_rest(overlapping_sweeps):
    root, first, second = overlapping_sweeps
    assert first.base_trainings == 2 and second.base_trainings == 0  # one base session per seed, once
    assert len(list((root / "store" / "base").glob("base-*.pt"))) == 2
    before, after = read_sessions(first.results_dir), read_sessions(second.results_dir)
    reused, computed = after[after["rank"] == 4], after[after["rank"] == 8]
    assert len(reused) == len(computed) == 2 * NUM_SESSIONS
    assert (reused.seconds == 0).all() and reused.reused_from.str.startswith("first/").all()
    assert computed.reused_from.isna().all() and (computed.seconds > 0).all()
    original = before[before["rank"] == 4]
    pairs = reused.merge(original, on=["seed", "session"], suffixes=("", "_first"))
    assert len(pairs) == 2 * NUM_SESSIONS
    for column in _COMPARED:
        assert _same(pairs[column], pairs[f"{column}_first"]), column
    assert (pairs.reused_seconds == pairs.seconds_first).all()
    assert (pairs.reused_from == "first/" + pairs.trial_id_first).all()
    trials = read_trials(second.results_dir).set_index(["rank", "seed"])
    assert (trials.loc[4, "compute_s"] == 0).all() and (trials.loc[4, "reused_compute_s"] > 0).all()
    study = {t.params["rank"]: t.value for t in load_study(second.results_dir).trials}
    first_rank4 = read_trials(first.results_dir).query("rank == 4").val_avg_acc.mean()
    assert study[4] == pytest.approx(first_rank4)  # the sampler was told the stored value
    assert second.summary.compute.reused_s == pytest.approx(original.seconds.sum())


def test_store_command_names_the_sweeps_that_use_each_entry(overlapping_sweeps):
    root, _, _ = overlapping_sweeps
    listed = runner.invoke(app, ["store", str(root)])
    assert listed.exit_code == 0, listed.output
    assert "2 base session(s), 6 run(s)" in listed.output and "0 entries no sweep refers to" in listed.output
    assert "first, second" in listed.output


def test_a_code_change_misses_the_store_and_no_reuse_recomputes(overlapping_sweeps, icons_cache):
    from ckpd_core import TrialConfig
    from sweeps.store import Store, StoredTrial, trial_key

    root, first, _ = overlapping_sweeps
    store = Store(root)
    stored_before = sorted(p.name for p in (root / "store" / "trials").glob("*.json"))
    for entry in (root / "store" / "trials").glob("*.json"):  # what another version of the code stored
        stored = StoredTrial.from_json(entry.read_text())
        stored.key = trial_key(TrialConfig.from_dict(stored.config), digest="older-code")
        store.save(stored, None)
        entry.unlink()
    recomputed = launch(parse_spec(_rank_spec(icons_cache, "after-change", [4], seeds=[0])), root, quiet=True)
    rows = read_sessions(recomputed.results_dir)
    assert rows.reused_from.isna().all() and (rows.seconds > 0).all()
    assert recomputed.base_trainings == 0  # the base session's key does not include the code digest

    again = launch(
        parse_spec(_rank_spec(icons_cache, "no-reuse", [4], seeds=[0])), root, quiet=True, reuse=False
    )
    assert again.base_trainings == 1 and (again.results_dir / "base").exists()
    fresh = read_sessions(again.results_dir)
    assert fresh.reused_from.isna().all() and (fresh.seconds > 0).all()
    original = read_sessions(first.results_dir).query("rank == 4 and seed == 0").sort_values("session")
    for column in _COMPARED:  # recomputed from scratch, the same numbers
        assert _same(fresh.sort_values("session")[column], original[column]), column
    after = sorted(p.name for p in (root / "store" / "trials").glob("*.json"))
    assert (
        len(after) == len(stored_before) + 1
    )  # the moved entries, after-change's run; --no-reuse stored nothing


def test_a_stored_pruned_run_continues_from_its_last_session(pruned_sweep, icons_cache):
    """The pruned lr=0.5 run (seed 1, stopped after session 1) is needed whole by a sweep without pruner."""
    root = pruned_sweep.results_dir.local_path.parent
    spec = tiny_spec(icons_cache, "continued", space={"lr": {"grid": [0.5]}}, seeds=[1], pruner=None)
    continued = launch(parse_spec(spec), root, quiet=True)
    rows = read_sessions(continued.results_dir).sort_values("session")
    assert rows.session.tolist() == list(range(NUM_SESSIONS))
    assert rows.reused_from.notna().tolist() == [True, True, False]
    assert continued.base_trainings == 0 and read_trials(continued.results_dir).status.tolist() == [
        "completed"
    ]
    spec["name"] = "from-scratch"
    scratch = launch(parse_spec(spec), root, quiet=True, reuse=False)
    whole = read_sessions(scratch.results_dir).sort_values("session")
    for column in _COMPARED:
        assert _same(rows[column], whole[column]), column


def test_two_launches_at_once_under_one_root_train_each_base_session_once(icons_cache, tmp_path):
    """Two local sweeps started together (each its own Ray) overlap on rank 4 with the same seed."""
    root = tmp_path / "results"
    drivers = []
    for name, ranks in (("left", [4, 2]), ("right", [4, 8])):
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(_rank_spec(icons_cache, name, ranks, seeds=[0])))
        drivers.append(cli_process("launch", str(path), "--results", str(root), "--num-cpus", "1", "--quiet"))
    outputs = [driver.communicate(timeout=400)[0] for driver in drivers]
    assert [d.returncode for d in drivers] == [0, 0], outputs
    trained = [int(text.split("base session trained ")[1].split(" ")[0]) for text in outputs]
    assert sum(trained) == 1, outputs
    assert len(list((root / "store" / "base").glob("base-*.pt"))) == 1
    sessions = pd.concat([read_sessions(root / "left"), read_sessions(root / "right")])
    rank4 = sessions[sessions["rank"] == 4]
    assert len(rank4) == 2 * NUM_SESSIONS
    assert rank4.reused_from.isna().sum() == NUM_SESSIONS  # computed by one sweep, reused by the other
    assert len(list((root / "store" / "trials").glob("*.json"))) == 3
