"""Tables: statistics over seeds per cell and per configuration; markdown, LaTeX, CSV."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from sweeps.objective import Objective
from sweeps.statistics import STAT_COLUMNS, compare
from sweeps.tables import ablation_table, format_comparison, format_table

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


def per_seed(rank: int, session: int) -> np.ndarray:
    """Each seed's accuracy at ``session`` for ``rank``, averaged over the modes: one replicate per seed."""
    return np.mean([ACC[rank][m][:, session] for m in MODES], axis=0)


def interval(values: np.ndarray) -> tuple[float, float]:
    half = stats.t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / np.sqrt(len(values))
    return values.mean() - half, values.mean() + half


def test_session_table_gives_n_seeds_mean_std_and_interval_over_seeds():
    table = ablation_table(*frames(), rows="rank")
    assert list(table.index) == list(RANKS) and list(table["mean"].columns) == list(SESSIONS)
    for rank in RANKS:
        for session in SESSIONS:
            values = per_seed(rank, session)
            assert table.loc[rank, ("mean", session)] == pytest.approx(np.mean(values))
            assert table.loc[rank, ("std", session)] == pytest.approx(np.std(values, ddof=1))
            low, high = interval(values)
            assert table.loc[rank, ("ci_low", session)] == pytest.approx(low)
            assert table.loc[rank, ("ci_high", session)] == pytest.approx(high)
            assert table.loc[rank, ("n_seeds", session)] == 3  # 6 runs, 3 seeds; the pruned run left out


def test_pruned_trials_count_only_when_asked():
    table = ablation_table(*frames(), rows="rank", statuses=("completed", "pruned"))
    seeds = [np.mean([ACC[4][m][s, 1] for m in MODES] + ([PRUNED_ACC[1]] if s == 0 else [])) for s in SEEDS]
    assert table.loc[4, ("mean", 1)] == pytest.approx(np.mean(seeds))
    assert table.loc[4, ("n_seeds", 1)] == 3 and table.loc[4, ("n_seeds", 2)] == 3
    alone = ablation_table(*frames(), rows="rank", statuses=("pruned",))
    assert list(alone.index) == [4] and list(alone["n_seeds"].loc[4]) == [1, 1]
    assert (
        format_table(alone).splitlines()[2] == "| 4 | 5.00 (n=1) | 2.00 (n=1) |"
    )  # no interval from one seed


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
                assert table.loc[rank, ("n_seeds", mode)] == 3
            assert averaged.loc[mode, ("mean", rank)] == pytest.approx(np.mean(ACC[rank][mode].mean(axis=1)))


def test_copies_of_a_run_are_not_replicates():
    sessions, trials = frames()
    copy_s = sessions[sessions.trial_id == "r8-ckpd"].assign(trial_id="r8-ckpd-again")
    copy_t = trials[trials.trial_id == "r8-ckpd"].assign(trial_id="r8-ckpd-again")
    table = ablation_table(
        pd.concat([sessions, copy_s]), pd.concat([trials, copy_t]), rows="peft_mode", cols="rank"
    )
    assert table.loc["ckpd", ("n_seeds", 8)] == 3
    assert table.loc["ckpd", ("mean", 8)] == pytest.approx(ACC[8]["ckpd"][:, -1].mean())


def known_cell(rank: int = 8, session: int = 1) -> tuple[float, float]:
    values = per_seed(rank, session) * 100
    low, high = interval(values)
    return values.mean(), high - values.mean()


def test_markdown_rendering():
    text = format_table(ablation_table(*frames(), rows="rank"), "markdown", digits=2)
    lines = text.splitlines()
    assert lines[:2] == ["| rank | session=0 | session=1 | session=2 |", "| --- | --- | --- | --- |"]
    mean, half = known_cell()
    assert lines[3].split(" | ")[2] == f"{mean:.2f} ± {half:.2f} (n=3)"
    assert lines[4:] == ["", "mean ± half-width of the 95% Student-t interval over n seeds (values in %)."]


