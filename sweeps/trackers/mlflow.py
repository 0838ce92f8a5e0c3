"""MLflow: one MLflow run per run, in a SQLite file in the sweep folder or at ``MLFLOW_TRACKING_URI``.

MLflow 3 refuses its plain-file store by default (it is in maintenance mode), so the offline store is
the SQLite file MLflow recommends instead; ``mlflow ui --backend-store-uri sqlite:///...`` opens it.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Param
from ray.air.integrations.mlflow import MLflowLoggerCallback

from ..storage import Location
from .record import RunRecord, Tracked, environment_kept

DATABASE = "mlflow.db"
URI_ENV = "MLFLOW_TRACKING_URI"


class MLflowTracker(Tracked, MLflowLoggerCallback):
    """Metrics by session as the step, every setting as a param, the final status as tags."""

    def setup(self, *args, **kwargs) -> None:
        with environment_kept(URI_ENV):  # mlflow.set_tracking_uri exports the URI
            super().setup(*args, **kwargs)

    def log_trial_start(self, trial) -> None:
        new = trial not in self._trial_runs and not self._continue_earlier_run(trial)
        super().log_trial_start(trial)  # Tune's config as params: the sampled settings and the seed
        if new:
            given = set(trial.config)
            settings = self.record.settings(trial.config).items()
            params = [Param(k, str(v)) for k, v in settings if k not in given]
            MlflowClient(self.tracking_uri).log_batch(self._trial_runs[trial], params=params)

    def _continue_earlier_run(self, trial) -> bool:
        """A run a stopped driver started (a resumed sweep): log on into the same MLflow run."""
        client = MlflowClient(self.tracking_uri)
        experiment = self.mlflow_util.experiment_id
        found = client.search_runs([experiment], filter_string=f"tags.trial_name = '{trial}'", max_results=1)
        if not found:
            return False
        self._trial_runs[trial] = found[0].info.run_id
        client.update_run(found[0].info.run_id, status="RUNNING")
        return True

    def started(self, trial) -> bool:
        return trial in self._trial_runs

    def record_status(self, trial, status: dict[str, Any]) -> None:
        client = MlflowClient(self.tracking_uri)
        for key, value in status.items():
            client.set_tag(self._trial_runs[trial], key, str(value))


def tracking_uri(results_dir: Location) -> str:
    """``MLFLOW_TRACKING_URI`` when set, else the SQLite file in the (local) sweep folder."""
    return os.environ.get(URI_ENV) or f"sqlite:///{results_dir.local_path / DATABASE}"


def tracker(record: RunRecord, results_dir: Location) -> tuple[MLflowTracker, str]:
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # not one line per database migration
    uri, name = tracking_uri(results_dir), record.spec.name
    callback = MLflowTracker(record, tracking_uri=uri, experiment_name=name, tags={"sweep": name})
    return callback, f"experiment '{name}' at {uri}"
