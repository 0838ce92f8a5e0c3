"""Time and peak memory of one default trial on the embedded benchmark (base session trained fresh).

Targets (issue 3): base session <= 120 s, every incremental session <= 10 s, peak memory < 2 GB,
on 2 CPU cores. Prints each measurement beside its target as a ratio (< 1 meets the target).

    python bench/trial_speed.py
"""

from __future__ import annotations

import resource
import time

import torch

from ckpd_core import TrialConfig, build_benchmark, run_trial

BASE_TARGET_S = 120.0
SESSION_TARGET_S = 10.0
MEMORY_TARGET_MB = 2048.0


def report(what: str, value: float, target: float, unit: str) -> None:
    print(f"{what:20s} {value:8.1f} {unit:2s}  target {target:6.0f} {unit:2s}  ratio {value / target:.2f}")


def main() -> None:
    config = TrialConfig()
    start = time.perf_counter()
    build_benchmark(config.benchmark, config.data_root, **config.benchmark_kwargs)
    print(f"benchmark ready in {time.perf_counter() - start:.1f}s (cached after the first build)")
    result = run_trial(config)
    base_s = result.sessions[0]["seconds"]
    session_s = [row["seconds"] for row in result.sessions[1:]]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"torch threads: {torch.get_num_threads()}")
    report("base session", base_s, BASE_TARGET_S, "s")
    print("incremental sessions: " + " ".join(f"{s:.1f}" for s in session_s) + " s")
    worst = max(session_s)
    report("slowest incremental", worst, SESSION_TARGET_S, "s")
    report("peak memory (RSS)", peak_mb, MEMORY_TARGET_MB, "MB")
    print(f"last_acc {result.summary['last_acc']:.4f}  avg_acc {result.summary['avg_acc']:.4f}")


if __name__ == "__main__":
    main()
