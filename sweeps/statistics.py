"""Conclusions with their evidence: per-configuration intervals, paired tests against the best, ties.

Seeds are the unit of replication and of pairing: runs of two configurations with the same seed share
the base session (or ``base_seed``), the split and the replay draw, so configurations are compared seed
by seed and that noise cancels. A copy of a run (same configuration and seed) counts once; ``n_seeds``
is the number of distinct seeds.

The methods, from scipy.stats, chosen because they are valid at the 3-10 seeds
people run (a Wilcoxon or sign-flip test cannot reach p < 0.25 with 3 paired seeds):

- each configuration: mean, sample std and a 95% Student-t interval over its seeds;
- against the reference (the best, or a baseline chosen beforehand): a paired t-test
  (``scipy.stats.ttest_rel``) on the seeds both ran, with the t-interval of the mean difference;
- multiplicity: Holm's step-down adjustment. The best is picked from the data, so its comparisons
  are a data-selected subset of all pairs: Holm runs over every pair of configurations, which keeps
  the chance of any false "worse than the best" at alpha. A baseline is fixed beforehand: Holm over
  its k-1 comparisons. (scipy has no Holm; statsmodels' ``multipletests`` runs a full garbage
  collection on every call, a fifth of a second in a process holding torch, so the three lines are
  ours and tests/test_statistics.py checks them against statsmodels);
- seeds to separate two configurations: the power of the paired t-test from the noncentral t
  distribution (``scipy.stats.nct``);
- ``tied_with_best``: the reference is not significantly better (adjusted p >= alpha, or fewer than
  two shared seeds, when no test is possible).

Simulations in tests/test_statistics.py check the false-positive rate on identical configurations
and the power at a known effect.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from .objective import Objective
from .results import TRIAL_KEY, param_columns, value_label

STAT_COLUMNS = ("n_seeds", "mean", "std", "ci_low", "ci_high", "diff_vs_best", "p_adj", "tied_with_best")
ALPHA = 0.05
POWER = 0.8
MAX_SEEDS = 10_000  # beyond this a difference is "no seed count separates them" in practice
_RUN_COLUMNS = ("seed", "value", "compute_s")
DEFAULT = Objective()


def run_values(sessions: pd.DataFrame, trials: pd.DataFrame, objective: Objective) -> pd.DataFrame:
    """One row per (configuration, seed) that completed every session: the swept parameters, ``seed``,
    ``value`` (the objective) and ``compute_s``. Copies of a run count once (their mean)."""
    params = [p for p in param_columns(sessions, trials) if p in trials.columns]
    if "compute_s" not in trials:
        trials = trials.assign(compute_s=math.nan)
    done = trials.loc[trials["status"] == "completed", [*TRIAL_KEY, *params, "compute_s"]]
    columns = [*TRIAL_KEY, "session", *objective.columns]
    rows = sessions[columns].merge(done[list(TRIAL_KEY)], on=list(TRIAL_KEY)).sort_values("session")
    values = {
        key: objective.value({c: group[c].tolist() for c in objective.columns})
        for key, group in rows.groupby(list(TRIAL_KEY))
    }
    done = done.assign(
        value=[values.get(key, math.nan) for key in zip(done.trial_id, done.seed, strict=True)]
    )
    done = done.dropna(subset=["value"])
    if done.empty:
        return pd.DataFrame(columns=[*params, "seed", "value", "compute_s"])
    keys = [*params, "seed"]
    runs = done.groupby(keys, dropna=False, sort=False)[["value", "compute_s"]].mean().reset_index()
    return runs[[*params, "seed", "value", "compute_s"]]


@dataclass
class Comparison:
    """Every configuration's statistics (``table``, reference first, then by mean) and how they were made."""

    table: pd.DataFrame  # parameter columns, STAT_COLUMNS, and diff_ci_low / diff_ci_high / n_paired
    params: list[str]
    objective: Objective
    mode: str
    reference: str  # "best" or "baseline"
    n_pairs: int  # comparisons the Holm correction runs over
    alpha: float = ALPHA
    values: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)  # configuration x seed

    @property
    def method(self) -> str:
        """One line naming the statistics, for a table's caption or footer and the verdict."""
        against = "the best" if self.reference == "best" else "the baseline"
        over = "all pairs of configurations" if self.reference == "best" else "the comparisons with it"
        return (
            f"{self.objective.label}: mean over seeds with a 95% Student-t interval; diff_vs_best = paired "
            f"difference to {against} on shared seeds (scipy.stats.ttest_rel), p_adj = Holm-adjusted over "
            f"{over} ({self.n_pairs} test(s)); tied_with_best = not significantly different at "
            f"alpha {self.alpha:g}"
        )

    def label(self, index: int) -> str:
        row = self.table.iloc[index]
        return ", ".join(f"{p}={value_label(row[p])}" for p in self.params) or "the configuration"


