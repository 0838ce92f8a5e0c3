"""A Ray Tune searcher: configurations from an Optuna sampler, each run once per seed, never twice.

Each configuration is one trial of the sweep's study; its value, the objective averaged over the
configuration's seeds, is what the sampler learns from. Each (configuration, seed) pair is one Tune
trial (a "run") and one trial of that seed's study, where the pruning scheduler compares it with the
other runs of the same seed.

A configuration the sampler proposes again (its twin) is never run again: it takes its twin's result
when the twin has finished, and waits for it otherwise while the slot goes to the next configuration.
Ray's own ``OptunaSearch`` tells Optuna that a trial stopped by a scheduler COMPLETED with its early
value; here a configuration is COMPLETE only when every seed finished every session, PRUNED when the
scheduler pruned one of its runs, and FAIL when a run failed.
"""

from __future__ import annotations

import logging
import math
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher

from .spec import SweepSpec, TrialPlan
from .study import (
    BY_SEED,
    CONFIG,
    OPTUNA_NUMBER,
    RUN_NUMBER,
    SEED,
    SEEDS,
    TUNE_TRIAL,
    SweepStudies,
    history,
    kept_columns,
)

log = logging.getLogger(__name__)
DUPLICATE_OF = "duplicate_of"  # user attribute of a configuration trial that reuses its twin's result
TWIN_STATE = "twin_state_when_sampled"


@dataclass
class _Configuration:
    """A configuration being run: its parameters, the seeds still to start, and each run's number."""

    params: dict[str, Any]
    to_start: list[int]
    runs: dict[int, int] = field(default_factory=dict)  # seed -> run trial number in its seed's study
    twins: list[int] = field(default_factory=list)  # configuration trials waiting for this one's result


