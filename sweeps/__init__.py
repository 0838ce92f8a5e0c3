"""Distributed sweeps of CKPD trials: spec, Ray Tune trainable, Optuna pruning, Parquet results, CLI.

The names below load their module on first use: a notebook that only reads results
(``from sweeps import read_sessions``) imports pandas and pyarrow, not torch, Ray or Optuna.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "driver": ["LaunchOutcome", "launch", "resume"],
        "errors": ["SpecError"],
        "report": ["plot_report"],
        "results": ["read_sessions", "read_trials"],
        "spec": ["SweepSpec", "load_spec", "parse_spec"],
        "statistics": ["compare", "verdict"],
        "store": ["Store"],
        "study": ["load_study"],
        "summary": ["summarize"],
        "tables": ["ablation_table", "format_table"],
    },
)
