"""Scientific sanity check: ckpd vs full fine-tuning vs frozen on the embedded benchmark, per recipe.

Expected (DESIGN.md): ckpd ends with a higher last-session accuracy and a smaller base-accuracy drop
than full fine-tuning. Every recipe runs on the same seeds; one base session per (recipe, seed) is
shared by the three modes. Prints per-seed numbers, then each recipe's means and paired differences.

    python bench/sanity_check.py --seeds 0 1 2                              # embedded and official
    python bench/sanity_check.py --recipes embedded embedded:feature_replay=false --seeds 0 1 2

A recipe is ``NAME[:setting=value,...]``: the named recipe with those settings changed (values as
YAML), so one element can be measured on its own.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from ckpd_core import TrialConfig, run_trial

MODES = ("ckpd", "full", "frozen")
KEYS = ("last_acc", "avg_acc", "base_drop", "last_novel", "val_last_acc")


def parse_recipe(text: str) -> tuple[str, dict]:
    name, _, rest = text.partition(":")
    changes = {}
    for pair in filter(None, rest.split(",")):
        key, _, value = pair.partition("=")
        changes[key] = yaml.safe_load(value)
    return name, changes


def run(recipe: str, changes: dict, seed: int, mode: str, base: Path) -> dict:
    start = time.perf_counter()
    result = run_trial(TrialConfig(recipe=recipe, peft_mode=mode, seed=seed, **changes), base_checkpoint=base)
    rows = result.sessions
    return {
        "last_acc": result.summary["last_acc"],
        "avg_acc": result.summary["avg_acc"],
        "base_drop": rows[0]["acc_base"] - rows[-1]["acc_base"],
        "last_novel": rows[-1]["acc_novel"],
        "val_last_acc": result.summary["val_last_acc"],
        "seconds": time.perf_counter() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--recipes", nargs="+", default=["embedded", "official"])
    args = parser.parse_args()
    results: dict[str, dict[str, list[dict]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for text in args.recipes:
            recipe, changes = parse_recipe(text)
            results[text] = {mode: [] for mode in MODES}
            for seed in args.seeds:
                base = Path(tmp) / f"base-{len(results)}-{seed}.pt"
                for mode in MODES:
                    entry = run(recipe, changes, seed, mode, base)
                    results[text][mode].append(entry)
                    print(
                        f"{text} seed {seed} {mode:6s} "
                        + " ".join(f"{k} {entry[k]:.4f}" for k in KEYS)
                        + f" ({entry['seconds']:.0f}s)",
                        flush=True,
                    )
    for text, by_mode in results.items():
        print(f"\n{text}: mean over seeds {args.seeds}")
        for mode in MODES:
            means = {k: statistics.mean(e[k] for e in by_mode[mode]) for k in KEYS}
            print(f"  {mode:6s} " + "  ".join(f"{k} {v:.4f}" for k, v in means.items()))
        ckpd, full = by_mode["ckpd"], by_mode["full"]
        diffs = {k: [c[k] - f[k] for c, f in zip(ckpd, full, strict=True)] for k in ("last_acc", "base_drop")}
        wins = sum(d > 0 for d in diffs["last_acc"])
        print(
            f"  ckpd - full: last_acc {statistics.mean(diffs['last_acc']):+.4f} (ckpd higher in {wins}/"
            f"{len(args.seeds)} seeds), base_drop {statistics.mean(diffs['base_drop']):+.4f}"
        )
        holds = statistics.mean(diffs["last_acc"]) > 0 and statistics.mean(diffs["base_drop"]) < 0
        print("  claim holds:", "yes" if holds else "NO")


if __name__ == "__main__":
    main()
