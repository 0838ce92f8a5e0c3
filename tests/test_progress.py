"""The progress printer: its live display on a terminal, plain lines elsewhere, the ETA, ``status``, and
the results callback and printer as a resumed sweep gets them back from Tune (no Ray)."""

from __future__ import annotations

import io
import json
import math
import pickle
import unicodedata
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import numpy as np
import pytest
from rich.console import Console
from scipy import stats
from typer.testing import CliRunner

from sweeps.callback import SweepResultsCallback
from sweeps.cli import app
from sweeps.folder import MARKER, create_sweep_folder, mark_finished
from sweeps.objective import Objective
from sweeps.progress import ProgressPrinter
from sweeps.results import ResultsStore, read_sessions, read_trials
from sweeps.spec import parse_spec
from sweeps.storage import Location

from .helpers import session_row, tiny_spec, trial_row


def callback(tmp_path, quiet: bool = False, **kwargs) -> SweepResultsCallback:
    printer = ProgressPrinter(Objective(), "max", quiet=quiet)
    return SweepResultsCallback(tmp_path / "sweep", "sweep", None, 3, printer, **kwargs)


def report(cb: SweepResultsCallback, trial_id: str, session: int, base_trained: bool = False) -> None:
    trial = SimpleNamespace(trial_id=trial_id, config={"rank": 4, "seed": 0})
    result = {**session_row(trial_id, session), "base_key": "base-a", "base_trained": base_trained}
    cb.on_trial_result(0, [trial], trial, result)


def test_the_callback_keeps_its_progress_printer_when_pickled(tmp_path, capsys):
    """Tune pickles the callbacks with the sweep; the restored one must still print progress."""
    restored = pickle.loads(pickle.dumps(callback(tmp_path)))
    assert isinstance(restored.on_event, ProgressPrinter) and not restored.on_event.quiet
    report(restored, "t1", 0)
    assert "t1 rank=4 seed=0: session 0 val_acc_all 0.8500" in capsys.readouterr().out


def test_base_sessions_trained_before_a_resume_are_counted_with_those_after(tmp_path):
    first = callback(tmp_path)
    report(first, "t1", 0, base_trained=True)
    first.count_base_training("base-b")  # trained by the driver before the trials
    report(first, "t1", 1)
    state = first.get_state()  # what Tune keeps in its experiment state
    resumed = pickle.loads(pickle.dumps(callback(tmp_path)))  # as pickled when the Tuner was made
    resumed.set_state(state)
    report(resumed, "t2", 0, base_trained=True)
    assert first.base_trainings == 2 and resumed.trained_bases == ["base-a", "base-b", "base-a"]


def test_a_printer_for_a_resumed_sweep_counts_earlier_runs(tmp_path, capsys):
    printer = ProgressPrinter(Objective(), "max", total=6)
    store = ResultsStore(tmp_path)
    store.write_sessions([session_row(t, s) for t in ("t1", "t2", "t3") for s in range(2)])
    store.write_trials([trial_row("t1"), trial_row("t2", status="pruned")])
    printer.resume_from(read_trials(tmp_path), read_sessions(tmp_path))
    printer("session", {**session_row("t3", 2), "config": {"seed": 0}})
    printer("completed", {**trial_row("t3"), "config": {"seed": 0}})
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert "runs: 2 completed, 1 pruned, 0 failed, 0 running (of at most 6)" in last
    # t3's objective is over all its sessions, the two an earlier driver saw included
    whole = np.mean([session_row("t3", s)["val_acc_all"] for s in range(3)])
    assert f"t3 completed (seed=0): avg val_acc_all {100 * whole:.2f}%" in last


