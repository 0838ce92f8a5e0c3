"""Live progress of a sweep on the terminal: each session report, run counts, the leading run so far.

The leading run is one run's objective, not a verdict: the verdict (with every configuration's seeds,
intervals and ties) is printed when the sweep ends and by ``ckpd-sweep status``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape

from .objective import Objective
from .results import STATUSES
from .trainable import BOOKKEEPING

if TYPE_CHECKING:
    import pandas as pd


class ProgressPrinter:
    """Receives the results callback's events and prints one line each (picklable, console made lazily)."""

    def __init__(
        self, objective: Objective, mode: str, quiet: bool = False, total: int | None = None
    ) -> None:
        self.objective, self.mode, self.quiet, self.total = objective, mode, quiet, total
        self.started: set[str] = set()
        self.counts = dict.fromkeys(STATUSES, 0)
        self.history: dict[str, list[dict[str, Any]]] = {}
        self.leader: tuple[float, str] | None = None
        self._console: Console | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_console": None}

    @property
    def console(self) -> Console:
        if self._console is None:
            self._console = Console(highlight=False)
        return self._console

    def note(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message, soft_wrap=True)

    def warn(self, message: str) -> None:
        """Printed even when quiet: something the user may have to act on."""
        self.console.print(f"[yellow]warning:[/yellow] {escape(message)}", soft_wrap=True)

    def resume_from(self, trials: pd.DataFrame, sessions: pd.DataFrame) -> None:
        """Count what earlier drivers of a resumed sweep saw: runs started and finished by status."""
        self.started.update(sessions.trial_id.astype(str))
        for status in self.counts:
            self.counts[status] = int((trials.status == status).sum()) if len(trials) else 0

    def __call__(self, event: str, payload: dict[str, Any]) -> None:
        if event == "waiting":
            self.warn(payload["message"])
            return
        trial_id = payload["trial_id"]
        label = _label(payload["config"])
        if event == "session":
            self.started.add(trial_id)
            self.history.setdefault(trial_id, []).append(payload)
            value = payload.get(self.objective.metric)
            self.note(
                f"  {trial_id} {label}: session {payload['session']} {self.objective.metric} {_fmt(value)}"
            )
            return
        self.counts[event] += 1
        detail = ""
        rows = self.history.pop(trial_id, [])
        if event == "completed" and rows:
            value = self.objective.of_rows(rows)
            ahead = self.leader is None or (
                value > self.leader[0] if self.mode == "max" else value < self.leader[0]
            )
            if not math.isnan(value) and ahead:
                self.leader = (value, label)
        elif event == "pruned":
            detail = f" at session {payload.get('pruned_at_session')}"
        elif event == "failed":
            detail = f": {payload.get('error')}"
        finished = sum(self.counts.values())
        running = max(0, len(self.started) - finished)
        leader = (
            f"{self.leader[1]} ({self.objective.label} {_fmt(self.leader[0])})" if self.leader else "none yet"
        )
        of = f" of at most {self.total}" if self.total else ""
        counts = " | ".join(f"{status} {n}" for status, n in self.counts.items())
        head = f"[bold]{trial_id} {event}{detail}[/bold]"
        self.note(f"{head}  running {running} | {counts}{of}  leading run: {leader}")


def _label(config: dict[str, Any]) -> str:
    return (
        " ".join(f"{k}={v}" for k, v in config.items() if k not in BOOKKEEPING)
        + f" seed={config.get('seed')}"
    )


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else str(value)
