"""Paper-style tables in markdown, LaTeX (booktabs) or CSV, with the evidence for every claim.

- ``format_comparison``: one row per configuration with its objective's ``n_seeds``, ``mean``,
  ``std``, 95% interval, paired difference to the best, Holm-adjusted p-value and tie (see
  ``statistics``); LaTeX puts the best in bold and marks the ties, as papers do.
- ``ablation_table`` / ``format_table``: a metric per session (or per value of a second parameter),
  mean and 95% interval over seeds in every cell.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .results import SESSION_VALUES, TRIAL_KEY, TRIAL_VALUES, param_columns, value_label
from .statistics import ALPHA, STAT_COLUMNS, Comparison

FORMATS = ("markdown", "latex", "csv")
CELL_COLUMNS = ("n_seeds", "mean", "std", "ci_low", "ci_high")
_LATEX_SPECIALS = {"\\": r"\textbackslash{}", "_": r"\_", "%": r"\%", "&": r"\&", "#": r"\#", "$": r"\$"}
_SCALED = ("mean", "std", "ci_low", "ci_high", "diff_vs_best")


def _require(what: str, name: str, allowed: Sequence[str]) -> None:
    if name not in allowed:
        raise ValueError(f"unknown {what} {name!r}; choose one of: {', '.join(allowed) or '(none)'}")


# --------------------------------------------------------------------------- configurations


def format_comparison(
    comparison: Comparison, fmt: str = "markdown", digits: int = 2, percent: bool = True
) -> str:
    """Render a ``Comparison``: the parameter columns and exactly ``STAT_COLUMNS``, reference row first.

    Markdown and LaTeX end with a footer naming the statistics; CSV is the bare table (``percent``
    scales the accuracy columns to %)."""
    _require("format", fmt, FORMATS)
    table = comparison.table[[*comparison.params, *STAT_COLUMNS]].copy()
    scale = 100.0 if percent else 1.0
    for column in _SCALED:
        table[column] = table[column].astype(float) * scale
    if fmt == "csv":  # accuracies to ``digits``, p-values in full
        table["tied_with_best"] = table["tied_with_best"].astype(bool)
        return table.round({column: digits for column in _SCALED}).to_csv(index=False)
    unit = " (values in %)" if percent else ""
    reference = "best" if comparison.reference == "best" else "baseline"
    footer = f"{comparison.method}; the {reference} is the first row{unit}."
    header = list(table.columns)
    body = [
        _comparison_row(comparison, row, i, digits) for i, row in enumerate(table.itertuples(index=False))
    ]
    if fmt == "markdown":
        body = [
            [
                f"**{cell}**" if i == 0 and j == len(comparison.params) + 1 else cell
                for j, cell in enumerate(r)
            ]
            for i, r in enumerate(body)
        ]
        lines = [header, ["---"] * len(header), *body]
        return "\n".join("| " + " | ".join(line) + " |" for line in lines) + f"\n\n{footer}\n"
    ties = list(table["tied_with_best"].astype(bool))
    return _latex(header, body, footer, ties, len(comparison.params), reference)


def _comparison_row(comparison: Comparison, row: tuple, index: int, digits: int) -> list[str]:
    values = dict(zip([*comparison.params, *STAT_COLUMNS], row, strict=True))
    cells = [value_label(values[p]) for p in comparison.params]
    cells.append(str(int(values["n_seeds"])))
    cells += [_number(values[c], digits) for c in ("mean", "std", "ci_low", "ci_high")]
    if index == 0:
        cells += [_number(0.0, digits), "-", comparison.reference]
        return cells
    cells.append(_number(values["diff_vs_best"], digits, signed=True))
    p = values["p_adj"]
    cells.append("n/a" if math.isnan(p) else ("<0.001" if p < 0.001 else f"{p:.3f}"))
    cells.append("yes" if values["tied_with_best"] else "no")
    return cells


def _number(value: float, digits: int, signed: bool = False) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _latex(
    header: list[str], body: list[list[str]], footer: str, ties: list[bool], n_params: int, reference: str
) -> str:
    """A booktabs tabular: the first row's (the best's or the baseline's) mean in bold, tied rows' means
    marked with a dagger, the footer (naming the statistics) as the last row."""
    mean_column = n_params + 1
    rows = []
    for i, cells in enumerate(body):
        cells = [_latex_escape(c) for c in cells]
        if i == 0:
            cells[mean_column] = rf"\textbf{{{cells[mean_column]}}}"
        elif ties[i]:
            cells[mean_column] = rf"{cells[mean_column]}$^\dagger$"
        rows.append(cells)
    width = len(header)
    note = _latex_escape(footer) + rf" \textbf{{bold}}: {reference}; $^\dagger$: tied with it."
    return "\n".join(
        [
            r"\begin{tabular}{" + "l" * n_params + "r" * (width - n_params) + "}",
            r"\toprule",
            " & ".join(_latex_escape(h) for h in header) + r" \\",
            r"\midrule",
            *(" & ".join(cells) + r" \\" for cells in rows),
            r"\bottomrule",
            rf"\multicolumn{{{width}}}{{p{{\linewidth}}}}{{\footnotesize {note}}} \\",
            r"\end{tabular}",
            "",
        ]
    )


def _latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIALS.get(ch, ch) for ch in text)


# --------------------------------------------------------------------------- a metric per session


def ablation_table(
    sessions: pd.DataFrame,
    trials: pd.DataFrame,
    rows: str,
    cols: str = "session",
    metric: str = "acc_all",
    statuses: Iterable[str] = ("completed",),
    alpha: float = ALPHA,
) -> pd.DataFrame:
    """``n_seeds``, mean, std and the 95% Student-t interval of ``metric`` over the seeds of each cell.

    Seeds are the replicates: runs of a seed that fall in one cell (other configurations, copies of a
    run) are averaged first, so ``n_seeds`` counts distinct seeds. Only trials whose status is in
    ``statuses`` count. With ``cols="session"`` the metric is a session column; with ``cols`` another
    parameter it is a trial summary (``last_acc``, ``avg_acc``...) or the last session's value of a
    session column. Columns are a (stat, cols value) MultiIndex: ``table["mean"]`` is the plain pivot.
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
    per_seed = runs.groupby([rows, cols, "seed"], dropna=False)[metric].mean()
    cells = per_seed.groupby(level=[0, 1], dropna=False).agg(
        n_seeds="count", mean="mean", std="std", half=lambda x: _half_width(x.to_numpy(float), alpha)
    )
    cells["ci_low"], cells["ci_high"] = cells["mean"] - cells["half"], cells["mean"] + cells["half"]
    table = pd.concat(
        {stat: cells[stat].unstack(cols) for stat in CELL_COLUMNS},
        axis=1,
    )
    table["n_seeds"] = table["n_seeds"].fillna(0).astype(int)
    table.columns.names = ["stat", cols]
    return table