def test_runs_waiting_for_a_node_that_fits_are_warned_about_once_even_when_quiet(tmp_path, capsys):
    fit = {"text": "each run asks for 1 GPU: 1 of the 2 live node(s) fit it", "nodes": 1}
    cb = callback(tmp_path, quiet=True, wait_warning_s=0)
    cb.cluster_fit = lambda: (fit["text"], fit["nodes"], None)
    cb.on_step_end(0, [SimpleNamespace(status="PENDING"), SimpleNamespace(status="RUNNING")])
    waiting = [SimpleNamespace(status="PENDING"), SimpleNamespace(status="TERMINATED")]
    cb.on_step_end(1, waiting)  # none runs, but a node fits: the run waits for it to be free
    assert capsys.readouterr().out == ""
    fit.update(text="each run asks for 1 GPU: 0 of the 1 live node(s) fit it", nodes=0)  # it left
    for step in range(3):
        cb.on_step_end(step, waiting)
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "warning: runs have waited 0 s for resources with none running: each run asks for 1 GPU: 0 of "
        "the 1 live node(s) fit it"
    ]


# ------------------------------------------------------------------------------ live display and ETA

runner = CliRunner()
RANK4 = (0.80, 0.83, 0.81)  # the objective of rank=4's runs on seeds 0, 1, 2: the best
RANK8 = (0.70, 0.72)  # seeds 0, 1: significantly worse than rank=4 on the seeds both ran
RANK16 = (0.78,)  # seed 0 only: no paired test is possible, so it counts as tied with the best


class FakeClock:
    """Seconds the test sets, for elapsed time and the rate of session reports."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def run_sessions(trial_id: str, seed: int, rank: int, value: float) -> list[dict]:
    """A run's three session rows whose mean val_acc_all (the default objective) is ``value``."""
    return [
        {**session_row(trial_id, s, seed=seed, rank=rank), "val_acc_all": value + step}
        for s, step in enumerate((0.02, 0.0, -0.02))
    ]


def feed(printer: ProgressPrinter, clock: FakeClock) -> None:
    """Six completed runs, one pruned, one still running; a session report every 10 s."""
    runs = [(4, RANK4), (8, RANK8), (16, RANK16)]
    finished = [(rank, seed, value) for rank, values in runs for seed, value in enumerate(values)]
    for number, (rank, seed, value) in enumerate(finished):
        config = {"rank": rank, "seed": seed}
        for row in run_sessions(f"t{number}", seed, rank, value):
            clock.now += 10
            printer("session", {**row, "config": config})
        printer("completed", {**trial_row(f"t{number}", seed=seed, rank=rank), "config": config})
    clock.now += 10
    printer("session", {**session_row("t6", 0, rank=32), "config": {"rank": 32, "seed": 0}})
    printer("pruned", {**trial_row("t6", "pruned", rank=32), "config": {"rank": 32, "seed": 0}})
    clock.now += 10
    printer("session", {**session_row("t7", 0, seed=1, rank=32), "config": {"rank": 32, "seed": 1}})


def best_line(label: str = "rank=4") -> str:
    """The best-so-far line for the runs of RANK4: their mean and 95% Student-t interval over 3 seeds."""
    mean, sem = np.mean(RANK4), stats.sem(RANK4)
    low, high = stats.t.interval(0.95, len(RANK4) - 1, loc=mean, scale=sem)
    return (
        f"best so far (avg val_acc_all): {label} {100 * mean:.2f}% [{100 * low:.2f}, {100 * high:.2f}] "
        "over 3 seeds, 1 other tied"
    )


def test_the_fixture_runs_separate_rank_8_from_the_best():
    assert stats.ttest_rel(RANK4[:2], RANK8).pvalue < 0.05  # one testable pair: Holm changes nothing


