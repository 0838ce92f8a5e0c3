"""What a sweep has produced so far: trial counts by status and the best configuration.

The best configuration is chosen only among trials that completed every session, by the spec's
metric at the final session, averaged over the seeds of each configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .results import STATUSES, param_columns, read_sessions, read_trials
from .spec import SweepSpec


@dataclass
class SweepSummary:
    counts: dict[str, int]
    ranking: pd.DataFrame = field(repr=False)
    metric: str = "val_acc_all"
    sessions_written: int = 0
    started: int = 0  # (trial, seed) pairs with at least one session row
    params: list[str] = field(default_factory=list)

    @property
    def best(self) -> dict | None:
        return None if self.ranking.empty else self.ranking.head(1).to_dict("records")[0]


def summarize(results_dir: str | Path, spec: SweepSpec) -> SweepSummary:
    sessions, trials = read_sessions(results_dir), read_trials(results_dir)
    counts = {status: int((trials.status == status).sum()) for status in STATUSES}
    started = sessions.groupby(["trial_id", "seed"]).ngroups if len(sessions) else 0
    params = [p for p in param_columns(sessions, trials) if p in trials.columns]
    done = trials[trials.status == "completed"][["trial_id", "seed", *params]]
    if done.empty or sessions.empty:
        return SweepSummary(counts, pd.DataFrame(), spec.metric, len(sessions), started, params)
    last = sessions.sort_values("session").groupby(["trial_id", "seed"]).tail(1)
    final = done.merge(last[["trial_id", "seed", spec.metric]], on=["trial_id", "seed"])
    keys = [p for p in params if final[p].notna().any()]
    grouped = (
        final.groupby(keys, dropna=False)[spec.metric]
        if keys
        else final.assign(_all=0).groupby("_all")[spec.metric]
    )
    ranking = grouped.agg(["mean", "std", "count"]).reset_index()
    ranking = ranking.rename(columns={"mean": spec.metric, "std": f"{spec.metric}_std", "count": "runs"})
    ranking = ranking.sort_values(spec.metric, ascending=spec.mode == "min").reset_index(drop=True)
    ranking = ranking.drop(columns=["_all"], errors="ignore")
    return SweepSummary(counts, ranking, spec.metric, len(sessions), started, keys)
