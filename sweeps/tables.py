"""Paper-style ablation tables: mean ± std over seeds of a metric, per parameter value and session."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from .results import SESSION_VALUES, TRIAL_KEY, TRIAL_VALUES, param_columns

FORMATS = ("markdown", "latex", "csv")
_LATEX_SPECIALS = {"\\": r"\textbackslash{}", "_": r"\_", "%": r"\%", "&": r"\&", "#": r"\#", "$": r"\$"}


def _require(what: str, name: str, allowed: Sequence[str]) -> None:
    if name not in allowed:
        raise ValueError(f"unknown {what} {name!r}; choose one of: {', '.join(allowed) or '(none)'}")


def ablation_table(
    sessions: pd.DataFrame,
    trials: pd.DataFrame,
    rows: str,
    cols: str = "session",
    metric: str = "acc_all",
    statuses: Iterable[str] = ("completed",),
) -> pd.DataFrame:
    """Mean, sample std (ddof=1) and count of ``metric`` over the runs (trials x seeds) of each cell.

    Only trials whose status is in ``statuses`` count. With ``cols="session"`` the metric is a session
    column; with ``cols`` another parameter it is a trial summary (``last_acc``, ``avg_acc``...) or the last
    session's value of a session column. Columns are a (stat, cols value) MultiIndex: ``table["mean"]`` is
    the plain pivot.
    """
    params = param_columns(sessions, trials)
    _require("rows parameter", rows, params)
    _require("cols", cols, ["session"] + [p for p in params if p != rows])
    _require("metric", metric, SESSION_VALUES if cols == "session" else TRIAL_VALUES + SESSION_VALUES)
    chosen = trials[trials["status"].isin([statuses] if isinstance(statuses, str) else list(statuses))]
    if cols != "session" and metric in TRIAL_VALUES:
        runs = chosen
    else:
        runs = sessions.merge(chosen[list(TRIAL_KEY)].drop_duplicates(), on=list(TRIAL_KEY))
        if cols != "session":
            runs = runs.sort_values("session").groupby(list(TRIAL_KEY)).tail(1)
    stats = runs.groupby([rows, cols], dropna=False)[metric].agg(["mean", "std", "count"])
    table = pd.concat(
        {
            "mean": stats["mean"].unstack(cols),
            "std": stats["std"].unstack(cols),
            "n": stats["count"].unstack(cols, fill_value=0),
        },
        axis=1,
    )
    table.columns.names = ["stat", cols]
    return table


def value_label(value: Any) -> str:
    """A parameter value as a table header or legend entry: ``none`` when missing, floats without noise."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "none"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _cell(mean: float, std: float, n: int, digits: int, pm: str) -> str:
    if n == 0 or math.isnan(mean):
        return "-"
    text = f"{mean:.{digits}f}"
    if not math.isnan(std):
        text += f" {pm} {std:.{digits}f}"
    return f"{text} (n={n})"


def _latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIALS.get(ch, ch) for ch in text)


def format_table(table: pd.DataFrame, fmt: str = "markdown", digits: int = 2, percent: bool = True) -> str:
    """Render an ``ablation_table``: cells like ``63.10 ± 2.00 (n=3)`` in markdown and LaTeX (booktabs), or
    CSV with one line per cell and separate mean, std and n columns; ``percent`` shows fractions as %."""
    _require("format", fmt, FORMATS)
    rows, cols = table.index.name, table.columns.names[1]
    scale = 100.0 if percent else 1.0
    col_values = list(table["mean"].columns)
    mean = table["mean"].to_numpy(float) * scale
    std = table["std"].to_numpy(float) * scale
    count = table["n"].to_numpy(int)
    if fmt == "csv":
        lines = [
            (r, c, mean[i, j], std[i, j], count[i, j])
            for i, r in enumerate(table.index)
            for j, c in enumerate(col_values)
        ]
        frame = pd.DataFrame(lines, columns=[rows, cols, "mean", "std", "n"])
        return frame.to_csv(index=False, float_format=f"%.{digits}f")
    pm = "±" if fmt == "markdown" else r"$\pm$"
    header = [rows] + [f"{cols}={value_label(c)}" for c in col_values]
    body = []
    for i, r in enumerate(table.index):
        cells = zip(mean[i], std[i], count[i], strict=True)
        body.append([value_label(r)] + [_cell(m, s, n, digits, pm) for m, s, n in cells])
    if fmt == "markdown":
        lines = [header, ["---"] * len(header), *body]
        return "\n".join("| " + " | ".join(line) + " |" for line in lines) + "\n"
    escaped = [[_latex_escape(h) for h in header]] + [[_latex_escape(line[0]), *line[1:]] for line in body]
    rendered = [" & ".join(line) + r" \\" for line in escaped]
    return "\n".join(
        [
            r"\begin{tabular}{l" + "c" * len(col_values) + "}",
            r"\toprule",
            rendered[0],
            r"\midrule",
            *rendered[1:],
            r"\bottomrule",
            r"\end{tabular}",
            "",
        ]
    )