def test_the_live_display_shows_counts_best_with_interval_elapsed_and_eta_below_the_lines():
    raw, clock = io.StringIO(), FakeClock()
    console = Console(record=True, force_terminal=True, width=120, file=raw)
    printer = ProgressPrinter(Objective(), "max", total=12, num_sessions=3, console=console, clock=clock)
    printer.start()
    feed(printer, clock)
    printer.stop()
    lines = console.export_text().splitlines()
    # 20 reports 10 s apart: 0.1 session/s; 8 runs seen of 12, t7 has 2 sessions to go
    sessions_left = (12 - 8) * 3 + 2
    assert lines[-4:] == [
        "runs: 6 completed, 1 pruned, 0 failed, 1 running (of at most 12)",
        best_line(),
        f"elapsed 0:03:20, ETA <= {sessions_left / 0.1 / 60:.0f} min",
        "",
    ]
    assert "  t0 rank=4 seed=0: session 0 val_acc_all 0.8200" in lines
    assert "t6 pruned at session 1 (rank=32 seed=0)" in lines  # the overview is below, not on the line
    assert f"t2 completed (rank=4 seed=2): avg val_acc_all {100 * RANK4[2]:.2f}%" in lines
    first_frame = lines[:3]
    assert first_frame[0] == "runs: 0 completed, 0 pruned, 0 failed, 0 running (of at most 12)"
    assert first_frame[2] == "elapsed 0:00:00, ETA: n/a"
    assert raw.getvalue().endswith("\x1b[?25h")  # the cursor is given back


def test_plain_output_has_no_control_characters_and_each_finished_run_carries_the_overview():
    out, clock = io.StringIO(), FakeClock()
    console = Console(file=out, force_terminal=False, width=80)
    printer = ProgressPrinter(Objective(), "max", total=12, num_sessions=3, console=console, clock=clock)
    printer.start()
    feed(printer, clock)
    error = "RuntimeError: \x1b[31mCUDA out of memory\x1b[0m\r"  # as a library may colour its message
    failed = {**trial_row("t7", "failed", seed=1, rank=32), "error": error}
    printer("failed", {**failed, "config": {"rank": 32, "seed": 1}})
    printer.warn("a [bold]bracketed[/bold] message\twith a tab")
    printer.stop()
    text = out.getvalue()
    controls = {ch for ch in text if unicodedata.category(ch) == "Cc" and ch != "\n"}
    assert not controls, controls
    lines = text.splitlines()
    assert all(len(line) > 80 for line in lines if " completed (" in line)  # never wrapped
    pruned = next(line for line in lines if line.startswith("t6 pruned at session 1 (rank=32 seed=0)"))
    assert "runs: 6 completed, 1 pruned, 0 failed, 0 running (of at most 12)" in pruned
    assert best_line() in pruned and "elapsed 0:03:10, ETA <= " in pruned
    assert " ".join(lines[-1].split()) == "warning: a [bold]bracketed[/bold] message with a tab"
    assert lines[-2].startswith("t7 failed (rank=32 seed=1): RuntimeError: CUDA out of memory  runs: 6 ")
    assert "runs: 6 completed, 1 pruned, 1 failed, 0 running" in lines[-2]


def test_eta_is_the_most_sessions_left_at_the_rate_reported_so_far():
    clock = FakeClock(100.0)
    printer = ProgressPrinter(Objective(), "max", total=4, num_sessions=3, clock=clock)

    def report(trial_id: str, session: int, at: float) -> None:
        clock.now = at
        printer("session", {**session_row(trial_id, session), "config": {"seed": 0}})

    report("t1", 0, 110.0)
    assert printer.progress().eta_s is None  # one report: no rate yet
    assert printer.progress().time_text() == "elapsed 0:00:10, ETA: n/a"
    report("t1", 1, 130.0)
    report("t2", 0, 150.0)
    clock.now = 160.0
    progress = printer.progress()
    rate = 2 / (150.0 - 110.0)  # two intervals between three reports
    left = (4 - 2) * 3 + (3 - 2) + (3 - 1)  # two runs not started, the rest of t1 and t2
    assert progress.elapsed_s == 60.0 and progress.sessions_left == left and progress.running == 2
    assert progress.eta_s == pytest.approx(left / rate)
    assert progress.time_text() == f"elapsed 0:01:00, ETA <= {left / rate / 60:.0f} min"
    printer("pruned", {**trial_row("t1", "pruned"), "config": {"seed": 0}})
    assert printer.progress().sessions_left == left - 1  # pruning t1 drops its last session