def test_latex_rendering():
    text = format_table(ablation_table(*frames(), rows="rank"), "latex", digits=1)
    mean, half = known_cell()
    row = next(line for line in text.splitlines() if line.startswith("8 & "))
    assert row.split(" & ")[2] == f"{mean:.1f} $\\pm$ {half:.1f} (n=3)"
    assert text.startswith("\\begin{tabular}{lccc}\n\\toprule\nrank & session=0 & session=1 & session=2 \\\\")
    assert "\\midrule" in text and text.rstrip().endswith("\\end{tabular}")
    assert "95\\% Student-t interval" in text
    by_mode = format_table(ablation_table(*frames(), rows="peft_mode"), "latex")
    assert "peft\\_mode & session=0" in by_mode


def test_csv_rendering():
    text = format_table(ablation_table(*frames(), rows="rank"), "csv", digits=3)
    frame = pd.read_csv(io.StringIO(text))
    assert list(frame.columns) == ["rank", "session", "n_seeds", "mean", "std", "ci_low", "ci_high"]
    assert len(frame) == 6
    cell = frame[(frame["rank"] == 8) & (frame["session"] == 1)].iloc[0]
    mean, half = known_cell()
    assert (cell["mean"], cell["ci_high"], cell["n_seeds"]) == (round(mean, 3), round(mean + half, 3), 3)
    fractions = format_table(ablation_table(*frames(), rows="rank"), "csv", digits=4, percent=False)
    fractions = pd.read_csv(io.StringIO(fractions))
    assert fractions.loc[0, "mean"] == round(np.mean(per_seed(4, 0)), 4)


def comparison():
    """rank 4 (all seeds better by 0.1) against rank 8 (one of two tied) against rank 16, 3 seeds."""
    rows = []
    for rank, shift in ((4, 0.10), (8, 0.0), (16, 0.002)):
        for seed, noise in enumerate((0.0, 0.03, -0.02)):
            rows.append(
                {
                    "rank": rank,
                    "seed": seed,
                    "value": 0.6 + shift + noise + 0.001 * seed * rank,
                    "compute_s": 1.0,
                }
            )
    return compare(pd.DataFrame(rows), ["rank"], Objective())


def test_comparison_csv_has_exactly_the_statistics_columns():
    frame = pd.read_csv(io.StringIO(format_comparison(comparison(), "csv", digits=3)))
    assert list(frame.columns) == ["rank", *STAT_COLUMNS]
    assert frame["rank"].tolist() == [4, 16, 8] and frame.n_seeds.tolist() == [3, 3, 3]
    assert frame.tied_with_best.tolist() == [True, False, False]
    assert frame.p_adj.isna().tolist() == [True, False, False] and (frame.p_adj.iloc[1:] < 0.05).all()
    assert frame.p_adj.iloc[1] == pytest.approx(comparison().table.p_adj.iloc[1])  # not rounded to digits
    assert frame["mean"].iloc[0] == pytest.approx(100 * (0.7 + 0.01 / 3 + 0.004), abs=1e-3)


def test_comparison_markdown_and_latex_mark_the_best_and_the_ties():
    tied = comparison()
    tied.table.loc[1, "tied_with_best"] = True  # as if rank 16 were tied
    markdown = format_comparison(tied, "markdown").splitlines()
    assert markdown[0] == "| rank | " + " | ".join(STAT_COLUMNS) + " |"
    assert markdown[2].startswith("| 4 | 3 | **") and markdown[2].endswith("| 0.00 | - | best |")
    assert markdown[3].endswith("| yes |") and markdown[4].endswith("| no |")
    assert "paired difference to the best" in markdown[-1] and "Holm" in markdown[-1]
    latex = format_comparison(tied, "latex")
    rows = [line for line in latex.splitlines() if line[:2] in ("4 ", "16", "8 ")]
    assert "\\textbf{" in rows[0].split(" & ")[2]
    assert rows[1].split(" & ")[2].endswith("$^\\dagger$") and "dagger" not in rows[2]
    assert "\\textbf{bold}: best; $^\\dagger$: tied with it." in latex


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
