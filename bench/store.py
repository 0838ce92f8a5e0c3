"""What the shared store saves on a family of sweeps: the four embedded specs, one after another.

Runs ``rank.yaml``, ``threshold.yaml``, ``replay.yaml`` and ``variants.yaml`` under one fresh results
root with the store (the default), then the same four under another fresh root with ``--no-reuse``,
and prints for each sweep and in total: base sessions trained, compute spent (session seconds plus
base sessions trained up front), compute reused from the store, wall time, and the ratios.

The specs share one base session (``base_seed: 0``, the same trial settings) and overlap where they
meet at the default point (rank 16, 2 replay exemplars, ckpd), so with the store the family trains
one base session and runs each shared (configuration, seed) once.

    python bench/store.py                       # the specs as written, ~65 minutes on 2 CPU cores
    python bench/store.py --seeds 2 --samples 4 # every spec on seeds 0-1, TPE specs 4 samples, ~30 minutes
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import yaml

from sweeps import launch
from sweeps.spec import parse_spec

SPECS = ("rank", "threshold", "replay", "variants")
SPEC_DIR = Path(__file__).resolve().parent.parent / "search_spaces"


def spec_data(name: str, seeds: int | None, samples: int | None) -> dict:
    raw = yaml.safe_load((SPEC_DIR / f"{name}.yaml").read_text())
    raw["name"] = name
    if seeds is not None:
        raw["seeds"] = list(range(seeds))
    if samples is not None and raw["search"]["algorithm"] == "optuna":
        raw["num_samples"] = samples
    return raw


def run_family(root: Path, reuse: bool, seeds: int | None, samples: int | None) -> dict[str, dict]:
    results = {}
    for name in SPECS:
        outcome = launch(
            parse_spec(spec_data(name, seeds, samples)), root, quiet=True, num_cpus=2, reuse=reuse
        )
        compute = outcome.summary.compute
        results[name] = {
            "base": outcome.base_trainings,
            "spent_s": compute.spent_s + 2 * outcome.base_pretrain_s,  # pre-training uses both cores
            "reused_s": compute.reused_s,
            "wall_s": outcome.wall_s,
            "runs": sum(outcome.summary.counts.values()),
        }
        r = results[name]
        print(
            f"  {'store' if reuse else 'no-reuse':8s} {name:9s} {r['runs']:3d} runs  "
            f"base trained {r['base']}  "
            f"compute {r['spent_s']:7.0f}s  reused {r['reused_s']:7.0f}s  wall {r['wall_s']:6.0f}s",
            flush=True,
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seeds", type=int, default=None, help="seeds 0..N-1 for every spec (default: the spec's)"
    )
    parser.add_argument(
        "--samples", type=int, default=None, help="num_samples of the TPE specs (default: the spec's)"
    )
    args = parser.parse_args()
    os.environ["RAY_ADDRESS"] = "local"  # never join a Ray something else left running
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        stored = run_family(Path(tmp) / "with-store", True, args.seeds, args.samples)
        fresh = run_family(Path(tmp) / "no-reuse", False, args.seeds, args.samples)
    print(
        f"\nspecs {', '.join(SPECS)} (seeds: {args.seeds or 'as written'}, TPE samples: "
        f"{args.samples or 'as written'}), local Ray on 2 CPUs, {time.perf_counter() - start:.0f}s in all"
    )
    totals = {}
    for label, family in (("with the store", stored), ("--no-reuse", fresh)):
        total = {
            k: sum(r[k] for r in family.values()) for k in ("base", "spent_s", "reused_s", "wall_s", "runs")
        }
        totals[label] = total
        print(
            f"{label:15s} base sessions trained {total['base']}  compute {total['spent_s']:7.0f}s  "
            f"reused {total['reused_s']:7.0f}s  wall {total['wall_s']:6.0f}s  ({total['runs']} runs)"
        )
    a, b = totals["with the store"], totals["--no-reuse"]
    print(
        f"ratio store / no-reuse: compute {a['spent_s'] / b['spent_s']:.2f}x, "
        f"wall {a['wall_s'] / b['wall_s']:.2f}x, "
        f"base sessions {a['base']} vs {b['base']}"
    )


if __name__ == "__main__":
    main()
