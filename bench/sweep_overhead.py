"""Cost of running CKPD trials through ckpd-sweep, measured side by side on one small sweep.

Runs the same small rank sweep three times on a local Ray and prints:
  (a) orchestration overhead: wall time of the launch against the in-trial compute divided by the
      number of concurrent trials (target: ratio under 1.15);
  (b) compute with base-session sharing against retraining the base session in every trial;
  (c) compute with Optuna pruning against without pruning, and whether the leading configuration is the same
      (with one seed by default: a check that pruning keeps the leader, not a verdict on it).

    python bench/sweep_overhead.py            # ~15 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import copy
import tempfile
from pathlib import Path

import yaml

from sweeps import launch
from sweeps.results import read_trials
from sweeps.spec import parse_spec

SPEC = Path(__file__).resolve().parent.parent / "search_spaces" / "rank.yaml"


def run(raw: dict, name: str, root: Path, share_base: bool = True) -> dict:
    spec = parse_spec({**copy.deepcopy(raw), "name": name})
    # reuse=False: the three sweeps share a root but must each compute what they measure
    outcome = launch(spec, root, quiet=True, num_cpus=2, share_base=share_base, reuse=False)
    trials = read_trials(outcome.results_dir)
    in_trial = float(trials.compute_s.sum())
    concurrency = spec.max_concurrent or 1
    ideal = outcome.base_pretrain_s + in_trial / concurrency
    return {
        "wall_s": outcome.wall_s,
        "pretrain_s": outcome.base_pretrain_s,
        "trial_compute_s": in_trial,
        "compute_s": in_trial + outcome.base_pretrain_s * 2,  # pre-training uses both cores
        "ideal_wall_s": ideal,
        "overhead": outcome.wall_s / ideal,
        "counts": outcome.summary.counts,
        "base_trainings": outcome.base_trainings,
        "leader": {k: v for k, v in (outcome.summary.best or {}).items() if k in outcome.summary.params},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-samples", type=int, default=6)
    parser.add_argument("--base-epochs", type=int, default=6, help="short base sessions keep it quick")
    parser.add_argument("--seeds", type=int, default=1, help="seeds per configuration")
    args = parser.parse_args()
    raw = yaml.safe_load(SPEC.read_text())
    raw["num_samples"] = args.num_samples
    raw["seeds"] = list(range(args.seeds))
    raw["trial"]["base_epochs"] = args.base_epochs
    raw["search"]["sampler_args"] = {"n_startup_trials": args.num_samples}  # same configurations in every run
    no_pruning = {**raw, "pruner": None}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shared = run(raw, "shared", root)
        unshared = run(raw, "unshared", root, share_base=False)
        unpruned = run(no_pruning, "unpruned", root)
    print(
        f"sweep: {SPEC.name}, {args.num_samples} configurations x {args.seeds} seed(s), "
        f"base_epochs={args.base_epochs}, 2 CPUs"
    )
    for label, r in (("pruning + shared base", shared), ("no sharing", unshared), ("no pruning", unpruned)):
        print(
            f"{label:22s} wall {r['wall_s']:6.1f}s  trial compute {r['trial_compute_s']:6.1f}s  "
            f"base pre-training {r['pretrain_s']:5.1f}s  base trained {r['base_trainings']}x  {r['counts']}"
        )
    print(
        f"(a) orchestration overhead: wall {shared['wall_s']:.1f}s / "
        f"(pre-training {shared['pretrain_s']:.1f}s "
        f"+ trial compute {shared['trial_compute_s']:.1f}s / 2) = {shared['overhead']:.2f}  (target < 1.15)"
    )
    print(
        f"(b) base sharing: compute {shared['compute_s']:.1f}s vs "
        f"{unshared['compute_s']:.1f}s retraining per trial "
        f"= {shared['compute_s'] / unshared['compute_s']:.2f}x"
    )
    print(
        f"(c) pruning: compute {shared['compute_s']:.1f}s vs {unpruned['compute_s']:.1f}s without "
        f"= {shared['compute_s'] / unpruned['compute_s']:.2f}x; leader with pruning {shared['leader']}, "
        f"without {unpruned['leader']}: {'same' if shared['leader'] == unpruned['leader'] else 'DIFFERENT'}"
    )


if __name__ == "__main__":
    main()
