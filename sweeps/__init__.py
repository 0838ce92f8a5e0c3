"""Distributed sweeps of CKPD trials: spec, Ray Tune trainable, Optuna pruning, Parquet results, CLI.

The names below load their module on first use: a notebook that only reads results
(``from sweeps import read_sessions``) imports pandas and pyarrow, not torch, Ray or Optuna.
"""

from __future__ import annotations

import importlib
from typing import Any

# Every public name and the submodule that defines it.
_HOMES = {
    "launch": "driver",
    "resume": "driver",
    "LaunchOutcome": "driver",
    "SpecError": "errors",
    "SweepSpec": "spec",
    "load_spec": "spec",
    "parse_spec": "spec",
    "read_sessions": "results",
    "read_trials": "results",
    "load_study": "study",
    "summarize": "summary",
    "compare": "statistics",
    "verdict": "statistics",
    "ablation_table": "tables",
    "format_table": "tables",
    "plot_report": "report",
    "Store": "store",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
