"""What a sweep has produced so far: run counts by status and the verdict on its configurations.

Only runs that completed every session count towards the verdict; each configuration's value is
the spec's objective averaged over its distinct seeds (see ``statistics``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .results import STATUSES, read_sessions, read_trials
from .spec import SweepSpec
from .statistics import Verdict, compare, run_values, verdict
from .storage import Location


@dataclass(frozen=True)
class Compute:
    """Seconds of session compute: spent by this sweep, reused from the store, and saved by pruning
    (each pruned run's missing sessions at the sweep's mean seconds per incremental session)."""

    spent_s: float
    reused_s: float
    saved_by_pruning_s: float

    def line(self, base_pretrain_s: float = 0.0) -> str:
        return (
            f"compute: {self.spent_s + base_pretrain_s:.0f} s spent, {self.reused_s:.0f} s reused from the "
            f"store, about {self.saved_by_pruning_s:.0f} s saved by pruning"
        )


def compute_of(sessions: pd.DataFrame, trials: pd.DataFrame) -> Compute:
    """The compute a sweep's rows record (columns missing from older folders count as 0)."""
    if sessions.empty:
        return Compute(0.0, 0.0, 0.0)
    reused = sessions.get("reused_seconds", pd.Series(0.0, index=sessions.index)).fillna(0.0)
    spent = float(sessions.seconds.fillna(0.0).sum())
    incremental = (sessions.seconds.fillna(0.0) + reused)[sessions.session > 0]
    per_session = float(incremental.mean()) if len(incremental) else 0.0
    total = int(sessions.session.max()) + 1
    pruned = trials[trials.status == "pruned"]
    missing = float((total - pruned.sessions_done).clip(lower=0).sum()) if len(pruned) else 0.0
    return Compute(spent, float(reused.sum()), missing * per_session)


@dataclass
class SweepSummary:
    counts: dict[str, int]
    verdict: Verdict
    sessions_written: int = 0
    runs: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)
    compute: Compute = field(default_factory=lambda: Compute(0.0, 0.0, 0.0))

    @property
    def ranking(self) -> pd.DataFrame:
        """Every completed configuration with its statistics, the highest objective first."""
        return self.verdict.table

    @property
    def params(self) -> list[str]:
        return self.verdict.comparison.params

    @property
    def best(self) -> dict[str, Any] | None:
        """The configuration with the best mean objective (a claim only with its ties: see ``verdict``)."""
        return None if self.ranking.empty else self.ranking.head(1).to_dict("records")[0]


def summarize(results_dir: str | Path | Location, spec: SweepSpec) -> SweepSummary:
    return summary_of(read_sessions(results_dir), read_trials(results_dir), spec)


def summary_of(sessions: pd.DataFrame, trials: pd.DataFrame, spec: SweepSpec) -> SweepSummary:
    """The summary of a sweep's rows (``summarize`` reads them from its folder)."""
    counts = {status: int((trials.status == status).sum()) for status in STATUSES}
    runs = run_values(sessions, trials, spec.objective)
    comparison = compare(runs, objective=spec.objective, mode=spec.mode)
    summary = verdict(runs, comparison, trials)
    return SweepSummary(counts, summary, len(sessions), runs, compute_of(sessions, trials))
