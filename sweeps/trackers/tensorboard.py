"""TensorBoard: event files in each run's folder under ``tune/`` (Ray Tune's TBXLoggerCallback)."""

from __future__ import annotations

import json
from typing import Any

from ray.tune.logger import TBXLoggerCallback

from ..storage import Location
from .record import STATUS, RunRecord, Tracked


class TensorBoardTracker(Tracked, TBXLoggerCallback):
    """Scalars by session, the settings and the final status as text, Tune's hparams at the end."""

    def log_trial_start(self, trial) -> None:
        super().log_trial_start(trial)
        settings = json.dumps(self.record.settings(trial.config), indent=1, default=str)
        self._trial_writer[trial].add_text("settings", f"```\n{settings}\n```", global_step=0)

    def started(self, trial) -> bool:
        return trial in self._trial_writer

    def record_status(self, trial, status: dict[str, Any]) -> None:
        text = ", ".join(f"{k} {v}" for k, v in status.items())
        step = self.last_session.get(trial.trial_id, 0)
        self._trial_writer[trial].add_text(STATUS, text, global_step=step)


def tracker(record: RunRecord, results_dir: Location) -> tuple[TensorBoardTracker, str]:
    note = f"event files in each run's folder: tensorboard --logdir {results_dir / 'tune'}"
    return TensorBoardTracker(record), note
