"""A Ray Tune searcher that proposes trials with an Optuna sampler and never mistakes a pruned trial for a
completed one.

Ray's own ``OptunaSearch`` tells Optuna that a trial stopped by a scheduler COMPLETED with its early
value; in FSCIL, where accuracy falls session by session, that makes stopped trials look best. Here
the pruning scheduler marks stopped trials PRUNED in the study first, and this searcher tells
Optuna only about trials that finished every session (COMPLETE) or failed (FAIL).
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from ray.tune.search import Searcher

from .spec import SweepSpec
from .study import OPTUNA_NUMBER, StudyRef

log = logging.getLogger(__name__)
DUPLICATE_OF = "duplicate_of"


class OptunaSweepSearcher(Searcher):
    """Configurations from the spec's sampler (grid points fixed), each repeated once per seed."""

    def __init__(self, spec: SweepSpec, study: StudyRef, num_sessions: int) -> None:
        super().__init__(metric=spec.metric, mode=spec.mode)
        self.spec = spec
        self.study_ref = study
        self.last_session = num_sessions - 1
        self.plan = [point for _ in range(spec.num_samples) for point in spec.grid_points()]
        self.next_config = 0
        self.repeats: list[tuple[dict[str, Any], int]] = []
        self.numbers: dict[str, int] = {}
        self._sampler_ready = False

    @property
    def total_trials(self) -> int:
        return len(self.plan) * len(self.spec.seeds)

    def _study(self):
        if not self._sampler_ready:
            self._sampler_ready = True
            seed = self.spec.seeds[0]
            if self.spec.search.algorithm == "optuna":
                sampler = self.spec.build_sampler(seed)
            else:  # grid points are enqueued; random search samples every domain uniformly
                sampler = optuna.samplers.RandomSampler(seed=seed)
            return self.study_ref.open(sampler)
        return self.study_ref.study

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        study = self._study()
        while True:
            if self.repeats:
                fixed, seed = self.repeats.pop(0)
            elif self.next_config < len(self.plan):
                fixed, seed = self.plan[self.next_config], self.spec.seeds[0]
                self.next_config += 1
            else:
                return Searcher.FINISHED
            if fixed:
                study.enqueue_trial(fixed)
            trial = study.ask()
            params = {name: domain.to_optuna(trial, name) for name, domain in self.spec.space.items()}
            twin = _completed_twin(study, params, seed)
            if twin is None:
                break
            # Trials are deterministic: a configuration that already completed with this seed would give
            # the same result, so the sampler gets that result and no compute is spent (seeds included).
            trial.set_user_attr("seed", seed)
            trial.set_user_attr(DUPLICATE_OF, twin.number)
            study.tell(trial, twin.value)
            log.info("skipped %s seed %d: same as completed trial %d", params, seed, twin.number)
        if seed == self.spec.seeds[0]:
            self.repeats = [(params, other) for other in self.spec.seeds[1:]]
        trial.set_user_attr("seed", seed)
        trial.set_user_attr("tune_trial_id", trial_id)
        self.numbers[trial_id] = trial.number
        return {**params, "seed": seed, OPTUNA_NUMBER: trial.number}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        number = self.numbers.get(trial_id)
        if number is None:
            return
        study = self._study()
        if study.get_trials(deepcopy=False)[number].state.is_finished():
            return  # already PRUNED by the scheduler
        finished = result is not None and result.get("session") == self.last_session and self.metric in result
        if error or not finished:
            study.tell(number, state=TrialState.FAIL)
        else:
            study.tell(number, float(result[self.metric]))

    def save(self, checkpoint_path: str) -> None:
        state = {k: getattr(self, k) for k in ("next_config", "repeats", "numbers")}
        Path(checkpoint_path).write_bytes(pickle.dumps(state))

    def restore(self, checkpoint_path: str) -> None:
        self.__dict__.update(pickle.loads(Path(checkpoint_path).read_bytes()))


def _completed_twin(study: optuna.Study, params: dict[str, Any], seed: int) -> FrozenTrial | None:
    """A trial that ran the same parameters with the same seed to completion, if any."""
    for earlier in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if earlier.params == params and earlier.user_attrs.get("seed") == seed:
            if DUPLICATE_OF not in earlier.user_attrs:
                return earlier
    return None
