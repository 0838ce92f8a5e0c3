"""Learning-rate schedules by name: the multiplier of a group's learning rate at each optimisation step.

- ``cosine`` (the embedded recipe): linear warm-up over ``warmup`` steps (chosen by the caller), then
  cosine decay to 1% at the last step.
- ``ckpd_base`` / ``ckpd_session`` (the official recipe): mmcv's CosineAnnealingCooldown with linear
  warm-up, as the official code configures it for the base session (warm-up 100 iterations from 0.1x,
  cosine to 0.1x, the last 10 iterations at 0.1 x 0.1x) and hard-codes it for the incremental sessions
  (warm-up 5 from 0.1x, cosine to 0.01x, the last 5 at 0.1 x 0.01x). The official base runner counts
  iterations from 0, the session runner from 1 (it increments before updating the rate).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass


def warmup_cosine(step: int, total: int, warmup: int) -> float:
    """Multiplier: linear warm-up over ``warmup`` steps, then cosine decay to 1% at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress))


@dataclass(frozen=True)
class CosineCooldown:
    """Cosine annealing from 1 to ``min_ratio`` over all but the last ``cooldown_iters`` iterations, held
    at ``min_ratio * cooldown_ratio`` for those; the first ``warmup_iters`` scaled up linearly from
    ``warmup_ratio``. Iterations are numbered from ``first_iteration``."""

    warmup_iters: int
    warmup_ratio: float
    min_ratio: float
    cooldown_iters: int
    cooldown_ratio: float
    first_iteration: int

    def __call__(self, step: int, total: int) -> float:
        it = step + self.first_iteration
        annealed = total - self.cooldown_iters
        if it > annealed:
            factor = self.min_ratio * self.cooldown_ratio
        else:
            factor = self.min_ratio + 0.5 * (1 - self.min_ratio) * (1 + math.cos(math.pi * it / annealed))
        if it < self.warmup_iters:
            factor *= 1 - (1 - it / self.warmup_iters) * (1 - self.warmup_ratio)
        return factor


SCHEDULES: dict[str, Callable[[int, int], float] | None] = {
    "cosine": None,  # needs the caller's warm-up length: see ``schedule``
    "ckpd_base": CosineCooldown(100, 0.1, 0.1, 10, 0.1, first_iteration=0),
    "ckpd_session": CosineCooldown(5, 0.1, 0.01, 5, 0.1, first_iteration=1),
}


def schedule(name: str, total: int, warmup: int) -> Callable[[int], float]:
    """The multiplier of schedule ``name`` as a function of the step (0 to ``total - 1``); ``warmup`` is
    the warm-up length of ``cosine`` (the official schedules fix their own)."""
    if name not in SCHEDULES:
        raise ValueError(f"schedule {name!r} is unknown; choose one of {', '.join(SCHEDULES)}")
    fixed = SCHEDULES[name]
    if fixed is None:
        return lambda step: warmup_cosine(step, total, warmup)
    return lambda step: fixed(step, total)
