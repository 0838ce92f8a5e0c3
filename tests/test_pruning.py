"""Pruning and searching logic against a real Optuna study, without running Ray."""

from __future__ import annotations

from types import SimpleNamespace

import optuna
import pytest
from optuna.trial import TrialState
from ray.tune.schedulers import TrialScheduler
from ray.tune.search import Searcher

from sweeps.pruning import PRUNED_AT, OptunaPruningScheduler, pruning_value
from sweeps.searcher import DUPLICATE_OF, OptunaSweepSearcher
from sweeps.spec import parse_spec
from sweeps.study import OPTUNA_NUMBER, StudyRef

SESSIONS = 4


def make(tmp_path, **changes):
    raw = {
        "name": "unit",
        "space": {"rank": {"choice": [2, 4, 8]}},
        "search": {"algorithm": "random"},
        "pruner": {"name": "median", "args": {"n_startup_trials": 1, "n_warmup_steps": 1}},
        "num_samples": 4,
        **changes,
    }
    spec = parse_spec(raw)
    study = StudyRef(tmp_path / "optuna.journal", spec.name, spec.mode)
    searcher = OptunaSweepSearcher(spec, study, SESSIONS)
    return spec, searcher, OptunaPruningScheduler(spec, study, SESSIONS), study


def play(searcher, scheduler, trial_id: str, accuracies: list[float]) -> str:
    """Feed one trial's session results through scheduler and searcher as Tune would."""
    config = searcher.suggest(trial_id)
    trial = SimpleNamespace(trial_id=trial_id, config=config)
    result = {}
    for session, acc in enumerate(accuracies):
        result = {"session": session, "val_acc_all": acc}
        if scheduler.on_trial_result(None, trial, result) == TrialScheduler.STOP:
            searcher.on_trial_complete(trial_id, result)  # what Tune does after a STOP
            return "stopped"
    searcher.on_trial_complete(trial_id, result)
    return "finished"


def test_running_sum_only_moves_in_the_improving_direction():
    falling = [0.9, 0.7, 0.6, 0.5]
    sums, previous = [], None
    for acc in falling:
        previous = pruning_value(previous, acc, "max")
        sums.append(previous)
    assert sums == sorted(sums) and sums[-1] == pytest.approx(sum(falling))
    assert pruning_value(pruning_value(None, 0.3, "min"), 0.2, "min") < pruning_value(None, 0.3, "min")


def test_raw_falling_accuracy_would_never_be_pruned_by_optunas_median_pruner():
    """The pitfall the running sum avoids: Optuna compares a trial's best value over all steps."""
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.MedianPruner(1, 1))
    good = study.ask()
    for step, acc in enumerate([0.9, 0.8, 0.7]):
        good.report(acc, step)
    study.tell(good, 0.7)
    bad = study.ask()
    bad.report(0.9, 0)  # same shared base session
    bad.report(0.2, 1)  # far worse than the completed trial at session 1
    assert not bad.should_prune()


def test_worse_trial_is_pruned_recorded_and_never_completed(tmp_path):
    _, searcher, scheduler, study_ref = make(tmp_path)
    assert play(searcher, scheduler, "good", [0.9, 0.8, 0.7, 0.6]) == "finished"
    assert play(searcher, scheduler, "bad", [0.9, 0.2, 0.1, 0.1]) == "stopped"
    study = study_ref.study
    good, bad = study.trials[searcher.numbers["good"]], study.trials[searcher.numbers["bad"]]
    assert good.state == TrialState.COMPLETE and good.value == pytest.approx(0.6)
    assert bad.state == TrialState.PRUNED and bad.user_attrs[PRUNED_AT] == 1
    assert bad.intermediate_values == {0: pytest.approx(0.9), 1: pytest.approx(1.1)}
    assert study.best_trial.number == good.number


def test_final_session_is_never_pruned(tmp_path):
    late_pruner = {"name": "median", "args": {"n_warmup_steps": 3}}
    _, searcher, scheduler, study_ref = make(tmp_path, pruner=late_pruner)
    play(searcher, scheduler, "first", [0.9, 0.8, 0.7, 0.6])
    assert play(searcher, scheduler, "worse", [0.9, 0.5, 0.4, 0.1]) == "finished"
    assert study_ref.study.trials[searcher.numbers["worse"]].state == TrialState.COMPLETE


def test_failed_trial_is_told_fail(tmp_path):
    _, searcher, _, study_ref = make(tmp_path)
    config = searcher.suggest("crash")
    searcher.on_trial_complete("crash", None, error=True)
    assert study_ref.study.trials[config[OPTUNA_NUMBER]].state == TrialState.FAIL


def test_seeds_repeat_each_configuration_and_completed_twins_are_not_rerun(tmp_path):
    _, searcher, _, study_ref = make(tmp_path, num_samples=8, seeds=[0, 1], pruner=None)
    launched = []
    while (config := searcher.suggest(f"t{len(launched)}")) != Searcher.FINISHED:
        launched.append(config)
        value = config["rank"] / 10 + config["seed"] / 100
        searcher.on_trial_complete(f"t{len(launched) - 1}", {"session": SESSIONS - 1, "val_acc_all": value})
    runs = [(c["rank"], c["seed"]) for c in launched]
    assert len(runs) == len(set(runs))  # no (configuration, seed) runs twice
    ranks = {rank for rank, _ in runs}
    assert sorted(runs) == sorted((rank, seed) for rank in ranks for seed in (0, 1))
    study = study_ref.study
    skipped = [t for t in study.trials if DUPLICATE_OF in t.user_attrs]
    assert len(skipped) + len(ranks) == 8  # every sample either ran (with both seeds) or reused a result
    for t in skipped:
        assert t.value == study.trials[t.user_attrs[DUPLICATE_OF]].value