def compare(
    runs: pd.DataFrame,
    params: Sequence[str] | None = None,
    objective: Objective = DEFAULT,
    mode: str = "max",
    baseline: Mapping[str, Any] | None = None,
    alpha: float = ALPHA,
) -> Comparison:
    """Statistics of every configuration in ``runs`` (from ``run_values``) against the best, or against
    ``baseline`` (parameter values naming one configuration). A configuration is a combination of
    ``params`` (default: every parameter column of ``runs`` that is set somewhere)."""
    if params is None:
        params = [p for p in runs.columns if p not in _RUN_COLUMNS and runs[p].notna().any()]
    params = list(params)
    if runs.empty:
        return Comparison(pd.DataFrame(columns=[*params, *STAT_COLUMNS]), params, objective, mode, "best", 0)
    index = params or ["_configuration"]
    frame = runs.assign(_configuration="all") if not params else runs
    wide = frame.groupby([*index, "seed"], dropna=False, sort=True)["value"].mean().unstack("seed")
    wide = wide.dropna(how="all")
    matrix = wide.to_numpy(float)
    means = np.nanmean(matrix, axis=1)
    n_seeds = (~np.isnan(matrix)).sum(axis=1)
    sign = 1.0 if mode == "max" else -1.0
    if baseline is not None:
        ref = _find(wide.index, params, baseline)
    else:  # the best mean among the configurations with the most seeds
        eligible = np.flatnonzero(n_seeds == n_seeds.max())
        ref = int(eligible[np.argmax(sign * means[eligible])])
    k = len(matrix)
    if baseline is None:  # the best is chosen from the data: correct over every pair it could be part of
        pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
    else:
        pairs = [(min(i, ref), max(i, ref)) for i in range(k) if i != ref]
    raw = {pair: _paired(matrix[pair[0]], matrix[pair[1]], alpha) for pair in pairs}
    testable = [pair for pair in pairs if not math.isnan(raw[pair].p)]
    adjusted = dict(zip(testable, holm([raw[pair].p for pair in testable]), strict=True))
    rows = []
    for i in range(k):
        x = matrix[i][~np.isnan(matrix[i])]
        row = {"n_seeds": int(n_seeds[i]), "mean": float(means[i]), **_spread(x, alpha)}
        if i == ref:
            row.update(diff_vs_best=0.0, p_adj=math.nan, tied_with_best=True)
            row.update(diff_ci_low=0.0, diff_ci_high=0.0, n_paired=int(n_seeds[i]))
        else:
            pair = (min(i, ref), max(i, ref))
            test = raw[pair] if pair[0] == i else raw[pair].reversed()
            p_adj = adjusted.get(pair, math.nan)
            row.update(diff_vs_best=test.diff, p_adj=p_adj, tied_with_best=bool(not p_adj < alpha))
            row.update(diff_ci_low=test.low, diff_ci_high=test.high, n_paired=test.n)
        rows.append(row)
    table = pd.DataFrame(rows)
    labels = wide.index.to_frame(index=False) if params else pd.DataFrame(index=range(k))
    table = pd.concat([labels[params].reset_index(drop=True), table], axis=1)
    order = [ref] + sorted((i for i in range(k) if i != ref), key=lambda i: (-sign * means[i], i))
    table = table.iloc[order].reset_index(drop=True)
    table = table[[*params, *STAT_COLUMNS, "diff_ci_low", "diff_ci_high", "n_paired"]]
    values = pd.DataFrame(matrix[order], columns=list(wide.columns))
    reference = "best" if baseline is None else "baseline"
    return Comparison(table, params, objective, mode, reference, len(testable), alpha, values)


