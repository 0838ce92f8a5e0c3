"""Scientific sanity check: ckpd vs full fine-tuning vs frozen on the embedded benchmark, same seeds.

Expected (DESIGN.md): ckpd ends with a higher last-session accuracy and a smaller base-accuracy drop
than full fine-tuning. Prints per-seed numbers and the mean over seeds; exits 0 either way.

    python bench/sanity_check.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from ckpd_core import TrialConfig, run_trial

MODES = ("ckpd", "full", "frozen")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    results: dict[str, list[dict]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            base = Path(tmp) / f"base-{seed}.pt"
            for mode in MODES:
                start = time.perf_counter()
                result = run_trial(TrialConfig(peft_mode=mode, seed=seed), base_checkpoint=base)
                rows = result.sessions
                entry = {
                    "last_acc": result.summary["last_acc"],
                    "avg_acc": result.summary["avg_acc"],
                    "base_drop": rows[0]["acc_base"] - rows[-1]["acc_base"],
                    "last_novel": rows[-1]["acc_novel"],
                    "val_last_acc": result.summary["val_last_acc"],
                }
                results[mode].append(entry)
                print(
                    f"seed {seed} {mode:6s} last_acc {entry['last_acc']:.4f} avg_acc {entry['avg_acc']:.4f} "
                    f"base_drop {entry['base_drop']:.4f} last_novel {entry['last_novel']:.4f} "
                    f"({time.perf_counter() - start:.0f}s)",
                    flush=True,
                )
    print("\nmean over seeds", args.seeds)
    for mode in MODES:
        means = {k: statistics.mean(e[k] for e in results[mode]) for k in results[mode][0]}
        print(f"{mode:6s} " + "  ".join(f"{k} {v:.4f}" for k, v in means.items()))
    ckpd = {k: statistics.mean(e[k] for e in results["ckpd"]) for k in ("last_acc", "base_drop")}
    full = {k: statistics.mean(e[k] for e in results["full"]) for k in ("last_acc", "base_drop")}
    wins = sum(c["last_acc"] > f["last_acc"] for c, f in zip(results["ckpd"], results["full"], strict=False))
    print(
        f"\nckpd - full: last_acc {ckpd['last_acc'] - full['last_acc']:+.4f} "
        f"(ckpd higher in {wins}/{len(args.seeds)} seeds), "
        f"base_drop {ckpd['base_drop'] - full['base_drop']:+.4f}"
    )
    holds = ckpd["last_acc"] > full["last_acc"] and ckpd["base_drop"] < full["base_drop"]
    print("claim holds on this benchmark:", "yes" if holds else "NO")


if __name__ == "__main__":
    main()