@pytest.fixture
def running_sweep(tmp_path, icons_cache) -> tuple[Location, datetime]:
    """A sweep folder as a running driver leaves it: rank=2 done on 3 seeds, rank=4 on seed 0, rank=4
    seed 1 at its first session; sessions written a minute apart, the last 10 minutes ago."""
    spec = parse_spec(tiny_spec(icons_cache, "live", space={"rank": {"grid": [2, 4, 8]}}, seeds=[0, 1, 2]))
    location = Location.of(tmp_path / "results" / "live")
    create_sweep_folder(location, spec)
    now = datetime.now(timezone.utc)
    marker = json.loads((location / MARKER).read_text())
    marker["created_at"] = (now - timedelta(hours=1)).isoformat()
    (location / MARKER).write_text(json.dumps(marker))
    runs = [("t1", 0, 2, RANK4[0]), ("t2", 1, 2, RANK4[1]), ("t3", 2, 2, RANK4[2]), ("t4", 0, 4, 0.7)]
    rows = [row for trial_id, seed, rank, value in runs for row in run_sessions(trial_id, seed, rank, value)]
    rows.append(session_row("t5", 0, seed=1, rank=4))
    first = now - timedelta(minutes=10 + len(rows) - 1)
    store = ResultsStore(location)
    store.write_sessions([{**row, "written_at": first + timedelta(minutes=i)} for i, row in enumerate(rows)])
    store.write_trials([trial_row(trial_id, seed=seed, rank=rank) for trial_id, seed, rank, _ in runs])
    return location, first


def test_status_of_a_running_sweep_shows_counts_best_so_far_and_eta(running_sweep):
    location, _ = running_sweep
    done = runner.invoke(app, ["status", str(location)])
    assert done.exit_code == 0, done.output
    lines = done.output.splitlines()
    assert lines[0] == "sweep 'live': 13 session rows"
    assert lines[1] == "runs: 4 completed, 0 pruned, 0 failed, 1 running (of at most 9)"
    assert lines[2] == best_line("rank=2")  # rank=2 has the values of RANK4; rank=4 ran seed 0 only: tied
    left = (9 - 5) * 3 + 2  # 4 runs not started, t5's two sessions to go; one session a minute
    assert lines[3].startswith("elapsed 1:00:0")
    assert lines[3].endswith(f", last session written 10 min ago, ETA <= {left} min")
    assert "verdict on avg val_acc_all over 3 seeds" in done.output


def test_status_of_a_finished_sweep_says_how_long_it_took_and_gives_no_eta(running_sweep):
    location, _ = running_sweep
    mark_finished(location, True)  # as the driver does when Tune has run every trial
    marker = json.loads((location / MARKER).read_text())
    marker["finished_at"] = (datetime.fromisoformat(marker["created_at"]) + timedelta(minutes=50)).isoformat()
    (location / MARKER).write_text(json.dumps(marker))
    done = runner.invoke(app, ["status", str(location)])
    assert done.exit_code == 0, done.output
    assert done.output.splitlines()[3] == "finished, in 0:50:00"
    mark_finished(location, False)  # a resume drives it again
    assert "finished_at" not in json.loads((location / MARKER).read_text())
    assert "ETA <= " in runner.invoke(app, ["status", str(location)]).output


def test_status_of_a_folder_without_its_creation_time_counts_from_the_first_session(running_sweep):
    location, first = running_sweep
    marker = json.loads((location / MARKER).read_text())
    del marker["created_at"]
    (location / MARKER).write_text(json.dumps(marker))
    done = runner.invoke(app, ["status", str(location)])
    assert done.exit_code == 0, done.output
    elapsed = (datetime.now(timezone.utc) - first).total_seconds()
    assert f"elapsed 0:{math.floor(elapsed / 60):02d}:" in done.output
