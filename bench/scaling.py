"""Trials per hour of a real sweep on 2 CPU cores: 1 trial at a time on 2 threads vs 2 trials on 1 each.

Runs the same grid sweep twice on a local Ray (`launch(..., num_cpus=2)`), on the tiny icons
benchmark of the tests (20 classes, 3 sessions; `tests/test_sweep_ray.py::tiny_spec`), one seed,
no pruner, every configuration run to the end:
  (1) `resources: {cpu: 2}`, `max_concurrent: 1`: one trial at a time, torch on 2 threads;
  (2) `resources: {cpu: 1}`, `max_concurrent: 2`: two trials side by side, torch on 1 thread each.
The shared base session is trained once up front, outside both timings, and copied into each sweep's
`<results>/<sweep>/base/` under `sweeps.base_sessions.base_checkpoint_path`, so both sweeps load it and
train none; what is timed is the whole `launch` call that follows (Ray start-up, the Tuner, every
trial's incremental sessions, the Parquet writer, Ray shut-down), i.e. what a user waits for once
the base session exists. Printed per setting: wall seconds, the sum of the trials' own compute
seconds, trials per hour over the wall time and over the wall time without the fixed start-up
(launch until the first session row was written), and the ratio (2) / (1).

Target: none fixed by the issue; the ratio says whether `cpu: 1, max_concurrent: 2` (the CPU specs'
default) beats one 2-thread trial on this machine, and by how much.

    python bench/scaling.py             # ~2 minutes on 2 CPU cores
    python bench/scaling.py --quick     # smoke run, ~1 minute
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from ckpd_core import build_benchmark, train_base_session
from sweeps import launch
from sweeps.base_sessions import base_checkpoint_path
from sweeps.folder import BASE_DIR, sweep_location
from sweeps.results import read_sessions, read_trials
from sweeps.spec import parse_spec

# The tiny benchmark of tests/conftest.py (TINY_BENCHMARK): 10 base classes + 2 sessions of 5-way 5-shot.
TINY_BENCHMARK = dict(
    num_classes=20, base_classes=10, ways=5, shots=5, train_per_class=30, val_per_class=6, test_per_class=6
)
RANKS = [2, 3, 4, 5, 6, 8, 10, 12]


def sweep_spec(name: str, data_root: str, args: argparse.Namespace, cpu: int, concurrent: int) -> dict:
    """tests/test_sweep_ray.py's tiny_spec, as a rank grid with no pruner, one seed."""
    return {
        "name": name,
        "trial": {
            "benchmark_kwargs": dict(TINY_BENCHMARK),
            "data_root": data_root,
            "backbone_kwargs": {"depth": 2, "embed_dim": 64, "num_heads": 2},
            "feature_dim": 32,
            "top_n": 2,
            "base_epochs": args.base_epochs,
            "base_batch_size": 16,
            "steps": args.steps,
            "batch_size": 16,
        },
        "space": {"rank": {"grid": RANKS[: args.configs]}},
        "search": {"algorithm": "grid"},
        "pruner": None,
        "seeds": [0],
        "resources": {"cpu": cpu, "gpu": 0},
        "max_concurrent": concurrent,
        "max_failures": 0,
    }


def run(raw: dict, root: Path, base_file: Path) -> dict:
    spec = parse_spec(raw)
    config = spec.trial_config({"rank": RANKS[0]}, spec.seeds[0])
    target = base_checkpoint_path(config, sweep_location(spec, root) / BASE_DIR)
    target.parent.mkdir(parents=True)
    shutil.copyfile(base_file, target)
    start_wall = time.time()
    outcome = launch(spec, root, num_cpus=2, quiet=True, reuse=False)  # both settings compute every run
    trials = read_trials(outcome.results_dir)
    sessions = read_sessions(outcome.results_dir)
    first_row = sessions.written_at.min().timestamp()
    return {
        "wall_s": outcome.wall_s,
        "startup_s": first_row - start_wall,
        "compute_s": float(trials.compute_s.sum()),
        "trials": len(trials),
        "completed": int((trials.status == "completed").sum()),
        "base_trainings": outcome.base_trainings,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=8, help=f"grid size (ranks {RANKS}), 1..{len(RANKS)}")
    parser.add_argument("--steps", type=int, default=40, help="steps per session (TrialConfig default)")
    parser.add_argument("--base-epochs", type=int, default=40, help="base session epochs (trained once)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 configurations, 5 steps")
    args = parser.parse_args()
    if args.quick:
        args.configs, args.steps, args.base_epochs = 2, 5, 4
    if not 1 <= args.configs <= len(RANKS):
        parser.error(f"--configs must lie in 1..{len(RANKS)}")
    settings = (("1 x cpu 2", 2, 1), ("2 x cpu 1", 1, 2))
    # launch() without an address calls ray.init() with none, which joins any Ray already running on
    # the machine (another sweep, a test session) and then refuses num_cpus: always start our own.
    os.environ["RAY_ADDRESS"] = "local"
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        root, data_root = Path(tmp) / "results", str(Path(tmp) / "icons")
        first = parse_spec(sweep_spec("base", data_root, args, 2, 1))
        config = first.trial_config({"rank": RANKS[0]}, first.seeds[0])
        start = time.perf_counter()
        build_benchmark(config.benchmark, config.data_root, **config.benchmark_kwargs)
        built = time.perf_counter()
        torch.set_num_threads(2)
        base_file = Path(tmp) / "base.pt"
        train_base_session(config, base_file)
        print(
            f"icons benchmark ready in {built - start:.1f}s; base session trained once in "
            f"{time.perf_counter() - built:.1f}s (2 threads), shared by both sweeps and not timed"
        )
        results = {}
        for label, cpu, concurrent in settings:
            raw = sweep_spec(f"c{concurrent}", data_root, args, cpu, concurrent)
            results[label] = run(raw, root, base_file)
    print(
        f"sweep: rank grid {RANKS[: args.configs]}, 1 seed, no pruner, {args.steps} steps per session, "
        f"tiny icons benchmark, local Ray on 2 CPUs; load average {load_before:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after (above ~0.5 other processes shared the cores)"
    )
    for label, r in results.items():
        per_hour = 3600 * r["trials"] / r["wall_s"]
        steady = 3600 * r["trials"] / (r["wall_s"] - r["startup_s"])
        print(
            f"{label:10s} wall {r['wall_s']:6.1f}s  start-up {r['startup_s']:5.1f}s  trial compute "
            f"{r['compute_s']:6.1f}s  {r['completed']}/{r['trials']} completed  base trained "
            f"{r['base_trainings']}x  {per_hour:6.0f} trials/h ({steady:6.0f} without start-up)"
        )
    one, two = (results[label] for label, _, _ in settings)
    ratio = one["wall_s"] / two["wall_s"]
    ratio_steady = (one["wall_s"] - one["startup_s"]) / (two["wall_s"] - two["startup_s"])
    print(
        f"2 concurrent (1 thread each) vs 1 concurrent (2 threads): {ratio:.2f}x the trials per hour "
        f"({ratio_steady:.2f}x without start-up); mean trial compute "
        f"{one['compute_s'] / one['trials']:.1f}s on 2 threads vs {two['compute_s'] / two['trials']:.1f}s "
        "on 1 thread beside another trial"
    )


if __name__ == "__main__":
    main()
