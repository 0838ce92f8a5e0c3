"""The sweep's Optuna studies, kept as one journal in the results folder (local or on a URI).

- The sweep's study (named after the sweep) holds one trial per configuration; its value is the
  objective averaged over the configuration's seeds, and it is what the sampler learns from.
- One study per seed (``<sweep>:seed-<s>``) holds one trial per run of a configuration with that
  seed, with the objective's partial value after every session as intermediate values: the pruner
  compares a run only with the runs of its own seed (same base session, same replay draw).

The searcher, the pruning scheduler and the results callback each hold a ``SweepStudies`` and reopen
the studies after Ray pickles them, so their view of a trial's state is always the journal's.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import BaseJournalBackend, JournalFileBackend

from .objective import Objective
from .storage import Location

OPTUNA_NUMBER = "optuna_trial"  # config key: the configuration's trial number in the sweep's study
RUN_NUMBER = "run_trial"  # config key: the run's trial number in the study of its seed
STUDY_FILE = "optuna.journal"
SEED_STUDY = "{sweep}:seed-{seed}"
# User attributes of a run trial (besides the per-session values of ``kept_columns``).
SEED, CONFIG, TUNE_TRIAL = "seed", "configuration", "tune_trial_id"
# User attributes of a configuration trial: its seeds, and each kept column's values by seed.
SEEDS, BY_SEED = "seeds", "{column}_by_seed"
PRUNED_AT, COMPARED_WITH, PRUNED_BY_SEED = "pruned_at_session", "compared_with", "pruned_by_seed"


class ObjectJournalBackend(BaseJournalBackend):
    """A journal kept in one object on a remote filesystem, rewritten whole on every append.

    Object stores cannot append, and only the sweep's driver writes the study, so each append
    publishes the full journal (a few hundred kB for a large sweep) and a crash never leaves half a line.
    """

    def __init__(self, location: Location) -> None:
        self.location = location
        text = location.read_text() if location.exists() else ""
        self._logs = [json.loads(line) for line in text.splitlines() if line.strip()]

    def read_logs(self, log_number_from: int) -> Iterable[dict[str, Any]]:
        return self._logs[log_number_from:]

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        self._logs.extend(logs)
        self.location.write_text("".join(json.dumps(log, separators=(",", ":")) + "\n" for log in self._logs))


def journal_storage(location: Location) -> JournalStorage:
    """Optuna storage for a journal at ``location``: a locked local file, or one object on a remote store."""
    if location.is_local:
        location.local_path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(location.local_path)))
    return JournalStorage(ObjectJournalBackend(location))


@dataclass
class StudyRef:
    """Where one study lives and how to open it; the opened study is not pickled."""

    location: Location
    name: str
    direction: str
    _storage: JournalStorage | None = field(default=None, repr=False, compare=False)
    _study: optuna.Study | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.location = Location.of(self.location)

    @property
    def storage(self) -> JournalStorage:
        if self._storage is None:
            self._storage = journal_storage(self.location)
        return self._storage

    def open(self, sampler: optuna.samplers.BaseSampler | None = None) -> optuna.Study:
        if self._study is None or sampler is not None:
            self._study = optuna.create_study(
                study_name=self.name,
                storage=self.storage,
                direction="maximize" if self.direction == "max" else "minimize",
                sampler=sampler,
                load_if_exists=True,
            )
        return self._study

    @property
    def study(self) -> optuna.Study:
        return self.open()

    def trial(self, number: int) -> optuna.trial.FrozenTrial:
        return self.study.get_trials(deepcopy=False)[number]

    def __getstate__(self) -> dict:
        return {"location": self.location, "name": self.name, "direction": self.direction}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)


@dataclass
class SweepStudies:
    """The sweep's study of configurations and, opened on demand, the study of each seed's runs."""

    location: Location
    name: str
    direction: str
    _runs: dict[int, StudyRef] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.location = Location.of(self.location)
        self.configs = StudyRef(self.location, self.name, self.direction)

    def run_of(self, config: dict[str, Any]) -> optuna.trial.FrozenTrial | None:
        """The run trial of a Tune trial's ``config`` in its seed's study (None for a config without one)."""
        number = config.get(RUN_NUMBER)
        return self.runs(config["seed"]).trial(number) if number is not None else None

    def runs(self, seed: int) -> StudyRef:
        """The study of the runs with ``seed`` (sharing the journal's storage with the others)."""
        if seed not in self._runs:
            name = SEED_STUDY.format(sweep=self.name, seed=seed)
            # one journal for all the studies, read and locked through one storage
            self._runs[seed] = StudyRef(self.location, name, self.direction, self.configs.storage)
        return self._runs[seed]

    def __getstate__(self) -> dict:
        return {"location": self.location, "name": self.name, "direction": self.direction}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)


def kept_columns(objective: Objective) -> tuple[str, ...]:
    """The per-session values a run's trial keeps as user attributes: the objective's and its metric."""
    return tuple(dict.fromkeys((*objective.columns, objective.metric)))


def history(run: optuna.trial.FrozenTrial, columns: Iterable[str]) -> dict[str, list[float]]:
    """A run's value of each column at every session reported so far (kept as its user attributes)."""
    return {column: list(run.user_attrs.get(column, [])) for column in columns}


def load_study(results_dir: str | os.PathLike | Location, seed: int | None = None) -> optuna.Study:
    """Open a sweep's study of configurations, or with ``seed`` the study of that seed's runs (for
    ``optuna-dashboard`` or analysis)."""
    storage = journal_storage(Location.of(results_dir) / STUDY_FILE)
    names = optuna.get_all_study_names(storage)
    sweeps = [name for name in names if ":seed-" not in name] or names
    if not sweeps:
        raise ValueError(f"{results_dir} holds no Optuna study yet")
    name = sweeps[0] if seed is None else SEED_STUDY.format(sweep=sweeps[0], seed=seed)
    if name not in names:
        raise ValueError(f"{results_dir} has no runs with seed {seed}")
    return optuna.load_study(study_name=name, storage=storage)
