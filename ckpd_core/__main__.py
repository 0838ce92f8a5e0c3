"""``python -m ckpd_core [name=value ...]``: run one trial and print its per-session table."""

from __future__ import annotations

import argparse
import logging
import sys

import yaml
from rich.console import Console
from rich.table import Table

from .config import TrialConfig
from .data.icons import default_cache_dir
from .errors import CKPDError
from .metrics import SESSION_METRICS
from .recipe import differing_line, recipe_table
from .trial import run_trial

COLUMNS = (*SESSION_METRICS, "val_acc_all")


def parse_overrides(pairs: list[str]) -> dict:
    """``rank=8 peft_mode=full`` -> {"rank": 8, "peft_mode": "full"} (values parsed as YAML)."""
    values = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            raise CKPDError(f"setting {pair!r} is not of the form name=value")
        values[name] = yaml.safe_load(raw)
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ckpd_core", description=__doc__)
    parser.add_argument("settings", nargs="*", help="TrialConfig fields as name=value, e.g. rank=8")
    parser.add_argument("--no-base-cache", action="store_true", help="retrain the base session")
    parser.add_argument("--quiet", action="store_true", help="no progress logging")
    parser.add_argument(
        "--explain",
        action="store_true",
        help="print the recipe table (official value vs this trial's) and exit",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO, format="%(asctime)s %(message)s"
    )
    console = Console()
    try:
        config = TrialConfig.from_dict(parse_overrides(args.settings))
        if args.explain:
            table, differing = recipe_table(config.to_dict(), config.benchmark)
            console.print(table)
            console.print(differing_line(differing, config.benchmark))
            return 0
        cache = None if args.no_base_cache else default_cache_dir() / f"base-{config.base_session_key()}.pt"
        result = run_trial(config, base_checkpoint=cache)
    except CKPDError as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 2
    table = Table(title=f"{config.benchmark} / {config.peft_mode} / rank {config.rank} / seed {config.seed}")
    for column in ("session", "classes", *COLUMNS, "adapted", "seconds"):
        table.add_column(column, justify="right")
    for row in result.sessions:
        table.add_row(
            str(row["session"]),
            str(row["n_classes"]),
            *(f"{row[c]:.4f}" for c in COLUMNS),
            str(row["n_adapted"]),
            f"{row['seconds']:.1f}",
        )
    console.print(table)
    console.print("  ".join(f"{k}={v:.4f}" for k, v in result.summary.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
