"""Weights & Biases: one W&B run per run, offline unless W&B is logged in (``wandb sync`` uploads later)."""

from __future__ import annotations

import os
from typing import Any

import wandb
from ray.air.integrations.wandb import WandbLoggerCallback, _QueueItem
from ray.tune.result import TRAINING_ITERATION

from ..storage import Location
from .record import RunRecord, Tracked, environment_kept

MODE_ENV = "WANDB_MODE"


class WandbTracker(Tracked, WandbLoggerCallback):
    """Metrics with the session as W&B's step; every setting and the final status in the run's config."""

    def setup(self, *args, **kwargs) -> None:
        """Ray asks for an API key unless ``WANDB_MODE`` says offline: say it while Ray sets up (the
        logging actors are given the mode itself)."""
        with environment_kept(MODE_ENV):
            if self.kwargs.get("mode") == "offline":
                os.environ[MODE_ENV] = "offline"
            super().setup(*args, **kwargs)

    def tracked(self, trial, result: dict, first: bool) -> dict[str, Any]:
        metrics = super().tracked(trial, result, first)
        if first:  # Ray's logging actor puts a result's "config" into the run's config
            metrics["config"] = self.record.settings(trial.config)
        return metrics

    def started(self, trial) -> bool:
        return trial in self._trial_queues

    def record_status(self, trial, status: dict[str, Any]) -> None:
        step = self.last_session.get(trial.trial_id, 0)  # the last row's step: no row is added
        self._trial_queues[trial].put((_QueueItem.RESULT, {"config": status, TRAINING_ITERATION: step}))


def mode() -> str:
    """``WANDB_MODE`` when set; else online when W&B has an API key (env or ``wandb login``), else offline."""
    if os.environ.get(MODE_ENV):
        return os.environ[MODE_ENV]
    return "online" if wandb.login(prompt=False, verify=False) else "offline"  # never asks, never connects


def tracker(record: RunRecord, results_dir: Location) -> tuple[WandbTracker, str]:
    name, chosen = record.spec.name, mode()
    # W&B writes straight into the sweep folder: Tune copies a run's folder there before W&B has finished
    # writing it. A remote sweep folder keeps W&B's files in Tune's local folder of each run.
    where = {"dir": str(results_dir.local_path)} if results_dir.is_local else {}
    callback = WandbTracker(record, project=name, group=name, mode=chosen, resume="allow", **where)
    runs = results_dir / "wandb" if results_dir.is_local else "each run's local folder"
    if chosen == "offline":
        return (
            callback,
            f"project '{name}', offline runs in {runs} (`wandb sync {runs}/offline-run-*` uploads them)",
        )
    return callback, f"project '{name}' ({chosen})"
