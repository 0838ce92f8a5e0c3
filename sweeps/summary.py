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


@dataclass
class SweepSummary:
    counts: dict[str, int]
    verdict: Verdict
    sessions_written: int = 0
    started: int = 0  # (trial, seed) pairs with at least one session row
    runs: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)

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
    sessions, trials = read_sessions(results_dir), read_trials(results_dir)
    counts = {status: int((trials.status == status).sum()) for status in STATUSES}
    started = sessions.groupby(["trial_id", "seed"]).ngroups if len(sessions) else 0
    runs = run_values(sessions, trials, spec.objective)
    comparison = compare(runs, objective=spec.objective, mode=spec.mode)
    return SweepSummary(counts, verdict(runs, comparison, trials), len(sessions), started, runs)