def _find(index: pd.Index, params: Sequence[str], baseline: Mapping[str, Any]) -> int:
    unknown = sorted(set(baseline) - set(params))
    if unknown:
        raise ValueError(
            f"--baseline {unknown[0]}: not a swept parameter; choose from {', '.join(params) or '(none)'}"
        )
    frame = index.to_frame(index=False)
    match = np.ones(len(frame), dtype=bool)
    for name, wanted in baseline.items():
        match &= np.array([_same(value, wanted) for value in frame[name]])
    hits = np.flatnonzero(match)
    if len(hits) != 1:
        shown = ", ".join(f"{k}={v}" for k, v in baseline.items())
        what = "no completed configuration" if not len(hits) else f"{len(hits)} configurations"
        raise ValueError(f"--baseline {shown} names {what}; name exactly one with key=value pairs")
    return int(hits[0])


def _same(value: Any, wanted: Any) -> bool:
    """Whether a parameter value is the one a user typed (``rank=8``, ``top_n=null``, ``continuous=true``)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return wanted is None or str(wanted).lower() in ("none", "null", "nan")
    if isinstance(value, (bool, np.bool_)):
        return str(value).lower() == str(wanted).lower()
    if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
        try:
            return math.isclose(float(value), float(wanted), rel_tol=1e-9)
        except (TypeError, ValueError):
            return False
    return str(value) == str(wanted)


def _spread(x: np.ndarray, alpha: float) -> dict[str, float]:
    if len(x) < 2:
        return {"std": math.nan, "ci_low": math.nan, "ci_high": math.nan}
    mean, std = float(np.mean(x)), float(np.std(x, ddof=1))
    if std == 0:  # every seed the same: the interval is the point (scipy would compute 0 * inf)
        return {"std": 0.0, "ci_low": mean, "ci_high": mean}
    low, high = stats.t.interval(1 - alpha, len(x) - 1, loc=mean, scale=std / math.sqrt(len(x)))
    return {"std": std, "ci_low": float(low), "ci_high": float(high)}


@dataclass(frozen=True)
class _PairedTest:
    """Mean of a - b on the seeds both ran, the paired t-test's p-value and interval, the seed count."""

    diff: float
    p: float
    low: float
    high: float
    n: int

    def reversed(self) -> _PairedTest:
        return _PairedTest(-self.diff, self.p, -self.high, -self.low, self.n)


