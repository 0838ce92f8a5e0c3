"""FSCIL metrics: per-session accuracy breakdowns and the per-trial summary."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

SESSION_METRICS = ("acc_all", "acc_base", "acc_novel", "acc_new")
TRIAL_METRICS = ("avg_acc", "last_acc", "pd", "hm")


def _accuracy(correct: torch.Tensor, mask: torch.Tensor) -> float:
    return float(correct[mask].float().mean()) if mask.any() else math.nan


def accuracy_breakdown(
    predictions: torch.Tensor,
    labels: torch.Tensor,
    base_classes: Sequence[int],
    new_classes: Sequence[int],
    prefix: str = "",
) -> dict[str, float]:
    """Accuracy on all seen classes, base classes, all novel classes so far and the newest classes.

    ``acc_novel`` is NaN in the base session (no novel class yet); there ``acc_new`` equals ``acc_base``.
    """
    correct = predictions.cpu() == labels.cpu()
    labels = labels.cpu()
    is_base = torch.isin(labels, torch.tensor(list(base_classes)))
    is_new = torch.isin(labels, torch.tensor(list(new_classes)))
    return {
        f"{prefix}acc_all": _accuracy(correct, torch.ones_like(is_base)),
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
    for prefix in ("", "val_"):
        accs = [row[f"{prefix}acc_all"] for row in rows]
        last = rows[-1]
        summary[f"{prefix}avg_acc"] = float(sum(accs) / len(accs))
        summary[f"{prefix}last_acc"] = float(accs[-1])
        summary[f"{prefix}pd"] = float(accs[0] - accs[-1])
        summary[f"{prefix}hm"] = harmonic_mean(last[f"{prefix}acc_base"], last[f"{prefix}acc_novel"])
    return summary
