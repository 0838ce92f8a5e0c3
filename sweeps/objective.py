"""The sweep's one objective: what the sampler learns, the pruner compares, and the ranking and tables use.

A run's per-session rows are reduced to one number by the spec's ``objective`` applied to its
``metric`` (accuracy per session):

- ``avg``: mean of the metric over all sessions, base included (FSCIL's "average accuracy"); its
  partial value after session t is the mean over sessions 0..t, an honest running estimate.
- ``last``: the metric at the final session. It has no partial value; the pruner compares the metric
  at the current session instead (the latest accuracy, which the final one can only fall from).
- ``hm``: harmonic mean of base and novel accuracy at the final session (for ``acc_all`` /
  ``val_acc_all``, with the same ``val_`` prefix); the pruner compares the current session's harmonic
  mean (there is none at the base session, which has no novel classes).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

OBJECTIVES = ("avg", "last", "hm")
DEFAULT_OBJECTIVE = "avg"
# Metrics whose base / novel breakdown exists, so ``hm`` applies to them.
HM_METRICS = ("acc_all", "val_acc_all")


@dataclass(frozen=True)
class Objective:
    """``kind`` (avg / last / hm) of ``metric``; ``columns`` are the session values it reads."""

    kind: str = DEFAULT_OBJECTIVE
    metric: str = "val_acc_all"

    def __post_init__(self) -> None:
        if self.kind not in OBJECTIVES:
            raise ValueError(f"objective {self.kind!r} is unknown; choose one of {', '.join(OBJECTIVES)}")
        if self.kind == "hm" and self.metric not in HM_METRICS:
            raise ValueError(
                f"objective hm is the harmonic mean of base and novel accuracy, which exists for metric "
                f"{' or '.join(HM_METRICS)}, not {self.metric}"
            )

    @property
    def prefix(self) -> str:
        return "val_" if self.metric.startswith("val_") else ""

    @property
    def columns(self) -> tuple[str, ...]:
        if self.kind == "hm":
            return (f"{self.prefix}acc_base", f"{self.prefix}acc_novel")
        return (self.metric,)

    @property
    def label(self) -> str:
        """Short name for headers and messages, e.g. ``avg val_acc_all``."""
        return f"{self.kind} {self.metric}" if self.kind != "hm" else f"hm {self.prefix}acc_base/novel"

    @property
    def has_partial(self) -> bool:
        """Whether the value after session t estimates the objective itself (only ``avg`` does)."""
        return self.kind == "avg"

    def partial(self, history: Mapping[str, Sequence[float]]) -> float:
        """The value the pruner compares after the last session in ``history`` (column -> values by
        session): the mean so far for ``avg``, the current session's value for ``last`` and ``hm``."""
        if self.kind == "avg":
            values = history[self.metric]
            return float(sum(values) / len(values)) if values else math.nan
        if self.kind == "last":
            values = history[self.metric]
            return float(values[-1]) if values else math.nan
        base, novel = (history[c] for c in self.columns)
        if not base or math.isnan(base[-1]) or math.isnan(novel[-1]):
            return math.nan  # the base session has no novel classes
        return statistics.harmonic_mean([float(base[-1]), float(novel[-1])])

    def value(self, history: Mapping[str, Sequence[float]]) -> float:
        """The objective of a run that finished every session (its partial value after the last)."""
        return self.partial(history)

    def of_rows(self, rows: Sequence[Mapping[str, float]]) -> float:
        """The objective of a run from its session rows, in session order."""
        return self.value({c: [float(row[c]) for row in rows] for c in self.columns})
