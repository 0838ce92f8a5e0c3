"""FSCIL metrics: their names (the one list every table and spec check uses), per-session accuracy
breakdowns and the per-trial summary. Pure numpy, so readers of results need no torch."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

SESSION_METRICS = ("acc_all", "acc_base", "acc_novel", "acc_new")
TRIAL_METRICS = ("avg_acc", "last_acc", "pd", "hm")
VALIDATION_PREFIX = "val_"  # the same metric measured on the validation split


def with_validation(names: Sequence[str]) -> tuple[str, ...]:
    """``names`` followed by their validation twins."""
    return (*names, *(VALIDATION_PREFIX + name for name in names))


def _accuracy(correct: np.ndarray, mask: np.ndarray) -> float:
    return float(correct[mask].mean()) if mask.any() else math.nan


def accuracy_breakdown(
    predictions,
    labels,
    base_classes: Sequence[int],
    new_classes: Sequence[int],
    prefix: str = "",
) -> dict[str, float]:
    """Accuracy on all seen classes, base classes, all novel classes so far and the newest classes.

    ``predictions`` and ``labels`` are CPU tensors or arrays of class indices. ``acc_novel`` is NaN in the
    base session (no novel class yet); there ``acc_new`` equals ``acc_base``.
    """
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    correct = predictions == labels
    is_base = np.isin(labels, list(base_classes))
    is_new = np.isin(labels, list(new_classes))
    return {
        f"{prefix}acc_all": _accuracy(correct, np.ones_like(is_base)),
        f"{prefix}acc_base": _accuracy(correct, is_base),
        f"{prefix}acc_novel": _accuracy(correct, ~is_base),
        f"{prefix}acc_new": _accuracy(correct, is_new),
    }


def harmonic_mean(a: float, b: float) -> float:
    if math.isnan(a) or math.isnan(b):
        return math.nan
    return 0.0 if a + b == 0 else 2 * a * b / (a + b)


def trial_summary(rows: Sequence[dict]) -> dict[str, float]:
    """``avg_acc`` (mean over all sessions incl. base), ``last_acc``, ``pd`` (first - last), ``hm``
    (harmonic mean of base and novel accuracy in the last session); the same with ``val_`` prefix."""
    summary: dict[str, float] = {}
    for prefix in ("", VALIDATION_PREFIX):
        accs = [row[f"{prefix}acc_all"] for row in rows]
        last = rows[-1]
        summary[f"{prefix}avg_acc"] = float(sum(accs) / len(accs))
        summary[f"{prefix}last_acc"] = float(accs[-1])
        summary[f"{prefix}pd"] = float(accs[0] - accs[-1])
        summary[f"{prefix}hm"] = harmonic_mean(last[f"{prefix}acc_base"], last[f"{prefix}acc_novel"])
    return summary