def _half_width(values: np.ndarray, alpha: float) -> float:
    values = values[~np.isnan(values)]
    if len(values) < 2:
        return math.nan
    return float(stats.t.ppf(1 - alpha / 2, len(values) - 1) * stats.sem(values))


def _cell(mean: float, half: float, n: int, digits: int, pm: str) -> str:
    if n == 0 or math.isnan(mean):
        return "-"
    text = f"{mean:.{digits}f}"
    if not math.isnan(half):
        text += f" {pm} {half:.{digits}f}"
    return f"{text} (n={n})"


def format_table(table: pd.DataFrame, fmt: str = "markdown", digits: int = 2, percent: bool = True) -> str:
    """Render an ``ablation_table``: cells like ``63.10 ± 2.00 (n=3)`` (± the half-width of the 95%
    interval over n seeds) in markdown and LaTeX, or CSV with one line per cell and the columns
    n_seeds, mean, std, ci_low, ci_high; ``percent`` shows fractions as %."""
    _require("format", fmt, FORMATS)
    rows, cols = table.index.name, table.columns.names[1]
    scale = 100.0 if percent else 1.0
    col_values = list(table["mean"].columns)
    values = {stat: table[stat].to_numpy(float) * scale for stat in ("mean", "std", "ci_low", "ci_high")}
    count = table["n_seeds"].to_numpy(int)
    if fmt == "csv":
        lines = [
            (r, c, count[i, j], *(values[stat][i, j] for stat in ("mean", "std", "ci_low", "ci_high")))
            for i, r in enumerate(table.index)
            for j, c in enumerate(col_values)
        ]
        frame = pd.DataFrame(lines, columns=[rows, cols, *CELL_COLUMNS])
        return frame.to_csv(index=False, float_format=f"%.{digits}f")
    pm = "±" if fmt == "markdown" else r"$\pm$"
    half = values["ci_high"] - values["mean"]
    header = [rows] + [f"{cols}={value_label(c)}" for c in col_values]
    body = []
    for i, r in enumerate(table.index):
        cells = zip(values["mean"][i], half[i], count[i], strict=True)
        body.append([value_label(r)] + [_cell(m, h, n, digits, pm) for m, h, n in cells])
    footer = "mean ± half-width of the 95% Student-t interval over n seeds" + (
        " (values in %)" if percent else ""
    )
    if fmt == "markdown":
        lines = [header, ["---"] * len(header), *body]
        return "\n".join("| " + " | ".join(line) + " |" for line in lines) + f"\n\n{footer}.\n"
    escaped = [[_latex_escape(h) for h in header]] + [[_latex_escape(line[0]), *line[1:]] for line in body]
    rendered = [" & ".join(line) + r" \\" for line in escaped]
    note = _latex_escape(footer).replace("±", r"$\pm$")
    return "\n".join(
        [
            r"\begin{tabular}{l" + "c" * len(col_values) + "}",
            r"\toprule",
            rendered[0],
            r"\midrule",
            *rendered[1:],
            r"\bottomrule",
            rf"\multicolumn{{{len(header)}}}{{l}}{{\footnotesize {note}.}} \\",
            r"\end{tabular}",
            "",
        ]
    )
