"""The sweep's Optuna study, persisted as a journal in the results folder (local or on a URI).

The searcher, the pruning scheduler and the results callback each hold a ``StudyRef`` and reopen the
study after Ray pickles them, so their view of a trial's state is always the journal's.
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

from .storage import Location

OPTUNA_NUMBER = "optuna_trial"  # config key carrying a Tune trial's Optuna trial number
STUDY_FILE = "optuna.journal"


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
    """Where the study lives and how to open it; the opened study is not pickled."""

    location: Location
    name: str
    direction: str
    _study: optuna.Study | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.location = Location.of(self.location)

    def open(self, sampler: optuna.samplers.BaseSampler | None = None) -> optuna.Study:
        if self._study is None or sampler is not None:
            self._study = optuna.create_study(
                study_name=self.name,
                storage=journal_storage(self.location),
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
        return {"location": self.location, "name": self.name, "direction": self.direction, "_study": None}


def load_study(results_dir: str | os.PathLike | Location) -> optuna.Study:
    """Open the Optuna study of a sweep's results folder (for ``optuna-dashboard`` or analysis)."""
    storage = journal_storage(Location.of(results_dir) / STUDY_FILE)
    names = optuna.get_all_study_names(storage)
    return optuna.load_study(study_name=names[0], storage=storage)
