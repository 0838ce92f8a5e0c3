"""Searching and paired pruning against real Optuna studies, without running Ray."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import optuna
import pytest
from optuna.trial import TrialState
from ray.tune.schedulers import TrialScheduler
from ray.tune.search import Searcher

from sweeps.scheduler import OptunaPruningScheduler
from sweeps.searcher import DUPLICATE_OF, TWIN_STATE, OptunaSweepSearcher
from sweeps.spec import TrialPlan, parse_spec
from sweeps.study import (
    COMPARED_WITH,
    OPTUNA_NUMBER,
    PRUNED_AT,
    PRUNED_BY_SEED,
    RUN_NUMBER,
    SweepStudies,
)

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
    studies = SweepStudies(tmp_path / "optuna.journal", spec.name, spec.mode)
    return (
        OptunaSweepSearcher(spec, studies, SESSIONS),
        OptunaPruningScheduler(spec, studies, SESSIONS),
        studies,
    )


def two_ranks(tmp_path, **changes):
    """A grid of two ranks, one seed: the first run finishes, the second is judged against it."""
    return make(
        tmp_path, search={"algorithm": "grid"}, num_samples=1, space={"rank": {"grid": [4, 8]}}, **changes
    )


def report(
    searcher, scheduler, config: dict, trial_id: str, accuracies: list[float], finish=True, start=0
) -> str:
    """Feed one run's session results, from session ``start``, through scheduler and searcher as Tune does."""
    trial = SimpleNamespace(trial_id=trial_id, config=config)
    result = {}
    for session, acc in enumerate(accuracies, start=start):
        result = {"session": session, "val_acc_all": acc}
        if scheduler.on_trial_result(None, trial, result) == TrialScheduler.STOP:
            searcher.on_trial_complete(trial_id, result)  # what Tune does after a STOP
            return "stopped"
    if finish:
        searcher.on_trial_complete(trial_id, result)
    return "finished"


def play(searcher, scheduler, trial_id: str, accuracies: list[float]) -> tuple[str, dict]:
    config = searcher.suggest(trial_id)
    return report(searcher, scheduler, config, trial_id, accuracies), config


def run_trial(studies, config):
    return studies.runs(config["seed"]).trial(config[RUN_NUMBER])


def test_raw_falling_accuracy_would_never_be_pruned_by_optunas_median_pruner():
    """The pitfall: Optuna's median pruner judges a trial by its best value over all steps."""
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.MedianPruner(1, 1))
    good = study.ask()
    for step, acc in enumerate([0.9, 0.8, 0.7]):
        good.report(acc, step)
    study.tell(good, 0.7)
    bad = study.ask()
    bad.report(0.9, 0)  # same shared base session
    bad.report(0.2, 1)  # far worse than the completed trial at session 1
    assert not bad.should_prune()


def test_worse_run_is_pruned_on_the_mean_so_far_and_prunes_its_configuration(tmp_path):
    searcher, scheduler, studies = two_ranks(tmp_path)
    outcome, good = play(searcher, scheduler, "good", [0.9, 0.8, 0.7, 0.6])
    assert outcome == "finished"
    outcome, bad = play(searcher, scheduler, "bad", [0.9, 0.2, 0.1, 0.1])
    assert outcome == "stopped"
    good_run, bad_run = run_trial(studies, good), run_trial(studies, bad)
    assert good_run.state == TrialState.COMPLETE and good_run.value == pytest.approx(
        0.75
    )  # avg over sessions
    assert bad_run.state == TrialState.PRUNED and bad_run.user_attrs[PRUNED_AT] == 1
    # the recorded intermediate values are the objective's partial values: the mean so far
    assert bad_run.intermediate_values == {0: pytest.approx(0.9), 1: pytest.approx(0.55)}
    assert bad_run.user_attrs["val_acc_all"] == [0.9, 0.2]
    assert bad_run.user_attrs[COMPARED_WITH] == [
        {
            "run": good_run.number,
            "seed": 0,
            "configuration": good[OPTUNA_NUMBER],
            "value": pytest.approx(0.85),
        }
    ]
    configs = studies.configs.study
    assert configs.trials[good[OPTUNA_NUMBER]].state == TrialState.COMPLETE
    assert configs.trials[good[OPTUNA_NUMBER]].value == pytest.approx(0.75)
    assert configs.trials[bad[OPTUNA_NUMBER]].state == TrialState.PRUNED
    assert configs.best_trial.params["rank"] == 4


