"""A Ray Tune scheduler that asks a real Optuna pruner, at every session report, whether to stop a trial.

What the pruner sees: Optuna's percentile/median pruners compare a trial's *best* intermediate value
over all its steps with the others' values at the current step. In FSCIL accuracy falls session by
session, so a trial's best value is always its (shared) base-session accuracy and nothing would ever
be pruned. The intermediate value at step ``t`` is therefore the running sum of the metric over
sessions ``0..t`` (minus ``t+1`` when minimising), which only moves in the improving direction: its
best is its current value, and at equal steps it ranks trials by their mean accuracy so far.
When the pruner says prune, the study records the trial PRUNED (and the session) before Tune stops it.
"""

from __future__ import annotations

import logging

from optuna.trial import Trial as OptunaTrial
from optuna.trial import TrialState
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from .spec import SweepSpec
from .study import OPTUNA_NUMBER, StudyRef

log = logging.getLogger(__name__)
PRUNED_AT = "pruned_at_session"


def pruning_value(previous: float | None, value: float, mode: str) -> float:
    """Running sum of the metric (of ``metric - 1`` when minimising), so it never gets worse."""
    step = value if mode == "max" else value - 1.0
    return step if previous is None else previous + step


class OptunaPruningScheduler(FIFOScheduler):
    """Stops a trial when the spec's Optuna pruner prunes it; never prunes at the final session."""

    def __init__(self, spec: SweepSpec, study: StudyRef, num_sessions: int) -> None:
        super().__init__()
        self.report_metric = spec.metric
        self.report_mode = spec.mode
        self.pruner = spec.build_pruner()
        self.study_ref = study
        self.last_session = num_sessions - 1

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        number = trial.config.get(OPTUNA_NUMBER)
        if number is None or self.report_metric not in result or "session" not in result:
            return TrialScheduler.CONTINUE
        study = self.study_ref.study
        study.pruner = self.pruner
        frozen = study.get_trials(deepcopy=False)[number]
        if frozen.state.is_finished():
            return TrialScheduler.STOP if frozen.state == TrialState.PRUNED else TrialScheduler.CONTINUE
        session = int(result["session"])
        # Optuna has no public way from a trial number to a live Trial; this is what study.ask() builds.
        optuna_trial = OptunaTrial(study, frozen._trial_id)
        if session not in frozen.intermediate_values:
            previous = frozen.intermediate_values.get(session - 1)
            value = pruning_value(previous, float(result[self.report_metric]), self.report_mode)
            optuna_trial.report(value, step=session)
        if session >= self.last_session or not optuna_trial.should_prune():
            return TrialScheduler.CONTINUE
        optuna_trial.set_user_attr(PRUNED_AT, session)
        study.tell(number, state=TrialState.PRUNED)
        log.info("trial %s pruned at session %d", trial.trial_id, session)
        return TrialScheduler.STOP
