"""Live progress of a sweep on the terminal: each session report, trial counts, the best trial so far."""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console

from .trainable import BOOKKEEPING

_STATUSES = ("completed", "pruned", "failed")


class ProgressPrinter:
    """Receives the results callback's events and prints one line each (picklable, console made lazily)."""

    def __init__(self, metric: str, mode: str, quiet: bool = False, total: int | None = None) -> None:
        self.metric, self.mode, self.quiet, self.total = metric, mode, quiet, total
        self.started: set[str] = set()
        self.counts = dict.fromkeys(_STATUSES, 0)
        self.last_value: dict[str, float] = {}
        self.best: tuple[float, str] | None = None
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
            self.console.print(message)

    def __call__(self, event: str, payload: dict[str, Any]) -> None:
        trial_id = payload["trial_id"]
        label = _label(payload["config"])
        if event == "session":
            self.started.add(trial_id)
            value = payload.get(self.metric)
            self.last_value[trial_id] = value
            self.note(f"  {trial_id} {label}: session {payload['session']} {self.metric} {_fmt(value)}")
            return
        self.counts[event] += 1
        detail = ""
        if event == "completed":
            value = self.last_value.get(trial_id, math.nan)
            better = self.best is None or (
                value > self.best[0] if self.mode == "max" else value < self.best[0]
            )
            if not math.isnan(value) and better:
                self.best = (value, label)
        elif event == "pruned":
            detail = f" at session {payload.get('pruned_at_session')}"
        elif event == "failed":
            detail = f": {payload.get('error')}"
        finished = sum(self.counts.values())
        running = max(0, len(self.started) - finished)
        best = f"{self.best[1]} ({self.metric} {_fmt(self.best[0])})" if self.best else "none yet"
        of = f" of {self.total}" if self.total else ""
        counts = " | ".join(f"{status} {n}" for status, n in self.counts.items())
        head = f"[bold]{trial_id} {event}{detail}[/bold]"
        self.note(f"{head}  running {running} | {counts}{of}  best so far: {best}")


def _label(config: dict[str, Any]) -> str:
    return (
        " ".join(f"{k}={v}" for k, v in config.items() if k not in BOOKKEEPING)
        + f" seed={config.get('seed')}"
    )


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else str(value)
