"""The Ray Tune trainable: one CKPD run, reporting after every session with a checkpoint to resume from.

With a store (``store``), a run first looks for its stored result: a complete one is reported again,
session by session, marked with where it came from and costing no compute; an unfinished one is
reported up to where it stopped and then continued from its stored state. Every computed session is
stored before it is reported, so no other sweep under the same root computes it again.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from ckpd_core import TrialConfig, code_digest, run_trial
from ckpd_core.data import count_sessions
from ckpd_core.trial import STATE_FILE

from .base_sessions import ensure_base_session
from .spec import build_trial_config
from .store import Store, StoredTrial, trial_key
from .study import OPTUNA_NUMBER, RUN_NUMBER

BOOKKEEPING = (OPTUNA_NUMBER, RUN_NUMBER, "seed")
ORIGIN = "origin"  # a stored row's "<sweep>/<trial id>" of the run that computed it


def trial_config_from(config: dict[str, Any], fixed: dict[str, Any]) -> TrialConfig:
    """The TrialConfig of a Tune trial: the spec's fixed settings, the sampled ones and the seed."""
    sampled = {k: v for k, v in config.items() if k not in BOOKKEEPING}
    return build_trial_config(fixed, sampled, config["seed"])


def ckpd_trainable(
    config: dict[str, Any],
    *,
    fixed: dict[str, Any],
    sweep: str,
    store_root: str | None,
    base_dir: str | None,
    threads: int,
) -> None:
    """Run (or continue, or reuse) one run; ``tune.report`` after each session with its 0-based index.

    ``store_root``: the results root whose store this run reuses and fills; None computes everything
    and stores nothing (``--no-reuse``). ``base_dir`` (a folder or URI) holds the base sessions shared
    by the sweep; None trains one inside this run. Each row names the Ray node that ran the session,
    and the session this run of the trial started at (above 0 when it continued from a checkpoint).
    """
    torch.set_num_threads(max(1, threads))
    trial_config = trial_config_from(config, fixed)
    state_dir = Path(tempfile.mkdtemp(prefix="ckpd-trial-"))
    try:
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            checkpoint.to_directory(str(state_dir))
        run = _Run(trial_config, sweep, Store(store_root) if store_root else None, state_dir)
        with run.store.claim(run.key) if run.store else contextlib.nullcontext():
            if checkpoint is None and run.reuse_stored():
                return
            if checkpoint is not None:
                run.adopt_stored()
            needs_base = base_dir is not None and not (state_dir / STATE_FILE).exists()
            base_path, run.trained_base = (
                ensure_base_session(trial_config, base_dir) if needs_base else (None, False)
            )
            if base_dir is None:
                run.trained_base = True
            run_trial(trial_config, run.computed, base_checkpoint=base_path, state_dir=state_dir)
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)


class _Run:
    """One run's reporting: stored rows replayed, computed rows stored and reported."""

    def __init__(self, config: TrialConfig, sweep: str, store: Store | None, state_dir: Path) -> None:
        self.config, self.store, self.state_dir = config, store, state_dir
        self.key = trial_key(config) if store else None
        self.num_sessions = count_sessions(config.benchmark, **config.benchmark_kwargs)
        self.origin = f"{sweep}/{tune.get_context().get_trial_id()}"
        self.node = {"node": socket.gethostname(), "node_id": ray.get_runtime_context().get_node_id()}
        self.rows: list[dict[str, Any]] = []  # this run's rows as stored, each with its origin
        self.started: int | None = None
        self.trained_base = False

    def reuse_stored(self) -> bool:
        """Report the stored rows of this run, if any; True when they are all of its sessions."""
        stored = self.store.load(self.key) if self.store else None
        if stored is None:
            return False
        if not stored.complete:
            self.store.fetch_state(stored, self.state_dir / STATE_FILE)
        self.rows = list(stored.rows)
        for i, row in enumerate(stored.rows):
            values = {k: v for k, v in row.items() if k != ORIGIN}
            reused = {"seconds": 0.0, "reused_seconds": row["seconds"], "reused_from": row[ORIGIN]}
            last_of_unfinished = not stored.complete and i == len(stored.rows) - 1
            self._report({**values, **reused}, checkpoint=last_of_unfinished)
        return stored.complete

    def adopt_stored(self) -> None:
        """Continuing from Tune's checkpoint: take the stored rows so the entry keeps growing."""
        stored = self.store.load(self.key, need_state=False) if self.store else None
        self.rows = list(stored.rows) if stored is not None else []

    def computed(self, row: dict[str, Any]) -> None:
        """A session computed here: store it (with the state to continue from), then report it."""
        self.rows = [r for r in self.rows if r["session"] < row["session"]] + [{**row, ORIGIN: self.origin}]
        if self.store is not None and [r["session"] for r in self.rows] == list(range(len(self.rows))):
            stored = StoredTrial(self.key, self.config.to_dict(), code_digest(), self.num_sessions, self.rows)
            self.store.save(stored, self.state_dir / STATE_FILE)
        extra = {"reused_seconds": 0.0, "reused_from": None}
        extra["base_trained"] = bool(self.trained_base and row["session"] == 0)
        self._report({**row, **extra}, checkpoint=True)

    def _report(self, row: dict[str, Any], checkpoint: bool) -> None:
        self.started = row["session"] if self.started is None else self.started
        extra = {"base_key": self.config.base_session_key(), "store_key": self.key, **self.node}
        extra["started_at_session"] = self.started
        result = {"base_trained": False, **row, **extra}
        if checkpoint and (self.state_dir / STATE_FILE).exists():
            tune.report(result, checkpoint=tune.Checkpoint.from_directory(str(self.state_dir)))
        else:
            tune.report(result)