class OptunaSweepSearcher(Searcher):
    """Configurations from the spec's sampler (grid points fixed), each run once for every seed."""

    def __init__(self, spec: SweepSpec, studies: SweepStudies, num_sessions: int) -> None:
        super().__init__(metric=spec.metric, mode=spec.mode)
        self.spec = spec
        self.studies = studies
        self.num_sessions = num_sessions
        self.plan = TrialPlan(spec)
        self.next_sample = 0
        self.configs: dict[int, _Configuration] = {}  # configuration trial number -> its runs
        self.trials: dict[str, tuple[int, int]] = {}  # Tune trial id -> (configuration number, seed)
        self._sampler_ready = False

    @property
    def total_trials(self) -> int:
        """The most runs the sweep can start (twins and pruned configurations start fewer)."""
        return self.spec.max_runs

    def _study(self) -> optuna.Study:
        if not self._sampler_ready:
            self._sampler_ready = True
            if self.spec.search.algorithm == "optuna":
                sampler = self.spec.build_sampler()
            else:  # grid points are enqueued; random search samples every domain uniformly
                sampler = optuna.samplers.RandomSampler(seed=self.spec.sampler_seed)
            return self.studies.configs.open(sampler)
        return self.studies.configs.study

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        study = self._study()
        self._settle_twins()
        while True:
            started = self._next_run()
            if started is not None:
                number, seed = started
                break
            if self.next_sample >= self.plan.size:
                return Searcher.FINISHED
            self._sample(study, self.plan[self.next_sample])
            self.next_sample += 1
        config = self.configs[number]
        runs = self.studies.runs(seed).study
        runs.enqueue_trial(config.params)
        run = runs.ask()
        for name, domain in self.spec.space.items():
            domain.to_optuna(run, name)
        run.set_user_attr(SEED, seed)
        run.set_user_attr(CONFIG, number)
        run.set_user_attr(TUNE_TRIAL, trial_id)
        config.runs[seed] = run.number
        self.trials[trial_id] = (number, seed)
        return {**config.params, "seed": seed, OPTUNA_NUMBER: number, RUN_NUMBER: run.number}

    def _next_run(self) -> tuple[int, int] | None:
        """The next seed to start of a configuration still running (not pruned, failed or finished)."""
        for number, config in self.configs.items():
            if config.to_start and not self.studies.configs.trial(number).state.is_finished():
                return number, config.to_start.pop(0)
        return None

    def _sample(self, study: optuna.Study, fixed: dict[str, Any]) -> None:
        """Ask the sampler for a configuration; plan its seeds, or tie it to its twin."""
        if fixed:
            study.enqueue_trial(fixed)
        trial = study.ask()
        params = {name: domain.to_optuna(trial, name) for name, domain in self.spec.space.items()}
        twin = next((n for n, c in self.configs.items() if c.params == params), None)
        if twin is None:
            self.configs[trial.number] = _Configuration(params, list(self.spec.seeds))
            return
        state = study.get_trials(deepcopy=False)[twin].state
        trial.set_user_attr(DUPLICATE_OF, twin)
        trial.set_user_attr(TWIN_STATE, state.name.lower())
        self.configs[twin].twins.append(trial.number)
        log.info("configuration %s sampled again: reuses trial %d (%s)", params, twin, state.name.lower())
        self._settle_twins()

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id not in self.trials:
            return
        number, seed = self.trials[trial_id]
        config = self.configs[number]
        runs = self.studies.runs(seed).study
        run = runs.get_trials(deepcopy=False)[config.runs[seed]]
        if not run.state.is_finished():
            values = history(run, self.spec.objective.columns)
            finished = len(values[self.spec.objective.columns[0]]) == self.num_sessions
            value = self.spec.objective.value(values) if finished else math.nan
            if error or not finished or math.isnan(value):
                runs.tell(run.number, state=TrialState.FAIL)
            else:
                runs.tell(run.number, value)
        self._finish_configuration(number)
        self._settle_twins()

    def _finish_configuration(self, number: int) -> None:
        """Tell the configuration's trial its result once every seed has one: the mean objective over
        its seeds, or FAIL if a run failed (PRUNED was told by the scheduler when a run was pruned)."""
        config, study = self.configs[number], self.studies.configs.study
        if study.get_trials(deepcopy=False)[number].state.is_finished():
            return
        runs = {seed: self.studies.runs(seed).trial(n) for seed, n in config.runs.items()}
        if config.to_start or not all(run.state.is_finished() for run in runs.values()):
            return
        self._record_seeds(study, number, runs)
        if any(run.state != TrialState.COMPLETE for run in runs.values()):
            study.tell(number, state=TrialState.FAIL)
        else:
            study.tell(number, sum(run.value for run in runs.values()) / len(runs))

    def _record_seeds(
        self, study: optuna.Study, number: int, runs: dict[int, optuna.trial.FrozenTrial]
    ) -> None:
        """Keep the seeds' runs on the configuration's trial (what optuna-dashboard shows): its seeds,
        each kept column by seed, and as intermediate values the seeds' mean partial objective at every
        session all of them reached."""
        live = optuna.trial.Trial(study, study.get_trials(deepcopy=False)[number]._trial_id)
        live.set_user_attr(SEEDS, sorted(runs))
        for column in kept_columns(self.spec.objective):
            live.set_user_attr(
                BY_SEED.format(column=column), {str(s): history(r, [column])[column] for s, r in runs.items()}
            )
        sessions = set.intersection(*(set(run.intermediate_values) for run in runs.values()))
        for session in sorted(sessions):
            partial = [run.intermediate_values[session] for run in runs.values()]
            live.report(sum(partial) / len(partial), step=session)

    def _settle_twins(self) -> None:
        """Give every configuration trial waiting for a twin the twin's result, once it has one."""
        study = self.studies.configs.study
        trials = study.get_trials(deepcopy=False)
        for number, config in self.configs.items():
            origin = trials[number]
            if not config.twins or not origin.state.is_finished():
                continue
            for twin in config.twins:
                if origin.state == TrialState.COMPLETE:
                    study.tell(twin, origin.value)
                else:
                    study.tell(twin, state=origin.state)
            config.twins = []

    def save(self, checkpoint_path: str) -> None:
        state = {k: getattr(self, k) for k in ("next_sample", "configs", "trials")}
        Path(checkpoint_path).write_bytes(pickle.dumps(state))

    def restore(self, checkpoint_path: str) -> None:
        self.__dict__.update(pickle.loads(Path(checkpoint_path).read_bytes()))
