"""How far a sweep has got, in the numbers the live display and ``ckpd-sweep status`` both show.

Runs by status (running: with session rows but no trial row) of the most the sweep can start, the best
configuration so far, elapsed time and an ETA. The best is the one the verdict would lead with
(``statistics.compare``: the most seeds, then the best mean), with its 95% interval once it has two
seeds and how many configurations are tied with it, never one run's value. The ETA is the most
sessions still to run at the rate sessions have been reported so far: pruning, twins and reused runs
only shorten it, so it is shown as an upper bound. Torch- and Ray-free.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import pandas as pd

from .results import STATUSES, TRIAL_KEY
from .statistics import Comparison, duration, percent

if TYPE_CHECKING:
    from .summary import SweepSummary


@dataclass(frozen=True)
class Leader:
    """The leading configuration: its mean objective over ``n_seeds`` seeds, the 95% interval (NaN
    below 2 seeds) and how many other configurations are not significantly worse."""

    label: str
    mean: float
    low: float
    high: float
    n_seeds: int
    tied: int

    def text(self) -> str:
        if self.n_seeds < 2:
            return f"{self.label} {percent(self.mean)} (1 seed, no interval yet)"
        others = {0: "none tied", 1: "1 other tied"}.get(self.tied, f"{self.tied} others tied")
        interval = f"[{percent(self.low, '')}, {percent(self.high, '')}]"
        return f"{self.label} {percent(self.mean)} {interval} over {self.n_seeds} seeds, {others}"


def leader_of(comparison: Comparison) -> Leader | None:
    """The configuration ``comparison`` leads with; None when nothing has completed. (``compare`` runs a
    paired test per pair of configurations: make it when a run finishes, not per session.)"""
    table = comparison.table
    if table.empty:
        return None
    best = table.iloc[0]
    tied = int(table["tied_with_best"].iloc[1:].astype(bool).sum())
    low, high = float(best["ci_low"]), float(best["ci_high"])
    return Leader(comparison.label(0), float(best["mean"]), low, high, int(best["n_seeds"]), tied)


def sessions_left(
    total: int | None, runs_seen: int, running_done: Iterable[int], num_sessions: int | None
) -> int | None:
    """The most sessions still to run: every session of the runs not started yet and the rest of the
    running ones (``running_done``: sessions each has reported); None without a total or session count."""
    if total is None or not num_sessions:
        return None
    rest = sum(max(0, num_sessions - done) for done in running_done)
    return max(0, total - runs_seen) * num_sessions + rest


def session_rate(count: int, first_s: float, last_s: float) -> float | None:
    """Sessions per second between the first and the last of ``count`` reports; None before two."""
    if count < 2 or last_s <= first_s:
        return None
    return (count - 1) / (last_s - first_s)


@dataclass(frozen=True)
class SweepProgress:
    """A sweep's progress at one moment; ``lines()`` is what the live display and ``status`` print."""

    counts: Mapping[str, int]  # finished runs by status
    running: int
    total: int | None  # the most runs the sweep can start
    leader: Leader | None
    objective: str  # the objective's label
    elapsed_s: float
    sessions_left: int | None = None  # at most
    rate: float | None = None  # sessions per second so far
    since_last_s: float | None = None  # since the last session was written (status only)
    finished: bool = False  # a driver ended the sweep with every run done (status only)

    @property
    def eta_s(self) -> float | None:
        """Seconds until the sessions left are done at the rate so far (an upper bound); None without one."""
        if self.sessions_left is None or self.rate is None:
            return None
        return self.sessions_left / self.rate

    def runs_text(self) -> str:
        counts = ", ".join(f"{self.counts.get(status, 0)} {status}" for status in STATUSES)
        of = f" (of at most {self.total})" if self.total else ""
        return f"runs: {counts}, {self.running} running{of}"

    def best_text(self) -> str:
        if self.leader is None:
            return f"best so far ({self.objective}): none, no run has completed every session yet"
        return f"best so far ({self.objective}): {self.leader.text()}"

    def time_text(self) -> str:
        if self.finished:
            return f"finished, in {clock_text(self.elapsed_s)}"
        parts = [f"elapsed {clock_text(self.elapsed_s)}"]
        if self.since_last_s is not None:
            parts.append(f"last session written {duration(self.since_last_s)} ago")
        if self.sessions_left != 0:
            eta = self.eta_s
            parts.append("ETA: n/a" if eta is None else f"ETA <= {duration(eta)}")
        return ", ".join(parts)

    def lines(self) -> list[str]:
        return [self.runs_text(), self.best_text(), self.time_text()]


def progress_of(
    sessions: pd.DataFrame,
    trials: pd.DataFrame,
    summary: SweepSummary,
    *,
    total: int | None,
    num_sessions: int | None,
    now: datetime,
    started_at: datetime | None = None,
    finished_at: datetime | None = None,
) -> SweepProgress:
    """The progress a sweep's rows (and their ``summary``: counts, the best) show at ``now``: the rate
    from the sessions' ``written_at``, elapsed since ``started_at`` (default: the first session written)
    until ``finished_at`` (when a driver ended the sweep with every run done), else until the last
    session once nothing is left to run, else until now."""
    done = sessions.groupby(list(TRIAL_KEY)).session.max() + 1 if len(sessions) else pd.Series(dtype=int)
    finished = set(zip(trials.trial_id, trials.seed, strict=True))
    running = [int(n) for key, n in done.items() if key not in finished]
    left = sessions_left(total, len(finished | set(done.index)), running, num_sessions)
    rate = since_last = None
    begin, end = started_at, finished_at or now
    if len(sessions):
        written = pd.to_datetime(sessions.written_at, utc=True)
        first, last = written.min().to_pydatetime(), written.max().to_pydatetime()
        rate = session_rate(len(sessions), first.timestamp(), last.timestamp())
        since_last = max(0.0, (now - last).total_seconds())
        begin = begin or first
        end = finished_at or (last if left == 0 else now)
    elapsed = max(0.0, (end - begin).total_seconds()) if begin is not None else 0.0
    comparison = summary.verdict.comparison
    return SweepProgress(
        summary.counts,
        len(running),
        total,
        leader_of(comparison),
        comparison.objective.label,
        elapsed,
        left,
        rate,
        since_last,
        finished=finished_at is not None,
    )


def clock_text(seconds: float) -> str:
    """``h:mm:ss``, for elapsed time (it ticks every second on the live display)."""
    whole = int(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"
