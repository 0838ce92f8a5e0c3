"""The driver-side Tune callback: writes every reported session and every finished trial to Parquet."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from optuna.trial import TrialState
from ray import tune

from ckpd_core import trial_summary
from ckpd_core.metrics import TRIAL_METRICS, with_validation

from .results import SESSION_COLUMNS, ResultsStore, git_commit, package_version, read_sessions
from .storage import Location
from .study import PRUNED_AT, SweepStudies
from .trainable import BOOKKEEPING

log = logging.getLogger(__name__)
WAIT_WARNING_S = 60.0  # runs waiting this long with none running: warn (once) that resources may never come
_SESSION_FIELDS = [c for c in SESSION_COLUMNS if c not in ("sweep", "trial_id", "seed", "written_at")]


class SweepResultsCallback(tune.Callback):
    """The single writer of the sweep's results: one session row per report, one trial row at the end.

    ``on_event`` (the progress printer) is pickled with it, as Tune keeps the callbacks for a resume.
    ``cluster_fit`` (``resources.cluster_fit`` for a run's resources) is asked when runs have waited
    ``wait_warning_s`` with none running: if no live node can take a run, that is warned about once.
    The base sessions trained (by the trials, and those ``count_base_training`` is told of) are part
    of Tune's experiment state, so a resumed sweep counts those of the whole sweep.
    """

    def __init__(
        self,
        results_dir: str | Path | Location,
        sweep: str,
        studies: SweepStudies,
        num_sessions: int,
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
        cluster_fit: Callable[[], tuple[str, int, Any]] | None = None,
        wait_warning_s: float = WAIT_WARNING_S,
    ) -> None:
        self.results_dir = Location.of(results_dir)
        self.sweep = sweep
        self.studies = studies
        self.num_sessions = num_sessions
        self.on_event = on_event
        self.cluster_fit = cluster_fit
        self.wait_warning_s = wait_warning_s
        self._store: ResultsStore | None = None
        self._base_key: dict[str, str] = {}
        self._rows: dict[tuple[str, int], dict[int, dict[str, Any]]] = {}  # running trials' rows by session
        self.trained_bases: list[str] = []  # the key of each base session trained, once per training
        self._waiting_since: float | None = None
        self._warned_waiting = False

    @property
    def store(self) -> ResultsStore:
        if self._store is None:
            self._store = ResultsStore(self.results_dir)
            self._store.load_written_keys()
        return self._store

    @property
    def base_trainings(self) -> int:
        return len(self.trained_bases)

    def count_base_training(self, key: str) -> None:
        """A base session trained outside the trials (by the driver before they start)."""
        self.trained_bases.append(key)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_store": None, "_rows": {}, "_waiting_since": None}

    def get_state(self) -> dict:
        return {"trained_bases": list(self.trained_bases)}

    def set_state(self, state: dict) -> None:
        self.trained_bases = list(state.get("trained_bases", []))

    def on_step_end(self, iteration: int, trials: list, **info) -> None:
        """Runs waiting ``wait_warning_s`` with none running: warn once if no live node can take one
        (otherwise they wait for one that is busy, e.g. training a base session)."""
        statuses = {t.status for t in trials}
        if (
            self._warned_waiting
            or self.cluster_fit is None
            or "PENDING" not in statuses
            or "RUNNING" in statuses
        ):
            self._waiting_since = None
            return
        now = time.monotonic()
        if self._waiting_since is None:
            self._waiting_since = now
        if now - self._waiting_since < self.wait_warning_s:
            return
        text, nodes, _ = self.cluster_fit()
        if nodes:
            self._waiting_since = now  # asked again after another wait_warning_s
            return
        self._warned_waiting = True
        waited = f"{now - self._waiting_since:.0f} s"
        self._emit(
            "waiting", {"message": f"runs have waited {waited} for resources with none running: {text}"}
        )

    def _ids(self, trial) -> dict[str, Any]:
        params = {k: v for k, v in trial.config.items() if k not in BOOKKEEPING}
        return {"sweep": self.sweep, "trial_id": trial.trial_id, "seed": trial.config["seed"], **params}

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        if "session" not in result:
            return
        row = {**self._ids(trial), **{k: result.get(k) for k in _SESSION_FIELDS}}
        self.store.write_sessions([row])
        self._rows.setdefault((trial.trial_id, row["seed"]), {}).setdefault(row["session"], row)
        self._base_key[trial.trial_id] = result.get("base_key", "")
        if result.get("base_trained"):
            self.trained_bases.append(result.get("base_key", ""))
        self._emit("session", {**row, "config": trial.config})

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        run = self.studies.run_of(trial.config)
        if run is not None and run.state == TrialState.PRUNED:
            self._finish(trial, "pruned", pruned_at=run.user_attrs.get(PRUNED_AT))
        else:
            self._finish(trial, "completed")

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self._finish(trial, "failed", error=_error_text(trial))

    def _finish(self, trial, status: str, pruned_at: int | None = None, error: str | None = None) -> None:
        ids = self._ids(trial)
        mine = self._session_rows(trial.trial_id, ids["seed"])
        if status == "completed" and len(mine) < self.num_sessions:
            status, error = "failed", f"ended after {len(mine)} of {self.num_sessions} sessions"
        summary = trial_summary(mine) if status == "completed" else {}
        row = {
            **ids,
            "status": status,
            "pruned_at_session": pruned_at,
            "error": error,
            "sessions_done": len(mine),
            **{k: summary.get(k, math.nan) for k in _SUMMARY_KEYS},
            "compute_s": float(sum(r["seconds"] for r in mine)),
            "reused_compute_s": float(sum(_number(r.get("reused_seconds")) for r in mine)),
            "base_key": self._base_key.get(trial.trial_id, ""),
            "store_key": next((str(r["store_key"]) for r in mine if r.get("store_key")), None),
            "node": str(mine[-1]["node"]) if mine else "",
            "node_id": str(mine[-1].get("node_id") or "") if mine else "",
            "git_commit": git_commit(),
            "version": package_version(),
        }
        self.store.write_trials([row])
        self._emit(status, {**row, "config": trial.config})

    def _session_rows(self, trial_id: str, seed: int) -> list[dict[str, Any]]:
        """The trial's session rows in order: those this driver received, or, when an earlier driver
        wrote the first sessions (a resumed sweep), all of them read back from Parquet."""
        rows = [row for _, row in sorted(self._rows.pop((trial_id, seed), {}).items())]
        if [r["session"] for r in rows] == list(range(len(rows))) and rows:
            return rows
        sessions = read_sessions(self.results_dir)
        mine = sessions[(sessions.trial_id == trial_id) & (sessions.seed == seed)]
        return mine.sort_values("session").to_dict("records")

    def _emit(self, event: str, payload: dict[str, Any]) -> None:
        if self.on_event is not None:
            self.on_event(event, payload)


_SUMMARY_KEYS = with_validation(TRIAL_METRICS)


def _number(value: Any) -> float:
    """A float, with a missing value (a row written before the column existed) as 0."""
    return 0.0 if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def _error_text(trial) -> str:
    """The last line of the trial's error (the exception message), or the error file's path."""
    path = getattr(trial, "error_file", None) or getattr(trial, "pickled_error_file", None)
    text = ""
    if path and Path(path).exists() and not str(path).endswith(".pkl"):
        text = Path(path).read_text(errors="replace").strip()
    if not text:
        text = str(getattr(trial, "error_msg", "") or "unknown error")
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1][:2000] if lines else text[:2000]
