"""The sweep's objective: full and partial values of avg, last and hm, and what the spec accepts."""

from __future__ import annotations

import math

import pytest

from sweeps.objective import Objective
from sweeps.spec import SpecError, parse_spec

HISTORY = {
    "val_acc_all": [0.9, 0.7, 0.6],
    "val_acc_base": [0.9, 0.8, 0.75],
    "val_acc_novel": [math.nan, 0.5, 0.3],
}


def prefix(history: dict, sessions: int) -> dict:
    return {column: values[:sessions] for column, values in history.items()}


def test_avg_is_the_mean_over_sessions_and_its_partial_the_mean_so_far():
    avg = Objective("avg", "val_acc_all")
    assert avg.value(HISTORY) == pytest.approx((0.9 + 0.7 + 0.6) / 3)
    assert [avg.partial(prefix(HISTORY, t)) for t in (1, 2, 3)] == pytest.approx([0.9, 0.8, 2.2 / 3])
    assert avg.has_partial and avg.columns == ("val_acc_all",)


def test_last_is_the_final_session_and_the_pruner_sees_the_current_one():
    last = Objective("last", "val_acc_all")
    assert last.value(HISTORY) == pytest.approx(0.6)
    assert [last.partial(prefix(HISTORY, t)) for t in (1, 2)] == pytest.approx([0.9, 0.7])
    assert not last.has_partial


def test_hm_is_the_harmonic_mean_of_base_and_novel_accuracy_at_the_end():
    hm = Objective("hm", "val_acc_all")
    assert hm.columns == ("val_acc_base", "val_acc_novel")
    assert hm.value(HISTORY) == pytest.approx(2 * 0.75 * 0.3 / (0.75 + 0.3))
    assert math.isnan(hm.partial(prefix(HISTORY, 1)))  # the base session has no novel classes
    assert Objective("hm", "acc_all").columns == ("acc_base", "acc_novel")
    rows = [
        {"val_acc_base": b, "val_acc_novel": n}
        for b, n in zip(HISTORY["val_acc_base"], HISTORY["val_acc_novel"], strict=True)
    ]
    assert hm.of_rows(rows) == pytest.approx(hm.value(HISTORY))


def test_the_spec_names_the_objective_once_and_old_specs_get_avg():
    assert parse_spec({"name": "old", "metric": "val_acc_all"}).objective == Objective("avg", "val_acc_all")
    spec = parse_spec({"name": "s", "metric": "acc_all", "objective": "hm"})
    assert spec.objective == Objective("hm", "acc_all")
    assert parse_spec(spec.to_dict()).objective == spec.objective


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"objective": "mean"}, "objective: 'mean' is unknown; choose avg"),
        ({"objective": "hm", "metric": "val_acc_novel"}, "objective: objective hm is the harmonic mean"),
    ],
)
def test_bad_objectives_name_the_key(raw, message):
    with pytest.raises(SpecError, match=message):
        parse_spec({"name": "bad", **raw})