def _paired(a: np.ndarray, b: np.ndarray, alpha: float) -> _PairedTest:
    both = ~np.isnan(a) & ~np.isnan(b)
    a, b = a[both], b[both]
    n = int(both.sum())
    diff = float(np.mean(a - b)) if n else math.nan
    if n < 2:
        return _PairedTest(diff, math.nan, math.nan, math.nan, n)
    with warnings.catch_warnings():  # identical runs: no spread, scipy warns and returns NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        result = stats.ttest_rel(a, b)
        interval = result.confidence_interval(1 - alpha)
    p = float(result.pvalue)
    if math.isnan(p):  # every paired difference is zero: no evidence of any difference
        p = 1.0
    return _PairedTest(diff, p, float(interval.low), float(interval.high), n)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values: the i-th smallest times (m - i), running maximum, capped at 1."""
    p = np.asarray(pvalues, dtype=float)
    order = np.argsort(p)
    stepped = np.maximum.accumulate(p[order] * np.arange(len(p), 0, -1))
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(stepped, 1.0)
    return adjusted.tolist()


def paired_t_power(effect: float, n: int, alpha: float) -> float:
    """Power of a two-sided paired t-test with ``n`` pairs at standardised effect ``effect`` (mean / std
    of the paired differences), from the noncentral t distribution."""
    df = n - 1
    critical = stats.t.ppf(1 - alpha / 2, df)
    shift = effect * math.sqrt(n)
    return float(stats.nct.sf(critical, df, shift) + stats.nct.cdf(-critical, df, shift))


# ------------------------------------------------------------------------------------------ verdict


@dataclass
class Verdict:
    """What a sweep may claim: the best, every configuration tied with it, and what would separate them."""

    comparison: Comparison
    seconds_per_trial: float = math.nan
    power: float = POWER
    pruned: list[str] = field(default_factory=list)  # configurations stopped early, with their session

    @property
    def table(self) -> pd.DataFrame:
        return self.comparison.table

    @property
    def n_seeds(self) -> int:
        return int(self.table["n_seeds"].max()) if len(self.table) else 0

    @property
    def tied(self) -> pd.DataFrame:
        return self.table.iloc[1:][self.table["tied_with_best"].iloc[1:].astype(bool)]

    @property
    def separated(self) -> pd.DataFrame:
        return self.table.iloc[1:][~self.table["tied_with_best"].iloc[1:].astype(bool)]

    @property
    def runner_up(self) -> int | None:
        """The row of the runner-up still tied with the best (the highest mean among the ties), if any."""
        return int(self.tied.index[0]) if len(self.tied) else None

    def seeds_to_separate(self, row: int | None = None) -> int | None:
        """Seeds for a paired t-test to tell the best from ``row`` (default: the runner-up still tied
        with it) with ``power`` at the observed effect (mean / std of their paired differences), at
        Holm's strictest level alpha / n_pairs; None when it cannot be estimated (no such row, or
        fewer than 2 shared seeds)."""
        row = self.runner_up if row is None else row
        if row is None:
            return None
        values = self.comparison.values.to_numpy(float)
        both = ~np.isnan(values[0]) & ~np.isnan(values[row])
        diffs = values[0][both] - values[row][both]
        if len(diffs) < 2:
            return None
        spread, mean = float(np.std(diffs, ddof=1)), abs(float(np.mean(diffs)))
        if mean == 0:
            return MAX_SEEDS
        if spread == 0:
            return 2
        alpha = self.comparison.alpha / max(1, self.comparison.n_pairs)
        effect = mean / spread
        low, high = 2, MAX_SEEDS  # the smallest n with enough power, by bisection (power grows with n)
        if paired_t_power(effect, high, alpha) < self.power:
            return MAX_SEEDS
        while low < high:
            middle = (low + high) // 2
            low, high = (
                (middle + 1, high) if paired_t_power(effect, middle, alpha) < self.power else (low, middle)
            )
        return low

    def lines(self, spec_hint: str = "the spec") -> list[str]:
        """The verdict as plain lines for the end of ``launch`` and for ``status``."""
        lines = self._claims(spec_hint)
        if self.pruned:
            lines.append("pruned before the last session, so not compared: " + "; ".join(self.pruned))
        return lines

    def _claims(self, spec_hint: str) -> list[str]:
        table, comparison = self.table, self.comparison
        if table.empty:
            return ["no configuration has completed every session yet: nothing to conclude"]
        what = comparison.objective.label
        if len(table) == 1:
            return [f"one configuration completed ({comparison.label(0)}): nothing to compare it with"]
        if self.n_seeds < 2:
            ranked = "; ".join(f"{comparison.label(i)} {percent(table['mean'].iloc[i])}" for i in range(2))
            return [
                f"one seed per configuration: no difference can be claimed, since the seed-to-seed noise is "
                f"unknown (highest {what} so far: {ranked}).",
                f"to decide, list 3 or more seeds under `seeds:` in {spec_hint} (e.g. seeds: [0, 1, 2]) and "
                "launch it again; how many would separate the top two cannot be estimated from one seed.",
            ]
        head = "best" if comparison.reference == "best" else "baseline"
        lines = [
            f"verdict on {what} over {self.n_seeds} seeds (paired t-test on shared seeds, Holm over "
            f"{comparison.n_pairs} test(s), alpha {comparison.alpha:g}):",
            f"  {head}: {comparison.label(0)}: {percent(table['mean'].iloc[0])} "
            f"[{percent(table['ci_low'].iloc[0], '')}, {percent(table['ci_high'].iloc[0], '')}] "
            f"(n={self.n_seeds})",
        ]
        tied_name = "tied with it" if head == "best" else "not different from it"
        for name, rows in ((tied_name, self.tied), ("significantly different", self.separated)):
            if len(rows):
                items = [self._versus(i) for i in rows.index]
                lines.append(f"  {name}: " + "; ".join(items))
        if head == "best" and not len(self.tied):
            lines.append("  the best is significantly better than every other completed configuration")
        elif head == "best":
            lines.append("  " + self._seeds_line())
        return lines

    def _versus(self, i: int) -> str:
        row = self.table.iloc[i]
        p = "n/a (fewer than 2 shared seeds)" if math.isnan(row["p_adj"]) else f"{row['p_adj']:.3g}"
        return (
            f"{self.comparison.label(i)} (diff {_signed(row['diff_vs_best'])} "
            f"[{_signed(row['diff_ci_low'])}, {_signed(row['diff_ci_high'])}] points, p_adj {p})"
        )

    def _seeds_line(self) -> str:
        row = self.runner_up
        needed = self.seeds_to_separate(row)
        runner = self.comparison.label(row)
        if needed is None:
            return f"the best's tied runner-up {runner} shares fewer than 2 seeds with it: add seeds"
        if needed >= MAX_SEEDS:
            return f"no practical number of seeds separates the best from its tied runner-up {runner}"
        more = max(0, needed - self.n_seeds)
        text = (
            f"to separate the best from its tied runner-up {runner} at the observed difference "
            f"({_signed(self.table['diff_vs_best'].iloc[row])} points) with {self.power:.0%} power: "
            f"about {needed} seeds, {more} more"
        )
        if more and math.isfinite(self.seconds_per_trial):
            cost = duration(2 * more * self.seconds_per_trial)
            text += f" (2 x {more} runs, about {cost} of compute at {self.seconds_per_trial:.0f} s per run)"
        return text


def verdict(runs: pd.DataFrame, comparison: Comparison, trials: pd.DataFrame | None = None) -> Verdict:
    """The verdict of ``comparison``, with the cost of a run measured over ``runs``; ``trials`` (the
    sweep's trial rows) name the configurations the pruner stopped."""
    seconds = float(runs["compute_s"].mean()) if len(runs) and "compute_s" in runs else math.nan
    return Verdict(comparison, seconds, pruned=_pruned(trials, comparison.params))


def _pruned(trials: pd.DataFrame | None, params: Sequence[str]) -> list[str]:
    """Each pruned configuration and the last session its runs reached."""
    if trials is None or trials.empty or not params or not set(params) <= set(trials.columns):
        return []
    pruned = trials[trials["status"] == "pruned"]
    reached = pruned.groupby(list(params), dropna=False, sort=False)["pruned_at_session"].max()
    labels = []
    for key, session in reached.items():
        values = key if isinstance(key, tuple) else (key,)
        name = ", ".join(f"{p}={value_label(v)}" for p, v in zip(params, values, strict=True))
        labels.append(f"{name} (session {int(session)})" if not pd.isna(session) else name)
    return labels


def percent(value: float | None, unit: str = "%") -> str:
    """A fraction as a percentage with two decimals (``n/a`` when missing)."""
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:.2f}{unit}"


def _signed(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100 * value:+.2f}"


def duration(seconds: float) -> str:
    """A rough duration: ``45 s``, ``12 min`` or ``3.5 h``."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
