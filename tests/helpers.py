"""Builders shared by the test modules: tiny trial and sweep specs, result rows, subprocess runners."""

from __future__ import annotations

import math
import os
import subprocess
import sys

from ckpd_core import TrialConfig

S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_DEFAULT_REGION": "us-east-1",
}
TINY_BENCHMARK = dict(
    num_classes=20, base_classes=10, ways=5, shots=5, train_per_class=30, val_per_class=6, test_per_class=6
)


def real_format_config(benchmark: str, data_root: str, feature_dim: int, **benchmark_kwargs) -> TrialConfig:
    """A 3-session trial with a one-block backbone on a tiny dataset in a real on-disk format."""
    return TrialConfig(
        benchmark=benchmark,
        data_root=data_root,
        benchmark_kwargs=dict(num_sessions=3, max_per_class=2, **benchmark_kwargs),
        backbone_kwargs=dict(depth=1, embed_dim=32, num_heads=2),
        feature_dim=feature_dim,
        rank=4,
        top_n=2,
        base_epochs=1,
        steps=2,
        batch_size=16,
        base_batch_size=64,
    )


def tiny_spec(cache: str, name: str, **changes) -> dict:
    """A sweep spec over the tiny icons benchmark (3 sessions); ``changes`` replace top-level keys."""
    spec = {
        "name": name,
        "trial": {
            "benchmark_kwargs": dict(TINY_BENCHMARK),
            "data_root": cache,
            "backbone_kwargs": {"depth": 2, "embed_dim": 64, "num_heads": 2},
            "feature_dim": 32,
            "rank": 4,
            "top_n": 2,
            "base_epochs": 40,
            "base_batch_size": 16,
            "steps": 10,
            "batch_size": 16,
        },
        "space": {"lr": {"grid": [0.001, 0.5]}},
        "search": {"algorithm": "grid"},
        "pruner": {"name": "median", "args": {"n_startup_trials": 1, "n_warmup_steps": 1}},
        "seeds": [0, 1],
        "max_concurrent": 1,
        "max_failures": 0,
    }
    spec.update(changes)
    for swept in spec["space"]:
        spec["trial"].pop(swept, None)
    return spec


def cli_process(*args: str, **kwargs) -> subprocess.Popen:
    """`python -m sweeps ARGS` in its own process group (so a test can kill the driver and its children)."""
    return subprocess.Popen(
        [sys.executable, "-m", "sweeps", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        **kwargs,
    )


def session_row(trial_id: str, session: int, seed: int = 0, **params) -> dict:
    acc = 0.9 - 0.1 * session
    return {
        "trial_id": trial_id,
        "seed": seed,
        "session": session,
        **params,
        "n_classes": 10 + 5 * session,
        "acc_all": acc,
        "acc_base": acc,
        "acc_novel": math.nan if session == 0 else acc / 2,
        "acc_new": acc,
        "val_acc_all": acc - 0.05,
        "val_acc_base": acc,
        "val_acc_novel": math.nan if session == 0 else 0.3,
        "val_acc_new": acc,
        "n_adapted": 2 * (session > 0),
        "trainable_params": 100 * session,
        "adapted_layers": ["blocks.0.attn.qkv", "blocks.1.mlp.fc2"] if session else [],
        "adapted_asr": [0.125, 0.25] if session else [],
        "train_loss": 1.0 / (session + 1),
        "seconds": 0.5,
        "node": "node-a",
    }


def trial_row(trial_id: str, status: str = "completed", seed: int = 0, **params) -> dict:
    done = status == "completed"
    return {
        "trial_id": trial_id,
        "seed": seed,
        **params,
        "status": status,
        "pruned_at_session": 1 if status == "pruned" else None,
        "error": "boom" if status == "failed" else None,
        "sessions_done": 3 if done else 2,
        **{m: (0.7 if done else None) for m in ("avg_acc", "last_acc", "pd", "hm")},
        **{f"val_{m}": (0.6 if done else None) for m in ("avg_acc", "last_acc", "pd", "hm")},
        "compute_s": 12.5,
        "base_key": "abc123",
        "node": "node-a",
    }


def run_ckpd_core(args, cache) -> subprocess.CompletedProcess:
    """`python -m ckpd_core --quiet ARGS` with its icons cache in ``cache``."""
    env = {**os.environ, "CKPD_CACHE_DIR": str(cache), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "ckpd_core", "--quiet", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


class Interrupted(Exception):
    """Raised from a session callback: the trial stops there as a crash would."""


def crash_then_resume(config: TrialConfig, state_dir, reported: list, **kwargs):
    """Run ``config`` with its state in ``state_dir``, crash it after session 1, run it again: the second
    run resumes. Every reported row lands in ``reported``; returns the resumed run's result."""
    from ckpd_core import run_trial

    def crash_after_session_1(row):
        reported.append(row)
        if row["session"] == 1:
            raise Interrupted

    try:
        run_trial(config, crash_after_session_1, state_dir=state_dir, **kwargs)
    except Interrupted:
        pass
    else:
        raise AssertionError("the trial was meant to crash after session 1")
    return run_trial(config, reported.append, state_dir=state_dir, **kwargs)