@pytest.mark.parametrize(("objective", "outcome"), [("avg", "finished"), ("last", "stopped")])
def test_the_pruner_compares_the_objectives_partial_value(tmp_path, objective, outcome):
    searcher, scheduler, studies = two_ranks(tmp_path, objective=objective)
    play(searcher, scheduler, "first", [0.9, 0.5, 0.5, 0.5])
    # ahead on the mean so far (0.725 > 0.7), behind at session 1 (0.45 < 0.5)
    assert play(searcher, scheduler, "second", [1.0, 0.45, 0.5, 0.5])[0] == outcome


def test_a_margin_spares_gaps_within_the_noise_only(tmp_path):
    pruner = {"name": "median", "args": {"n_startup_trials": 1, "n_warmup_steps": 1}, "margin": 0.01}
    searcher, scheduler, studies = make(
        tmp_path,
        pruner=pruner,
        search={"algorithm": "grid"},
        num_samples=1,
        space={"rank": {"grid": [2, 4, 8]}},
    )
    play(searcher, scheduler, "first", [0.9, 0.8, 0.7, 0.6])
    assert play(searcher, scheduler, "close", [0.9, 0.795, 0.7, 0.6])[0] == "finished"  # 0.25 points behind
    outcome, far = play(searcher, scheduler, "far", [0.9, 0.76, 0.7, 0.6])  # 2 points behind
    assert outcome == "stopped" and run_trial(studies, far).intermediate_values[1] == pytest.approx(0.83)


def test_final_session_is_never_pruned(tmp_path):
    searcher, scheduler, studies = two_ranks(
        tmp_path, pruner={"name": "median", "args": {"n_warmup_steps": 3}}
    )
    play(searcher, scheduler, "first", [0.9, 0.8, 0.7, 0.6])
    outcome, config = play(searcher, scheduler, "worse", [0.9, 0.5, 0.4, 0.1])
    assert outcome == "finished"
    assert run_trial(studies, config).state == TrialState.COMPLETE


def test_failed_run_fails_its_configuration(tmp_path):
    searcher, _, studies = make(tmp_path)
    config = searcher.suggest("crash")
    searcher.on_trial_complete("crash", None, error=True)
    assert run_trial(studies, config).state == TrialState.FAIL
    assert studies.configs.trial(config[OPTUNA_NUMBER]).state == TrialState.FAIL


def test_pruning_is_paired_by_seed(tmp_path):
    """Seed 0 runs high and seed 1 low for every configuration: a run is judged among its own seed's."""
    searcher, scheduler, studies = make(
        tmp_path,
        objective="last",
        search={"algorithm": "grid"},
        num_samples=1,
        seeds=[0, 1],
        space={"rank": {"grid": [2, 4, 8, 16]}},
    )
    level = {0: [0.95, 0.90], 1: [0.60, 0.50]}  # (base, session 1) by seed

    def run(trial_id, session1):
        config = searcher.suggest(trial_id)
        base = level[config["seed"]][0]
        return report(searcher, scheduler, config, trial_id, [base, session1, session1, session1]), config

    assert run("a0", 0.90)[0] == run("a1", 0.50)[0] == "finished"
    assert run("b0", 0.92)[0] == run("b1", 0.52)[0] == "finished"
    assert run("c0", 0.95)[0] == "finished"
    # above its seed's runs (0.50, 0.52), below the pooled median (0.90): kept
    outcome, c1 = run("c1", 0.60)
    assert outcome == "finished" and run_trial(studies, c1).state == TrialState.COMPLETE
    # above the pooled median (0.75) of all runs, below its seed's (0.90, 0.92, 0.95): pruned
    outcome, d0 = run("d0", 0.85)
    assert outcome == "stopped"
    record = run_trial(studies, d0).user_attrs[COMPARED_WITH]
    assert sorted(r["value"] for r in record) == pytest.approx([0.90, 0.92, 0.95])
    assert {r["seed"] for r in record} == {0}
    # the configuration is pruned: its seed 1 never starts
    assert studies.configs.trial(d0[OPTUNA_NUMBER]).state == TrialState.PRUNED
    assert searcher.suggest("next") == Searcher.FINISHED
    assert [t.user_attrs["seed"] for t in studies.runs(1).study.trials] == [1, 1, 1]


