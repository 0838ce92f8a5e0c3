"""The results callback and the progress printer as a resumed sweep gets them back from Tune (no Ray)."""

from __future__ import annotations

import pickle
from types import SimpleNamespace

from sweeps.callback import SweepResultsCallback
from sweeps.objective import Objective
from sweeps.progress import ProgressPrinter
from sweeps.results import ResultsStore, read_sessions, read_trials

from .helpers import session_row, trial_row


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
    assert "running 0 | completed 2 | pruned 1 | failed 0 of at most 6" in last


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
