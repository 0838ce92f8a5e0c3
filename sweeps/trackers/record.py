"""What every tracker is given of a run, the same for all: metrics by session, settings, final status."""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ray.tune.result import TIMESTEPS_TOTAL, TRAINING_ITERATION

from ..results import SESSION_VALUES
from ..spec import SweepSpec
from ..study import PRUNED_AT, SweepStudies
from ..trainable import BOOKKEEPING

STATUS = "status"  # the final status: completed, pruned or failed


@dataclass
class RunRecord:
    """Turns a run's Tune config and results into what the trackers log (picklable, as Tune keeps them)."""

    spec: SweepSpec
    studies: SweepStudies
    num_sessions: int

    def metrics(self, result: dict[str, Any]) -> dict[str, Any]:
        """The session's numeric values, with the session index where Tune's loggers read their step."""
        session = int(result["session"])
        values = {
            k: result[k]
            for k in SESSION_VALUES
            if isinstance(result.get(k), (int, float)) and not math.isnan(result[k])
        }
        return {**values, "session": session, TRAINING_ITERATION: session, TIMESTEPS_TOTAL: None}

    def settings(self, config: dict[str, Any]) -> dict[str, Any]:
        """Every setting of the run, the sampled ones and the seed included (nested ones as ``a/b``)."""
        params = {k: v for k, v in config.items() if k not in BOOKKEEPING}
        values = self.spec.trial_config(params, config["seed"]).to_dict()
        flat: dict[str, Any] = {}
        for key, value in values.items():
            if isinstance(value, dict):
                flat.update({f"{key}/{k}": v for k, v in value.items()})
            else:
                flat[key] = value
        return flat

    def status(self, config: dict[str, Any], failed: bool, last_session: int | None) -> dict[str, Any]:
        """``status`` (completed, pruned or failed) and, for a pruned run, ``pruned_at_session``."""
        run = self.studies.run_of(config)
        if run is not None and run.state.name == "PRUNED":
            return {STATUS: "pruned", PRUNED_AT: run.user_attrs.get(PRUNED_AT)}
        complete = last_session == self.num_sessions - 1
        return {STATUS: "failed" if failed or not complete else "completed"}


class Tracked:
    """Mixed into Ray's logger callbacks: Tune's results become the run's session metrics, and at its end
    the tracker's ``record_status`` records the final status."""

    def __init__(self, record: RunRecord, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.record = record
        self.last_session: dict[str, int] = {}

    def log_trial_result(self, iteration: int, trial, result: dict) -> None:
        if "session" not in result:
            return
        first = trial.trial_id not in self.last_session
        self.last_session[trial.trial_id] = int(result["session"])
        super().log_trial_result(iteration, trial, self.tracked(trial, result, first))

    def tracked(self, trial, result: dict, first: bool) -> dict[str, Any]:
        """What the tracker logs of a session's result (``first``: the run's first one this callback sees)."""
        return self.record.metrics(result)

    def log_trial_end(self, trial, failed: bool = False) -> None:
        if not self.started(trial):  # failed before its first result: still one run, status failed
            self.log_trial_start(trial)
        status = self.record.status(trial.config, failed, self.last_session.get(trial.trial_id))
        self.record_status(trial, status)
        super().log_trial_end(trial, failed=status[STATUS] == "failed")
        self.last_session.pop(trial.trial_id, None)

    def started(self, trial) -> bool:
        """Whether the tracker has a run for ``trial``."""
        raise NotImplementedError

    def record_status(self, trial, status: dict[str, Any]) -> None:
        raise NotImplementedError


@contextlib.contextmanager
def environment_kept(name: str) -> Iterator[None]:
    """Put the environment variable ``name`` back as it was: the trackers' clients export settings of
    their own, which the next sweep launched from this process (or a process it starts) would inherit."""
    before = os.environ.get(name)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before