def test_a_pruned_seed_stops_the_other_seeds_of_its_configuration(tmp_path):
    searcher, scheduler, studies = make(
        tmp_path,
        search={"algorithm": "grid"},
        num_samples=1,
        seeds=[0, 1],
        space={"rank": {"grid": [4, 8]}},
    )
    for trial_id in ("g0", "g1"):
        play(searcher, scheduler, trial_id, [0.9, 0.8, 0.7, 0.6])
    seed0, seed1 = searcher.suggest("b0"), searcher.suggest("b1")  # run side by side
    report(searcher, scheduler, seed1, "b1", [0.9], finish=False)  # seed 1 reports its base session
    assert report(searcher, scheduler, seed0, "b0", [0.9, 0.1]) == "stopped"
    assert report(searcher, scheduler, seed1, "b1", [0.8], start=1) == "stopped"  # at its next report
    sibling = run_trial(studies, seed1)
    assert sibling.state == TrialState.PRUNED
    assert sibling.user_attrs[PRUNED_AT] == 1 and sibling.user_attrs[PRUNED_BY_SEED] == 0
    assert COMPARED_WITH not in sibling.user_attrs  # stopped with its configuration, not judged


def test_a_twin_sampled_while_its_original_runs_is_not_run_again(tmp_path):
    """One configuration sampled three times, three seeds, two slots: runs once per seed."""
    searcher, scheduler, studies = make(
        tmp_path, space={"rank": {"choice": [4]}}, num_samples=3, seeds=[0, 1, 2], pruner=None
    )
    first, second = searcher.suggest("t0"), searcher.suggest("t1")
    report(searcher, scheduler, first, "t0", [0.9, 0.8, 0.7, 0.6])
    third = searcher.suggest("t2")  # seed 2 of the same configuration
    report(searcher, scheduler, second, "t1", [0.9, 0.8, 0.7, 0.5])
    assert searcher.suggest("t3") == Searcher.FINISHED  # samples 2 and 3: twins of a running configuration
    configs = studies.configs.study
    twins = [t for t in configs.trials if DUPLICATE_OF in t.user_attrs]
    assert [t.state for t in twins] == [TrialState.RUNNING] * 2
    assert {t.user_attrs[TWIN_STATE] for t in twins} == {"running"}
    report(searcher, scheduler, third, "t2", [0.9, 0.8, 0.6, 0.6])
    assert [c["seed"] for c in (first, second, third)] == [0, 1, 2]
    origin = configs.trials[first[OPTUNA_NUMBER]]
    assert origin.value == pytest.approx((0.75 + 0.725 + 0.725) / 3)  # mean over seeds of avg accuracy
    assert [t.value for t in studies.configs.study.trials if DUPLICATE_OF in t.user_attrs] == [
        origin.value
    ] * 2


