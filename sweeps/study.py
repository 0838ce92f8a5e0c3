"""The sweep's Optuna study, persisted as a journal file in the results folder.

The searcher, the pruning scheduler and the results callback each hold a ``StudyRef`` and reopen the
study from disk after Ray pickles them, so their view of a trial's state is always the journal's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

OPTUNA_NUMBER = "optuna_trial"  # config key carrying a Tune trial's Optuna trial number
STUDY_FILE = "optuna.journal"


@dataclass
class StudyRef:
    """Where the study lives and how to open it; the opened study is not pickled."""

    path: Path
    name: str
    direction: str
    _study: optuna.Study | None = field(default=None, repr=False, compare=False)

    def open(self, sampler: optuna.samplers.BaseSampler | None = None) -> optuna.Study:
        if self._study is None or sampler is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            storage = JournalStorage(JournalFileBackend(str(self.path)))
            self._study = optuna.create_study(
                study_name=self.name,
                storage=storage,
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
        return {"path": self.path, "name": self.name, "direction": self.direction, "_study": None}


def load_study(results_dir: str | Path) -> optuna.Study:
    """Open the Optuna study of a sweep's results folder (for ``optuna-dashboard`` or analysis)."""
    storage = JournalStorage(JournalFileBackend(str(Path(results_dir) / STUDY_FILE)))
    names = optuna.get_all_study_names(storage)
    return optuna.load_study(study_name=names[0], storage=storage)
