"""Session accuracy breakdown and per-trial summary."""

from __future__ import annotations

import math

import pytest
import torch

from ckpd_core import accuracy_breakdown, trial_summary


def test_breakdown_counts_each_group():
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])  # base {0,1}, earlier novel {2}, newest {3}
    preds = torch.tensor([0, 1, 1, 1, 2, 0, 0, 0])
    out = accuracy_breakdown(preds, labels, base_classes=[0, 1], new_classes=[3], prefix="val_")
    assert out == {
        "val_acc_all": pytest.approx(4 / 8),
        "val_acc_base": pytest.approx(3 / 4),
        "val_acc_novel": pytest.approx(1 / 4),
        "val_acc_new": pytest.approx(0.0),
    }


def test_base_session_has_no_novel_accuracy():
    labels = torch.tensor([0, 1, 1])
    out = accuracy_breakdown(torch.tensor([0, 1, 0]), labels, base_classes=[0, 1], new_classes=[0, 1])
    assert math.isnan(out["acc_novel"])
    assert out["acc_new"] == out["acc_base"] == pytest.approx(2 / 3)


def test_trial_summary():
    rows = [
        {
            "acc_all": 0.9,
            "acc_base": 0.9,
            "acc_novel": math.nan,
            "val_acc_all": 0.8,
            "val_acc_base": 0.8,
            "val_acc_novel": math.nan,
        },
        {
            "acc_all": 0.7,
            "acc_base": 0.8,
            "acc_novel": 0.4,
            "val_acc_all": 0.6,
            "val_acc_base": 0.6,
            "val_acc_novel": 0.3,
        },
    ]
    s = trial_summary(rows)
    assert s["avg_acc"] == pytest.approx(0.8)
    assert s["last_acc"] == pytest.approx(0.7)
    assert s["pd"] == pytest.approx(0.2)
    assert s["hm"] == pytest.approx(2 * 0.8 * 0.4 / 1.2)
    assert s["val_avg_acc"] == pytest.approx(0.7)
    assert s["val_pd"] == pytest.approx(0.2)
    assert s["val_hm"] == pytest.approx(2 * 0.6 * 0.3 / 0.9)
