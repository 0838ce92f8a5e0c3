"""PNG figures of a sweep: the objective per configuration with its interval, accuracy per session by
parameter value, and every run's curve by status."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from .objective import Objective
from .results import STATUSES, TRIAL_KEY, param_columns, value_label
from .statistics import Comparison, compare, run_values

FIGSIZE = (8.0, 5.0)
DPI = 100
# The objective figure: the best (or baseline), the configurations tied with it, those set apart.
VERDICT_COLORS = {"best": "tab:green", "tied": "tab:blue", "different": "tab:red"}
# "running": a run with session rows but no trial row yet (the sweep is still going).
STATUS_COLORS = dict(
    zip((*STATUSES, "running"), ("tab:blue", "tab:orange", "tab:red", "tab:purple"), strict=True)
)


def _figure(figsize: tuple[float, float], dpi: int, title: str) -> tuple[Figure, Axes]:
    fig = Figure(figsize=figsize, dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set(title=title, xlabel="session (0 = base)", ylabel="accuracy (%)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig, ax


def _accuracy_per_session(
    sessions: pd.DataFrame, trials: pd.DataFrame, param: str | None, figsize: tuple[float, float], dpi: int
) -> Figure:
    """Mean test (solid) and val (dashed) acc_all per session of completed trials, ±std band over runs."""
    fig, ax = _figure(figsize, dpi, "accuracy per session (solid: test, dashed: val; completed trials)")
    completed = trials.loc[trials["status"] == "completed", list(TRIAL_KEY)].drop_duplicates()
    runs = sessions.merge(completed, on=list(TRIAL_KEY))
    groups = runs.groupby(param, dropna=False) if param else [(None, runs)]
    for i, (value, group) in enumerate(groups):
        label = f"{param}={value_label(value)}" if param else "all trials"
        for column, style in (("acc_all", "-"), ("val_acc_all", "--")):
            stats = group.groupby("session")[column].agg(["mean", "std"]) * 100
            std = stats["std"].fillna(0.0)
            ax.plot(
                stats.index,
                stats["mean"],
                style,
                marker="o",
                color=f"C{i}",
                label=label if style == "-" else None,
            )
            ax.fill_between(stats.index, stats["mean"] - std, stats["mean"] + std, color=f"C{i}", alpha=0.15)
    if runs.empty:
        ax.text(0.5, 0.5, "no completed trials yet", ha="center", transform=ax.transAxes)
    else:
        ax.legend()
    return fig


def _pruning(sessions: pd.DataFrame, trials: pd.DataFrame, figsize: tuple[float, float], dpi: int) -> Figure:
    """Every run's val_acc_all curve coloured by status; a pruned run ends with an x at its pruned session."""
    fig, ax = _figure(figsize, dpi, "validation accuracy of every trial")
    ax.set_ylabel("val accuracy (%)")
    state = {(r.trial_id, r.seed): (r.status, r.pruned_at_session) for r in trials.itertuples()}
    drawn: set[str] = set()
    for key, run in sessions.sort_values("session").groupby(list(TRIAL_KEY)):
        status, pruned_at = state.get(key, ("running", math.nan))
        if status == "pruned" and not pd.isna(pruned_at):
            run = run[run["session"] <= pruned_at]
        x, y = run["session"].to_numpy(), run["val_acc_all"].to_numpy() * 100
        color = STATUS_COLORS[status]
        drawn.add(status)
        ax.plot(x, y, ".-", color=color, alpha=0.7, linewidth=1, markersize=4)  # dots: one-session runs show
        if status == "pruned" and len(x):
            ax.plot(x[-1], y[-1], "x", color=color, markersize=8)
    if drawn:
        ax.legend(handles=[Line2D([], [], color=c, label=s) for s, c in STATUS_COLORS.items() if s in drawn])
    else:
        ax.text(0.5, 0.5, "no sessions reported yet", ha="center", transform=ax.transAxes)
    return fig


def _objective(comparison: Comparison, figsize: tuple[float, float], dpi: int) -> Figure:
    """A forest plot: each completed configuration's mean objective over seeds with its 95% interval,
    the best first and marked, ties and significantly different ones in their own colours."""
    fig = Figure(figsize=figsize, dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    table = comparison.table
    reference = "best" if comparison.reference == "best" else "baseline"
    ax.set_title(
        f"{comparison.objective.label}: mean and 95% interval over seeds\n"
        f"colour: paired t-test against the {reference} on shared seeds (Holm-adjusted)"
    )
    ax.set_xlabel(f"{comparison.objective.label} (%)")
    if table.empty:
        ax.text(0.5, 0.5, "no completed configuration yet", ha="center", transform=ax.transAxes)
        return fig
    y = np.arange(len(table))[::-1]
    drawn: dict[str, None] = {}
    for i, row in enumerate(table.itertuples(index=False)):
        kind = "best" if i == 0 else ("tied" if row.tied_with_best else "different")
        drawn[kind] = None
        mean, low, high = 100 * row.mean, 100 * row.ci_low, 100 * row.ci_high
        color = VERDICT_COLORS[kind]
        if not math.isnan(low):
            ax.errorbar(mean, y[i], xerr=[[mean - low], [high - mean]], fmt="none", color=color, capsize=4)
        ax.plot(mean, y[i], "D" if i == 0 else "o", color=color, markersize=8)
    ax.axvline(100 * table["mean"].iloc[0], color=VERDICT_COLORS["best"], linestyle="--", linewidth=1)
    ax.set_yticks(y, [f"{comparison.label(i)} (n={n})" for i, n in enumerate(table["n_seeds"])])
    ax.set_ylim(-0.6, len(table) - 0.4)
    names = {"best": reference, "tied": f"tied with the {reference}", "different": "significantly different"}
    handles = [
        Line2D([], [], color=VERDICT_COLORS[k], marker="o", linestyle="", label=names[k]) for k in drawn
    ]
    ax.legend(handles=handles, loc="best")
    if table["n_seeds"].max() < 2:
        ax.text(
            0.5,
            0.02,
            "one seed per configuration: no interval, no difference can be claimed",
            ha="center",
            transform=ax.transAxes,
        )
    return fig


def plot_report(
    sessions: pd.DataFrame,
    trials: pd.DataFrame,
    out_dir: str | os.PathLike,
    param: str | None = None,
    *,
    objective: Objective | None = None,
    mode: str = "max",
    figsize: tuple[float, float] = FIGSIZE,
    dpi: int = DPI,
) -> list[Path]:
    """Write ``objective.png`` (the forest plot of ``objective``, default avg val_acc_all, over the
    completed configurations), ``accuracy_per_session.png`` (by value of ``param``, default the first
    swept parameter) and ``pruning.png`` into ``out_dir``; each is ``figsize`` inches at ``dpi``.
    Returns the paths written."""
    params = param_columns(sessions, trials)
    if param is None:
        param = params[0] if params else None
    elif param not in params:
        raise ValueError(f"unknown parameter {param!r}; choose one of: {', '.join(params) or '(none)'}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    objective = objective or Objective()
    runs = run_values(sessions, trials, objective)
    figures = {
        "objective.png": _objective(compare(runs, objective=objective, mode=mode), figsize, dpi),
        "accuracy_per_session.png": _accuracy_per_session(sessions, trials, param, figsize, dpi),
        "pruning.png": _pruning(sessions, trials, figsize, dpi),
    }
    for name, fig in figures.items():
        fig.savefig(out / name, dpi=dpi)
    return [out / name for name in figures]
