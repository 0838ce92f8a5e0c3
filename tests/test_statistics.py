"""Conclusions: intervals, paired tests, Holm, ties and the verdict, checked by hand and by simulation."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower

from sweeps.objective import Objective
from sweeps.statistics import STAT_COLUMNS, compare, holm, paired_t_power, run_values, verdict

AVG = Objective("avg", "val_acc_all")
RNG = np.random.default_rng(7)
# value[rank][seed]: one value per seed, with a seed effect shared by all ranks (as a shared base session)
SEED_EFFECT = RNG.normal(0, 0.01, 5)
TRUE = {2: 0.60, 4: 0.70, 8: 0.71, 16: 0.715}
VALUES = {r: mu + SEED_EFFECT + RNG.normal(0, 0.004, 5) for r, mu in TRUE.items()}


def runs_frame(values=VALUES, seconds=12.0) -> pd.DataFrame:
    rows = [
        {"rank": r, "seed": s, "value": v, "compute_s": seconds}
        for r, vs in values.items()
        for s, v in enumerate(vs)
    ]
    return pd.DataFrame(rows)


def test_each_configuration_gets_n_mean_std_and_a_t_interval():
    table = compare(runs_frame(), ["rank"], AVG).table.set_index("rank")
    for rank, values in VALUES.items():
        row = table.loc[rank]
        sem = np.std(values, ddof=1) / math.sqrt(5)
        half = stats.t.ppf(0.975, 4) * sem
        assert row.n_seeds == 5 and row["mean"] == pytest.approx(values.mean())
        assert row["std"] == pytest.approx(np.std(values, ddof=1))
        assert (row.ci_low, row.ci_high) == pytest.approx((values.mean() - half, values.mean() + half))


def test_the_best_is_compared_seed_by_seed_with_holm_over_all_pairs():
    comparison = compare(runs_frame(), ["rank"], AVG)
    table = comparison.table
    assert list(table.columns[:9]) == ["rank", *STAT_COLUMNS]
    assert table["rank"].tolist() == [16, 8, 4, 2]  # best first, then by mean
    ranks = list(TRUE)
    pairs = [(a, b) for i, a in enumerate(ranks) for b in ranks[i + 1 :]]
    raw = [stats.ttest_rel(VALUES[a], VALUES[b]).pvalue for a, b in pairs]
    # Holm by hand: sort, multiply the i-th smallest by (m - i), running maximum, cap at 1
    order = np.argsort(raw)
    adjusted = np.minimum(np.maximum.accumulate(np.array(raw)[order] * np.arange(len(raw), 0, -1)), 1)
    by_pair = {pairs[i]: adjusted[k] for k, i in enumerate(order)}
    assert comparison.n_pairs == 6
    for rank in (8, 4, 2):
        row = table.set_index("rank").loc[rank]
        diff = VALUES[rank] - VALUES[16]
        assert row.diff_vs_best == pytest.approx(diff.mean())
        low, high = stats.ttest_rel(VALUES[rank], VALUES[16]).confidence_interval()
        assert (row.diff_ci_low, row.diff_ci_high) == pytest.approx((low, high))
        pair = (rank, 16) if ranks.index(rank) < ranks.index(16) else (16, rank)
        assert row.p_adj == pytest.approx(by_pair[pair])
        assert row.tied_with_best == (by_pair[pair] >= 0.05)
    best = table.iloc[0]
    assert best.tied_with_best and math.isnan(best.p_adj) and best.diff_vs_best == 0
    assert table.set_index("rank").loc[2, "tied_with_best"] == False  # noqa: E712 - 11 points behind


def test_holm_matches_statsmodels():
    for p in ([0.01, 0.04, 0.03], [0.2, 0.001, 0.5, 0.04, 0.04], [0.9]):
        assert holm(p) == pytest.approx(multipletests(p, method="holm")[1])


def test_a_baseline_replaces_the_best_and_holm_covers_its_comparisons_only():
    comparison = compare(runs_frame(), ["rank"], AVG, baseline={"rank": "4"})
    table = comparison.table
    assert table["rank"].iloc[0] == 4 and comparison.reference == "baseline" and comparison.n_pairs == 3
    raw = {r: stats.ttest_rel(VALUES[r], VALUES[4]).pvalue for r in (2, 8, 16)}
    expected = dict(zip(raw, multipletests(list(raw.values()), method="holm")[1], strict=True))
    for rank, p in expected.items():
        assert table.set_index("rank").loc[rank, "p_adj"] == pytest.approx(p)
    with pytest.raises(ValueError, match="names no completed configuration"):
        compare(runs_frame(), ["rank"], AVG, baseline={"rank": "64"})
    with pytest.raises(ValueError, match="not a swept parameter; choose from rank"):
        compare(runs_frame(), ["rank"], AVG, baseline={"lr": "0.1"})


def test_a_baseline_is_named_as_a_user_types_it():
    rows = [
        {
            "continuous": flag,
            "top_n": None,
            "seed": seed,
            "value": 0.5 + 0.1 * flag + 0.01 * seed,
            "compute_s": 1.0,
        }
        for flag in (True, False)
        for seed in range(3)
    ]
    table = compare(
        pd.DataFrame(rows), ["continuous", "top_n"], AVG, baseline={"continuous": "false", "top_n": "null"}
    )
    assert table.table["continuous"].tolist() == [False, True] and table.reference == "baseline"
    assert table.table["diff_vs_best"].iloc[1] == pytest.approx(0.1)


def test_one_seed_gives_no_interval_no_test_and_no_claim():
    comparison = compare(runs_frame({r: v[:1] for r, v in VALUES.items()}), ["rank"], AVG)
    table = comparison.table
    assert (table.n_seeds == 1).all() and table.tied_with_best.all()
    assert table[["std", "ci_low", "ci_high", "p_adj"]].isna().all().all()
    lines = verdict(runs_frame(), comparison).lines("search_spaces/rank.yaml")
    text = "\n".join(lines)
    assert "no difference can be claimed" in text and "seeds: [0, 1, 2]" in text
    assert "search_spaces/rank.yaml" in text and "best" not in text


def test_the_verdict_names_the_best_its_ties_and_the_seeds_to_separate_them():
    runs = runs_frame(seconds=12.0)
    result = verdict(runs, compare(runs, ["rank"], AVG))
    text = "\n".join(result.lines())
    assert "best: rank=16" in text
    tied = result.tied["rank"].tolist()
    assert tied and 2 not in tied and "tied with it: rank=" + str(tied[0]) in text
    worse = next(line for line in text.splitlines() if line.startswith("  significantly different: "))
    assert "rank=2 (diff" in worse and "rank=8" not in worse
    needed = result.seeds_to_separate()
    effect = abs((VALUES[16] - VALUES[8]).mean()) / np.std(VALUES[16] - VALUES[8], ddof=1)
    alpha = 0.05 / 6  # Holm's strictest level over the 6 pairs
    assert paired_t_power(effect, needed, alpha) >= 0.8 > paired_t_power(effect, needed - 1, alpha)
    more = needed - 5
    assert f"about {needed} seeds, {more} more" in text
    assert f"2 x {more} runs" in text and "at 12 s per run" in text


def test_power_from_the_noncentral_t_matches_statsmodels():
    for effect, n, alpha in ((0.5, 10, 0.05), (1.0, 5, 0.01), (1 / math.sqrt(2), 10, 0.05)):
        assert paired_t_power(effect, n, alpha) == pytest.approx(
            TTestPower().power(effect, n, alpha), abs=1e-6
        )


def test_copies_of_a_run_count_once_and_pruned_runs_not_at_all():
    sessions, trials = [], []
    for trial_id, rank, seed, accs, status in (
        ("a", 4, 0, [0.9, 0.7], "completed"),
        ("a-copy", 4, 0, [0.9, 0.7], "completed"),  # the same run again: not a replicate
        ("b", 4, 1, [0.8, 0.6], "completed"),
        ("c", 8, 0, [0.9, 0.2], "pruned"),
    ):
        for session, acc in enumerate(accs):
            sessions.append(dict(trial_id=trial_id, seed=seed, session=session, rank=rank, val_acc_all=acc))
        trials.append(dict(trial_id=trial_id, seed=seed, rank=rank, status=status, compute_s=3.0))
    runs = run_values(pd.DataFrame(sessions), pd.DataFrame(trials), AVG)
    assert runs[["rank", "seed"]].values.tolist() == [[4, 0], [4, 1]]
    assert runs["value"].tolist() == pytest.approx([0.8, 0.7])
    row = compare(runs, ["rank"], AVG).table.iloc[0]
    assert row.n_seeds == 2 and row["mean"] == pytest.approx(0.75)


def _simulate(k: int, seeds: int, tables: int, effect: float, shared: float, seed: int) -> float:
    """Fraction of simulated tables that call a configuration significantly different from the best.

    Each configuration's value over seeds has standard deviation 1 (the seed-to-seed noise): a seed
    effect shared by all configurations (variance ``shared``, as a shared base session) plus noise of
    its own; configuration 0 is ``effect`` standard deviations better than the others.
    """
    rng = np.random.default_rng(seed)
    flagged = 0
    for _ in range(tables):
        values = rng.normal(0, math.sqrt(shared), seeds) + rng.normal(0, math.sqrt(1 - shared), (k, seeds))
        values[0] += effect
        runs = runs_frame({c: values[c] for c in range(k)})
        flagged += int(not compare(runs, ["rank"], AVG).table["tied_with_best"].iloc[1:].all())
    return flagged / tables


@pytest.mark.slow
@pytest.mark.parametrize(("k", "tables"), [(2, 2000), (5, 1000)])
def test_identical_configurations_are_called_different_at_most_5_percent_of_the_time(k, tables):
    rate = _simulate(k, seeds=5, tables=tables, effect=0.0, shared=0.5, seed=k)
    slack = 3 * math.sqrt(0.05 * 0.95 / tables)
    print(f"A/A, {k} identical configurations, 5 seeds, {tables} tables: {rate:.2%} called different")
    assert rate <= 0.05 + slack


@pytest.mark.slow
@pytest.mark.parametrize("shared", [0.0, 0.5])
def test_power_at_one_seed_standard_deviation_with_10_seeds(shared):
    """The floor: the exact power of a paired t-test at this effect (noncentral t), less 3 standard
    errors of the simulation. A paired t-test is the most powerful unbiased test of normal paired
    differences, so no method can expect more; less would mean the tables lose power (pairing broken,
    a correction stricter than Holm over one comparison)."""
    tables = 2000
    power = _simulate(2, seeds=10, tables=tables, effect=1.0, shared=shared, seed=11)
    effect = 1.0 / math.sqrt(2 * (1 - shared))  # mean / std of the paired differences
    exact = paired_t_power(effect, 10, 0.05)
    floor = exact - 3 * math.sqrt(exact * (1 - exact) / tables)
    print(
        f"difference of 1 seed-std, 10 seeds, shared seed variance {shared}: power {power:.1%} "
        f"(paired t-test exactly {exact:.1%}, floor {floor:.1%})"
    )
    assert power >= floor
