"""Do a sweep's conclusions depend on the path its search took? Run it twice with different sampler seeds.

    python bench/decisions.py                                   # the rank sweep, sampler seeds 1 and 2
    python bench/decisions.py --spec search_spaces/threshold.yaml --sampler-seeds 3 4

Each run is a full ``launch`` (local Ray, the spec's seeds and pruner) into its own results folder.
Printed side by side: the verdict of each (the best and the configurations tied with it, those
significantly worse, those pruned) and the compute each spent. The sets {best} + tied should agree:
a conclusion that changes with the sampler's seed is the search's luck, not the method's. A
configuration pruned in one run and compared in the other is no contradiction (pruned = not compared):
the check is that both name the same best, and that no configuration both completed is tied with the
best in one and significantly worse in the other.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import optuna

from sweeps import launch
from sweeps.results import read_trials
from sweeps.spec import load_spec


def run(spec_path: Path, sampler_seed: int, root: Path) -> dict:
    spec = load_spec(spec_path)
    spec = dataclasses.replace(
        spec,
        name=f"{spec.name}-sampler{sampler_seed}",
        search=spec.search.model_copy(update={"seed": sampler_seed}),
    )
    start = time.perf_counter()
    outcome = launch(spec, root, quiet=True)
    wall = time.perf_counter() - start
    verdict, trials = outcome.summary.verdict, read_trials(outcome.results_dir)
    comparison = verdict.comparison
    labels = [comparison.label(i) for i in range(len(verdict.table))]
    tied = [labels[i] for i in verdict.tied.index]
    status = {label: "tied" for label in tied} | {labels[i]: "worse" for i in verdict.separated.index}
    return {
        "status": status,
        "best": labels[0] if labels else "-",
        "tied": tied,
        "worse": [labels[i] for i in verdict.separated.index],
        "pruned": verdict.pruned,
        "top": frozenset(labels[:1] + tied),
        "n_seeds": verdict.n_seeds,
        "runs": f"{outcome.summary.counts['completed']} completed, {outcome.summary.counts['pruned']} pruned",
        "compute_s": float(trials["compute_s"].sum()) + outcome.base_pretrain_s,
        "wall_s": wall,
        "lines": verdict.lines(str(spec_path)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--spec", type=Path, default=Path("search_spaces/rank.yaml"))
    parser.add_argument("--sampler-seeds", type=int, nargs=2, default=[1, 2])
    parser.add_argument("--results", type=Path, default=None, help="results root (default: a temp folder)")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    root = args.results or Path(tempfile.mkdtemp(prefix="ckpd-decisions-"))
    runs = [run(args.spec, seed, root) for seed in args.sampler_seeds]
    width = 52
    first, second = args.sampler_seeds
    print(f"\n{args.spec}: the same sweep with sampler seeds {first} and {second}")
    print(f"{'':<22}" + "".join(f"{f'sampler seed {s}':<{width}}" for s in args.sampler_seeds))
    for key, title in (
        ("best", "best"),
        ("tied", "tied with the best"),
        ("worse", "significantly worse"),
        ("pruned", "pruned (not compared)"),
    ):
        cells = [r[key] if isinstance(r[key], str) else "; ".join(r[key]) or "-" for r in runs]
        print(f"{title:<22}" + "".join(f"{cell:<{width}}" for cell in cells))
    for key, title in (("n_seeds", "seeds"), ("runs", "runs")):
        print(f"{title:<22}" + "".join(f"{str(r[key]):<{width}}" for r in runs))
    print(f"{'compute (s)':<22}" + "".join(f"{r['compute_s']:<{width}.0f}" for r in runs))
    print(f"{'wall (s)':<22}" + "".join(f"{r['wall_s']:<{width}.0f}" for r in runs))
    both = sorted(set(runs[0]["status"]) & set(runs[1]["status"]))
    contradictions = [c for c in both if runs[0]["status"][c] != runs[1]["status"][c]]
    same_best = runs[0]["best"] == runs[1]["best"]
    print(
        f"best + tied sets equal: {'yes' if runs[0]['top'] == runs[1]['top'] else 'no'} "
        f"({sorted(runs[0]['top'])} vs {sorted(runs[1]['top'])})"
    )
    print(
        f"conclusions agree: {'yes' if same_best and not contradictions else 'no'} (same best: "
        f"{'yes' if same_best else 'no'}; completed in both: {', '.join(both) or 'none'}; tied in one "
        f"and worse in the other: {', '.join(contradictions) or 'none'})"
    )
    for seed, result in zip(args.sampler_seeds, runs, strict=True):
        print(f"\nverdict with sampler seed {seed}:")
        print("\n".join(result["lines"]))


if __name__ == "__main__":
    main()
