"""Experiment trackers for a sweep's runs (``launch --log``), through Ray Tune's own logger callbacks.

Every run becomes one tracker run holding the same three things, whichever tracker:

- its session metrics, with the session index (0 = base session) as the step;
- its settings: the swept ones and the seed as Tune's config has them, plus every other setting of
  the run (the fixed ones, filled from the spec and the method's defaults);
- its final status: completed, pruned (with the session) or failed.

All three work offline: TensorBoard event files in each run's folder under ``tune/``, MLflow in a
SQLite file in the sweep folder (``MLFLOW_TRACKING_URI`` picks a server instead), W&B in offline mode
unless it is logged in (or ``WANDB_MODE`` says otherwise); ``wandb sync`` uploads offline runs later.
Each tracker's module is imported only when it is asked for (MLflow's client takes a second to import).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Iterable, Sequence

from ..errors import SpecError
from ..spec import TRACKERS, SweepSpec
from ..storage import Location
from ..study import SweepStudies
from .record import RunRecord

__all__ = ["TRACKERS", "RunRecord", "check_trackers", "tracker_callbacks"]

# For each tracker: the module it needs, what that is, and how to install it.
_NEEDS = {
    "tensorboard": ("tensorboardX", "TensorBoard's writer (tensorboardX)", "pip install 'ray[tune]'"),
    "mlflow": ("mlflow", "the MLflow client", "pip install 'ckpd-sweep[mlflow]'"),
    "wandb": ("wandb", "the W&B client", "pip install 'ckpd-sweep[wandb]'"),
}


def check_trackers(names: Iterable[str], results_dir: Location | None = None) -> list[str]:
    """The trackers asked for, each once and in order; SpecError for an unknown or uninstalled one."""
    chosen = list(dict.fromkeys(names))
    for name in chosen:
        if name not in TRACKERS:
            raise SpecError(f"--log {name!r} is not a tracker; choose from {', '.join(TRACKERS)}")
        module, what, install = _NEEDS[name]
        if importlib.util.find_spec(module) is None:
            raise SpecError(f"--log {name} needs {what}, which is not installed: {install}")
    remote = results_dir is not None and not results_dir.is_local
    if "mlflow" in chosen and remote and not os.environ.get("MLFLOW_TRACKING_URI"):
        raise SpecError(
            f"--log mlflow keeps its runs in a SQLite file, which cannot live in {results_dir}: "
            "set MLFLOW_TRACKING_URI to an MLflow server (or a local sqlite:/// path)"
        )
    return chosen


def tracker_callbacks(
    names: Sequence[str], spec: SweepSpec, results_dir: Location, studies: SweepStudies, num_sessions: int
) -> tuple[list, list[str]]:
    """Ray Tune callbacks for the trackers ``names``, and for each a line saying where its runs go."""
    record = RunRecord(spec, studies, num_sessions)
    callbacks, notes = [], []
    for name in names:
        module = importlib.import_module(f".{name}", __name__)
        callback, note = module.tracker(record, results_dir)
        callbacks.append(callback)
        notes.append(f"{name}: {note}")
    return callbacks, notes