def test_a_twin_of_a_pruned_configuration_is_pruned_without_running(tmp_path):
    searcher, scheduler, studies = make(
        tmp_path, space={"rank": {"grid": [4, 8]}}, num_samples=2, seeds=[0], search={"algorithm": "random"}
    )
    play(searcher, scheduler, "good", [0.9, 0.8, 0.7, 0.6])
    play(searcher, scheduler, "bad", [0.9, 0.1, 0.1, 0.1])
    assert searcher.suggest("again") == Searcher.FINISHED  # the second pass over the grid: both twins
    states = [(t.params["rank"], t.state, DUPLICATE_OF in t.user_attrs) for t in studies.configs.study.trials]
    assert states == [
        (4, TrialState.COMPLETE, False),
        (8, TrialState.PRUNED, False),
        (4, TrialState.COMPLETE, True),
        (8, TrialState.PRUNED, True),
    ]


def test_each_configuration_runs_once_per_seed(tmp_path):
    searcher, _, studies = make(tmp_path, num_samples=8, seeds=[0, 1], pruner=None)
    launched = []
    while (config := searcher.suggest(f"t{len(launched)}")) != Searcher.FINISHED:
        launched.append(config)
        runs = studies.runs(config["seed"]).study
        live = optuna.trial.Trial(runs, runs.trials[config[RUN_NUMBER]]._trial_id)
        live.set_user_attr("val_acc_all", [config["rank"] / 10 + config["seed"] / 100] * SESSIONS)
        searcher.on_trial_complete(f"t{len(launched) - 1}", {"session": SESSIONS - 1})
    runs = [(c["rank"], c["seed"]) for c in launched]
    assert len(runs) == len(set(runs))  # no (configuration, seed) runs twice
    ranks = {rank for rank, _ in runs}
    assert sorted(runs) == sorted((rank, seed) for rank in ranks for seed in (0, 1))
    study = studies.configs.study
    skipped = [t for t in study.trials if DUPLICATE_OF in t.user_attrs]
    assert len(skipped) + len(ranks) == 8  # every sample either ran (with both seeds) or reused a result
    for t in study.trials:
        assert t.value == pytest.approx(t.params["rank"] / 10 + 0.005)  # the mean over seeds 0 and 1


def test_a_huge_num_samples_is_planned_lazily(tmp_path):
    """10**12 samples: the plan is computed per index, never listed (that took all memory and hung)."""
    searcher, _, _ = make(tmp_path, num_samples=10**12, seeds=[0, 1], pruner=None)
    assert searcher.total_trials == 2 * 10**12
    first, second = searcher.suggest("t0"), searcher.suggest("t1")
    assert (first["seed"], second["seed"]) == (0, 1) and first["rank"] == second["rank"]


def test_the_plan_passes_over_the_grid_in_order(tmp_path):
    space = {"rank": {"grid": [2, 4]}, "lr": {"choice": [0.1, 0.2, 0.3]}, "top_n": {"grid": [1, 2, 3]}}
    for search, num_samples in (("grid", 1), ("random", 3)):
        spec = parse_spec({"space": space, "search": {"algorithm": search}, "num_samples": num_samples})
        plan = TrialPlan(spec)
        names, values = zip(*spec.grid_axes(), strict=True)
        grid = [dict(zip(names, combo, strict=True)) for combo in itertools.product(*values)]
        assert [plan[i] for i in range(plan.size)] == grid * num_samples
    with pytest.raises(IndexError):
        plan[plan.size]


def test_searcher_state_survives_a_restart(tmp_path):
    searcher, scheduler, studies = make(tmp_path, seeds=[0, 1], pruner=None)
    first = searcher.suggest("t0")
    searcher.save(str(tmp_path / "searcher.pkl"))
    restored, _, _ = make(tmp_path, seeds=[0, 1], pruner=None)
    restored.restore(str(tmp_path / "searcher.pkl"))
    second = restored.suggest("t1")
    assert (second["rank"], second["seed"]) == (first["rank"], 1)
    assert second[OPTUNA_NUMBER] == first[OPTUNA_NUMBER]
