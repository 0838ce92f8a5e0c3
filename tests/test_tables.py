"""Ablation tables: mean ± std over seeds per cell, pruned trials left out, markdown/LaTeX/CSV output."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from sweeps.tables import ablation_table, format_table

RANKS, MODES, SEEDS, SESSIONS = (4, 8), ("ckpd", "lora"), (0, 1, 2), (0, 1, 2)
RNG = np.random.default_rng(0)
# ACC[rank][mode][seed, session]: test accuracy of each completed run
ACC = {r: {m: RNG.uniform(0.3, 0.9, size=(len(SEEDS), len(SESSIONS))) for m in MODES} for r in RANKS}
PRUNED_ACC = [0.05, 0.02]  # a rank-4 trial pruned at session 1; must never reach the default table


def frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    sessions, trials = [], []
    for rank in RANKS:
        for mode in MODES:
            trial_id = f"r{rank}-{mode}"
            for seed in SEEDS:
                accs = ACC[rank][mode][seed]
                key = dict(trial_id=trial_id, seed=seed, rank=rank, peft_mode=mode)
                for session in SESSIONS:
                    sessions.append(dict(key, session=session, acc_all=accs[session]))
                trials.append(
                    dict(
                        key,
                        status="completed",
                        pruned_at_session=np.nan,
                        last_acc=accs[-1],
                        avg_acc=accs.mean(),
                    )
                )
    for session, acc in enumerate(PRUNED_ACC):
        sessions.append(
            dict(trial_id="r4-pruned", seed=0, session=session, rank=4, peft_mode="ckpd", acc_all=acc)
        )
    trials.append(
        dict(
            trial_id="r4-pruned",
            seed=0,
            rank=4,
            peft_mode="ckpd",
            status="pruned",
            pruned_at_session=1.0,
            last_acc=np.nan,
            avg_acc=np.nan,
        )
    )
    return pd.DataFrame(sessions), pd.DataFrame(trials)


def runs(rank: int, session: int) -> np.ndarray:
    """Every completed run's accuracy at ``session`` for ``rank``: both modes, all seeds."""
    return np.concatenate([ACC[rank][m][:, session] for m in MODES])


def test_session_table_is_mean_std_and_count_over_completed_runs():
    table = ablation_table(*frames(), rows="rank")
    assert list(table.index) == list(RANKS) and list(table["mean"].columns) == list(SESSIONS)
    for rank in RANKS:
        for session in SESSIONS:
            values = runs(rank, session)
            assert table.loc[rank, ("mean", session)] == pytest.approx(np.mean(values))
            assert table.loc[rank, ("std", session)] == pytest.approx(np.std(values, ddof=1))
            assert table.loc[rank, ("n", session)] == 6  # the pruned trial is left out


def test_pruned_trials_count_only_when_asked():
    table = ablation_table(*frames(), rows="rank", statuses=("completed", "pruned"))
    with_pruned = np.append(runs(4, 1), PRUNED_ACC[1])
    assert table.loc[4, ("mean", 1)] == pytest.approx(np.mean(with_pruned))
    assert table.loc[4, ("n", 1)] == 7 and table.loc[4, ("n", 2)] == 6
    alone = ablation_table(*frames(), rows="rank", statuses=("pruned",))
    assert list(alone.index) == [4] and list(alone["n"].loc[4]) == [1, 1]
    assert format_table(alone).splitlines()[2] == "| 4 | 5.00 (n=1) | 2.00 (n=1) |"  # no std of one run


def test_parameter_columns_use_trial_summaries_or_the_last_session():
    sessions, trials = frames()
    by_summary = ablation_table(sessions, trials, rows="rank", cols="peft_mode", metric="last_acc")
    by_session = ablation_table(sessions, trials, rows="rank", cols="peft_mode", metric="acc_all")
    averaged = ablation_table(sessions, trials, rows="peft_mode", cols="rank", metric="avg_acc")
    for rank in RANKS:
        for mode in MODES:
            last = ACC[rank][mode][:, -1]
            for table in (by_summary, by_session):
                assert table.loc[rank, ("mean", mode)] == pytest.approx(np.mean(last))
                assert table.loc[rank, ("std", mode)] == pytest.approx(np.std(last, ddof=1))
                assert table.loc[rank, ("n", mode)] == 3
            assert averaged.loc[mode, ("mean", rank)] == pytest.approx(np.mean(ACC[rank][mode].mean(axis=1)))


def known_cell(rank: int = 8, session: int = 1) -> tuple[float, float]:
    values = runs(rank, session) * 100
    return np.mean(values), np.std(values, ddof=1)


def test_markdown_rendering():
    text = format_table(ablation_table(*frames(), rows="rank"), "markdown", digits=2)
    lines = text.splitlines()
    assert lines[:2] == ["| rank | session=0 | session=1 | session=2 |", "| --- | --- | --- | --- |"]
    mean, std = known_cell()
    assert lines[3].split(" | ")[2] == f"{mean:.2f} ± {std:.2f} (n=6)"
    assert len(lines) == 4


def test_latex_rendering():
    text = format_table(ablation_table(*frames(), rows="rank"), "latex", digits=1)
    mean, std = known_cell()
    row = next(line for line in text.splitlines() if line.startswith("8 & "))
    assert row.split(" & ")[2] == f"{mean:.1f} $\\pm$ {std:.1f} (n=6)"
    assert text.startswith("\\begin{tabular}{lccc}\n\\toprule\nrank & session=0 & session=1 & session=2 \\\\")
    assert "\\midrule" in text and text.rstrip().endswith("\\end{tabular}")
    by_mode = format_table(ablation_table(*frames(), rows="peft_mode"), "latex")
    assert "peft\\_mode & session=0" in by_mode


def test_csv_rendering():
    text = format_table(ablation_table(*frames(), rows="rank"), "csv", digits=3)
    frame = pd.read_csv(io.StringIO(text))
    assert list(frame.columns) == ["rank", "session", "mean", "std", "n"] and len(frame) == 6
    cell = frame[(frame["rank"] == 8) & (frame["session"] == 1)].iloc[0]
    mean, std = known_cell()
    assert (cell["mean"], cell["std"], cell["n"]) == (round(mean, 3), round(std, 3), 6)
    fractions = format_table(ablation_table(*frames(), rows="rank"), "csv", digits=4, percent=False)
    fractions = pd.read_csv(io.StringIO(fractions))
    assert fractions.loc[0, "mean"] == round(np.mean(runs(4, 0)), 4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(rows="nope"), "rows parameter 'nope'; choose one of: rank, peft_mode"),
        (dict(rows="rank", cols="nope"), "cols 'nope'; choose one of: session, peft_mode"),
        (dict(rows="rank", cols="rank"), "cols 'rank'"),
        (dict(rows="rank", metric="nope"), "metric 'nope'; choose one of: n_classes, acc_all"),
        (dict(rows="rank", metric="last_acc"), "metric 'last_acc'"),  # a trial summary has no sessions
    ],
)
def test_unknown_columns_are_refused_with_the_allowed_names(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ablation_table(*frames(), **kwargs)


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="markdown, latex, csv"):
        format_table(ablation_table(*frames(), rows="rank"), "html")
