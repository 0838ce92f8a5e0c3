"""The Ray Tune trainable: one CKPD trial, reporting after every session with a checkpoint to resume from."""

from __future__ import annotations

import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from ckpd_core import TrialConfig, run_trial

from .base_cache import ensure_base_session
from .study import OPTUNA_NUMBER, RUN_NUMBER

BOOKKEEPING = (OPTUNA_NUMBER, RUN_NUMBER, "seed")


def trial_config_from(config: dict[str, Any], fixed: dict[str, Any]) -> TrialConfig:
    """The TrialConfig of a Tune trial: the spec's fixed settings, the sampled ones and the seed."""
    sampled = {k: v for k, v in config.items() if k not in BOOKKEEPING}
    return TrialConfig.from_dict({**fixed, **sampled, "seed": config["seed"]})


def ckpd_trainable(
    config: dict[str, Any], *, fixed: dict[str, Any], base_dir: str | None, threads: int
) -> None:
    """Run (or continue) one trial; ``tune.report`` after each session with its 0-based index.

    ``base_dir`` (a folder or URI) holds the base sessions shared by the sweep; None trains one inside
    this trial. Each row names the Ray node that ran the session, and the session this run of the
    trial started at (above 0 when it continued from a checkpoint after a failure or a lost node).
    """
    torch.set_num_threads(max(1, threads))
    trial_config = trial_config_from(config, fixed)
    base_path, trained_base = ensure_base_session(trial_config, base_dir) if base_dir else (None, True)
    state_dir = Path(tempfile.mkdtemp(prefix="ckpd-trial-"))
    try:
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            checkpoint.to_directory(str(state_dir))
        node = {"node": socket.gethostname(), "node_id": ray.get_runtime_context().get_node_id()}
        started: list[int] = []

        def report(row: dict[str, Any]) -> None:
            started[:] = started or [row["session"]]
            extra = {"base_key": trial_config.base_session_key(), **node, "started_at_session": started[0]}
            extra["base_trained"] = bool(trained_base and row["session"] == 0)
            tune.report({**row, **extra}, checkpoint=tune.Checkpoint.from_directory(str(state_dir)))

        run_trial(trial_config, report, base_checkpoint=base_path, state_dir=state_dir)
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
