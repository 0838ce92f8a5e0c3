"""A Ray Tune scheduler that asks a real Optuna pruner, at every session report, whether to stop a run.

Pruning is paired: a run (a configuration with seed s) is one trial of seed s's study, so the pruner
compares it only with the runs of seed s at the same session: same base session, same replay draw,
and the seed's noise cancels. What it compares is the objective's partial value after the session
(see ``objective``): the mean of the metric so far for ``avg``, the current session's value for
``last`` and ``hm``.

Optuna's median and percentile pruners judge a trial by its *best* value over all its steps. In FSCIL,
where accuracy falls session by session, that is the base session's, shared by every run of a seed,
so nothing would ever be pruned. They are shown the run's current value at every step instead (its
recorded intermediate values stay the true partial values). The other pruners already judge the
current step. With the spec's ``pruner.margin``, the value shown is that much better than the run's,
so a gap smaller than the margin (the seed-to-seed noise) never prunes.

When a run is pruned, its configuration is pruned with it (the study of configurations records
PRUNED), its other seeds are stopped at their next report, and those not started never start. The
run's trial keeps the record: the session, and the runs of its seed it was compared with.
"""

from __future__ import annotations

import copy
import logging
import math

import optuna
from optuna.trial import FrozenTrial, TrialState
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from .spec import SweepSpec
from .study import (
    COMPARED_WITH,
    CONFIG,
    OPTUNA_NUMBER,
    PRUNED_AT,
    PRUNED_BY_SEED,
    RUN_NUMBER,
    SEED,
    SweepStudies,
    history,
    kept_columns,
)

log = logging.getLogger(__name__)


class OptunaPruningScheduler(FIFOScheduler):
    """Stops a run when the spec's Optuna pruner prunes it among its seed's runs (never at the end)."""

    def __init__(self, spec: SweepSpec, studies: SweepStudies, num_sessions: int) -> None:
        super().__init__()
        self.objective = spec.objective
        self.pruner = spec.build_pruner()
        self.best_so_far = spec.pruner is not None and spec.pruner.judges_best_so_far
        margin = spec.pruner.margin if spec.pruner is not None else 0.0
        self.margin = margin if spec.mode == "max" else -margin
        self.studies = studies
        self.last_session = num_sessions - 1

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if RUN_NUMBER not in trial.config or "session" not in result:
            return TrialScheduler.CONTINUE
        seed, session = trial.config["seed"], int(result["session"])
        runs = self.studies.runs(seed).study
        run = runs.get_trials(deepcopy=False)[trial.config[RUN_NUMBER]]
        if run.state.is_finished():
            return TrialScheduler.STOP if run.state == TrialState.PRUNED else TrialScheduler.CONTINUE
        configuration = self.studies.configs.trial(trial.config[OPTUNA_NUMBER])
        if configuration.state == TrialState.PRUNED:  # another seed of this configuration was pruned
            _prune(runs, run, session, {PRUNED_BY_SEED: configuration.user_attrs.get(PRUNED_BY_SEED)})
            return TrialScheduler.STOP
        value = self._record(runs, run, session, result)
        if session >= self.last_session or math.isnan(value):
            return TrialScheduler.CONTINUE
        run = runs.get_trials(deepcopy=False)[run.number]
        if not self.pruner.prune(runs, self._as_pruner_sees(run)):
            return TrialScheduler.CONTINUE
        peers = runs.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        compared = [
            {
                "run": p.number,
                SEED: p.user_attrs.get(SEED),
                CONFIG: p.user_attrs.get(CONFIG),
                "value": p.intermediate_values[session],
            }
            for p in peers
            if session in p.intermediate_values
        ]
        _prune(runs, run, session, {COMPARED_WITH: compared})
        self._prune_configuration(configuration, session, seed, value)
        log.info("trial %s (seed %d) pruned at session %d", trial.trial_id, seed, session)
        return TrialScheduler.STOP

    def _record(self, runs: optuna.Study, run: FrozenTrial, session: int, result: dict) -> float:
        """Keep the session's values on the run's trial and report the objective's partial value."""
        values = history(run, kept_columns(self.objective))
        if session < len(values[self.objective.columns[0]]):  # again, by a run resumed from a checkpoint
            return run.intermediate_values.get(session, math.nan)
        live = optuna.trial.Trial(runs, run._trial_id)  # what study.ask() builds for a running trial
        for column, kept in values.items():
            kept.append(float(result.get(column, math.nan)))
            live.set_user_attr(column, kept)
        value = self.objective.partial(values)
        if not math.isnan(value):
            live.report(value, step=session)
        return value

    def _as_pruner_sees(self, run: FrozenTrial) -> FrozenTrial:
        """The run as the pruner judges it: its current value at every step for the pruners that judge
        the best value so far, and the current value moved by the margin in the run's favour."""
        if not self.best_so_far and not self.margin:
            return run
        view = copy.copy(run)
        current = run.intermediate_values[run.last_step] + self.margin
        steps = run.intermediate_values if self.best_so_far else [run.last_step]
        view.intermediate_values = {**run.intermediate_values, **dict.fromkeys(steps, current)}
        return view

    def _prune_configuration(self, configuration: FrozenTrial, session: int, seed: int, value: float) -> None:
        study = self.studies.configs.study
        live = optuna.trial.Trial(study, configuration._trial_id)
        live.report(value, step=session)  # so the sampler sees how far it got and how it stood
        live.set_user_attr(PRUNED_AT, session)
        live.set_user_attr(PRUNED_BY_SEED, seed)
        study.tell(configuration.number, state=TrialState.PRUNED)


def _prune(runs: optuna.Study, run: FrozenTrial, session: int, record: dict) -> None:
    live = optuna.trial.Trial(runs, run._trial_id)
    live.set_user_attr(PRUNED_AT, session)
    for key, value in record.items():
        live.set_user_attr(key, value)
    runs.tell(run.number, state=TrialState.PRUNED)
