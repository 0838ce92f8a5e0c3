"""Live progress of a sweep: a line per session report and per finished run, and the sweep's overview.

The overview (``overview.SweepProgress``: runs by status, the best configuration so far with its
interval and ties, elapsed time, ETA) is what ``ckpd-sweep status`` shows too. On a terminal it stays
at the bottom, refreshed every second, while the lines scroll above it; elsewhere (a CI log, a file)
each finished run's line carries it, and nothing is written but plain lines.
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pandas as pd
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.text import Text

from .objective import Objective
from .overview import Leader, SweepProgress, leader_of, session_rate, sessions_left
from .results import STATUSES
from .statistics import compare, percent, run_values
from .trainable import BOOKKEEPING

if TYPE_CHECKING:
    from rich.console import RenderableType

_CONTROL = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-_]|[\x00-\x08\x0b-\x1f\x7f]")  # ANSI codes, controls


class ProgressPrinter:
    """Receives the results callback's events and prints them (picklable: the console and the live
    display are made when needed and never pickled).

    ``total``: the most runs the sweep can start; ``num_sessions``: sessions per run (both for the ETA).
    ``clock``: seconds, for elapsed time and the rate of session reports.
    """

    def __init__(
        self,
        objective: Objective,
        mode: str,
        quiet: bool = False,
        total: int | None = None,
        num_sessions: int | None = None,
        console: Console | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.objective, self.mode, self.quiet = objective, mode, quiet
        self.total, self.num_sessions, self.clock = total, num_sessions, clock
        self.began = clock()
        self.status: dict[str, str] = {}  # finished runs' status by trial id
        self.done: dict[str, int] = {}  # sessions each started run has reported
        self.history: dict[str, list[dict[str, Any]]] = {}  # unfinished runs' session rows
        self.runs: list[dict[str, Any]] = []  # completed runs: parameters, seed, objective value
        self.leader: Leader | None = None
        self.reports, self.first_report, self.last_report = 0, 0.0, 0.0
        self._console = console
        self._live: Live | None = None
        self._snapshot = self.progress()  # what the live display's thread reads

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_console": None, "_live": None}

    @property
    def console(self) -> Console:
        if self._console is None:
            self._console = Console(highlight=False)
        return self._console

    def progress(self) -> SweepProgress:
        """The sweep's overview now."""
        running = [n for trial_id, n in self.done.items() if trial_id not in self.status]
        counts = Counter(self.status.values())
        seen = len(self.done.keys() | self.status.keys())
        return SweepProgress(
            counts={status: counts[status] for status in STATUSES},
            running=len(running),
            total=self.total,
            leader=self.leader,
            objective=self.objective.label,
            elapsed_s=self.clock() - self.began,
            sessions_left=sessions_left(self.total, seen, running, self.num_sessions),
            rate=session_rate(self.reports, self.first_report, self.last_report),
        )

    def start(self) -> None:
        """On a terminal, show the overview below the printed lines until ``stop``."""
        self._snapshot = self.progress()
        if self._live is None and self.console.is_terminal:
            self._live = Live(get_renderable=self._render, console=self.console, refresh_per_second=1)
            self._live.start(refresh=True)

    def stop(self) -> None:
        """Leave the last overview on the terminal and give the cursor back (safe to call twice)."""
        live, self._live = self._live, None
        if live is not None:
            self._snapshot = self.progress()
            live.stop()

    def _changed(self) -> None:
        """Take a new snapshot and show it at once (the live display redraws its last render otherwise)."""
        self._snapshot = self.progress()
        if self._live is not None:
            self._live.refresh()

    def _render(self) -> RenderableType:
        """The overview with the elapsed time of now (called by the live display's thread, which reads
        only the snapshot the events leave); an empty last line keeps later prints off the overview."""
        progress = replace(self._snapshot, elapsed_s=self.clock() - self.began)
        return Group(*(Text(line) for line in progress.lines()), Text(""))

    def note(self, message: str) -> None:
        if not self.quiet:
            self._print(message)

    def warn(self, message: str) -> None:
        """Printed even when quiet: something the user may have to act on."""
        self._print(f"[yellow]warning:[/yellow] {escape(message)}")

    def _print(self, markup: str) -> None:
        """Without the terminal codes a run's error text may hold (rich keeps escape sequences from text:
        in a CI log they are noise, on a terminal they garble the display); one line unless the live
        display is on (it is drawn with the print's options, and must wrap as when it refreshes)."""
        self.console.print(_CONTROL.sub("", markup), soft_wrap=self._live is None, highlight=False)

    def resume_from(self, trials: pd.DataFrame, sessions: pd.DataFrame) -> None:
        """Take over what earlier drivers of a resumed sweep saw: runs started, finished by status,
        the sessions of unfinished ones (their objective needs them) and the best so far."""
        self.status.update(zip(trials.trial_id.astype(str), trials.status, strict=True))
        for trial_id, rows in sessions.groupby(sessions.trial_id.astype(str)):
            self.done[trial_id] = int(rows.session.max()) + 1
            if trial_id not in self.status:
                self.history[trial_id] = rows.to_dict("records")
        self.runs = run_values(sessions, trials, self.objective).to_dict("records")
        self.leader = self._leader()
        self._changed()

    def _leader(self) -> Leader | None:
        return leader_of(compare(pd.DataFrame(self.runs), objective=self.objective, mode=self.mode))

    def __call__(self, event: str, payload: dict[str, Any]) -> None:
        if event == "waiting":
            self.warn(payload["message"])
            return
        trial_id = payload["trial_id"]
        label = escape(_label(payload["config"]))
        if event == "session":
            self._session(trial_id, payload)
            value = _fmt(payload.get(self.objective.metric))
            self.note(f"  {trial_id} {label}: session {payload['session']} {self.objective.metric} {value}")
            return
        self.status[trial_id] = event
        rows = self.history.pop(trial_id, [])
        head, detail = f"{trial_id} {event}", ""
        if event == "completed" and rows:
            detail = f": {self.objective.label} {percent(self._completed(payload, rows))}"
        elif event == "pruned":
            head += f" at session {payload.get('pruned_at_session')}"
        elif event == "failed":
            detail = f": {escape(str(payload.get('error')))}"
        self._changed()
        line = f"[bold]{head}[/bold] ({label}){detail}"
        if self._live is None:  # no overview below: the line carries it
            line += "  " + " | ".join(escape(part) for part in self._snapshot.lines())
        self.note(line)

    def _session(self, trial_id: str, payload: dict[str, Any]) -> None:
        self.history.setdefault(trial_id, []).append(payload)
        self.done[trial_id] = max(self.done.get(trial_id, 0), int(payload["session"]) + 1)
        now = self.clock()
        self.first_report = now if not self.reports else self.first_report
        self.reports, self.last_report = self.reports + 1, now
        self._changed()

    def _completed(self, payload: dict[str, Any], rows: list[dict[str, Any]]) -> float:
        """The run's objective from its session rows; a run that has one joins the best's candidates."""
        by_session = {int(row["session"]): row for row in rows}
        value = self.objective.of_rows([by_session[s] for s in sorted(by_session)])
        if not math.isnan(value):
            params = {k: v for k, v in payload["config"].items() if k not in BOOKKEEPING}
            self.runs.append({**params, "seed": payload["seed"], "value": value})
            self.leader = self._leader()
        return value


def _label(config: dict[str, Any]) -> str:
    params = [f"{k}={v}" for k, v in config.items() if k not in BOOKKEEPING]
    return " ".join([*params, f"seed={config.get('seed')}"])


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else str(value)
