"""``ckpd-sweep``: validate, launch, resume and inspect CKPD-FSCIL sweeps."""

from __future__ import annotations

import dataclasses
import faulthandler
import logging
import signal
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ckpd_core import CKPDError

from .folder import created_at, finished_at, open_sweep_folder
from .results import read_sessions, read_trials
from .spec import SpecError, TrialPlan, check_local_inputs, check_model, load_spec

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console(highlight=False, soft_wrap=True)
EXIT_BAD_INPUT = 2

SpecArg = Annotated[Path, typer.Argument(help="sweep spec YAML, e.g. search_spaces/rank.yaml")]
DirArg = Annotated[
    str, typer.Argument(help="a sweep's results folder or URI, e.g. results/rank or s3://bucket/sweeps/rank")
]
AddressOpt = Annotated[
    str | None, typer.Option("--address", help="join a running Ray cluster ('auto' on a cluster node)")
]
CpusOpt = Annotated[
    int | None, typer.Option("--num-cpus", min=1, help="CPUs of the local Ray (default: all)")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", help="no per-session progress lines")]


def _fail(exc: Exception) -> typer.Exit:
    """Print the error as one line (no wrapping; brackets in it are text, not markup); exit 2."""
    console.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
    return typer.Exit(EXIT_BAD_INPUT)


def _stopped(stopped, launch_again: str = "") -> typer.Exit:
    """How to go on after SIGINT / SIGTERM; exit 128 + the signal's number, as the shell reports it."""
    name = signal.Signals(stopped.signum).name
    if stopped.resumable:
        text = (
            f"stopped by {name}: every reported session is kept in {stopped.results_dir}; continue the "
            f"sweep with `ckpd-sweep resume {stopped.results_dir}`"
        )
    else:
        text = f"stopped by {name} before any run started, nothing was kept: run `{launch_again}` again"
    console.print(escape(text), soft_wrap=True)
    return typer.Exit(128 + stopped.signum)


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")] = False) -> None:
    if sys.__stderr__ is not None:  # a crash inside a native library (Ray, torch) prints the Python stack
        faulthandler.enable(sys.__stderr__)
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    if not verbose:  # one line per study created otherwise
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)


@app.command()
def validate(spec: SpecArg) -> None:
    """Check a sweep spec without running anything."""
    try:
        parsed = load_spec(spec)
        check_model(parsed)
    except CKPDError as exc:
        raise _fail(exc) from None
    per_seed = TrialPlan(parsed).size
    console.print(
        f"[green]ok[/green] {spec}: sweep '{parsed.name}', at most {parsed.max_runs} runs "
        f"({per_seed} configurations x {len(parsed.seeds)} seeds), search {parsed.search.algorithm}, "
        f"pruner {parsed.pruner.name if parsed.pruner else 'none'}, objective {parsed.objective.label} "
        f"({parsed.mode})"
    )


@app.command()
def launch(
    spec: SpecArg,
    results: Annotated[
        str | None,
        typer.Option(
            "--results",
            help="results root, a folder or a URI such as s3://bucket/sweeps (default: the spec's)",
        ),
    ] = None,
    address: AddressOpt = None,
    num_cpus: CpusOpt = None,
    quiet: QuietOpt = False,
    log: Annotated[
        list[str] | None,
        typer.Option(
            "--log",
            metavar="TRACKER",
            help="send every run's session metrics, settings and final status to a tracker: tensorboard, "
            "mlflow or wandb (repeat for several; added to the spec's log:)",
        ),
    ] = None,
    no_reuse: Annotated[
        bool,
        typer.Option(
            "--no-reuse",
            help="compute every base session and run again, reading and writing nothing in the "
            "results root's store (a timing or reproducibility check)",
        ),
    ] = False,
) -> None:
    """Validate SPEC, then run its sweep on Ray Tune; results land in <results>/<name>/.

    Base sessions and runs that any sweep under the same results root already computed (same settings,
    seed and method code) are reused from <results>/store/ instead of computed again."""
    from .driver import SweepStopped
    from .driver import launch as run_launch
    from .trackers import check_trackers

    try:
        parsed = load_spec(spec)
        parsed = dataclasses.replace(parsed, log=check_trackers([*parsed.log, *(log or [])]))
        check_model(parsed)
        if address is None:  # a local run: the trials read this machine's disk, so check it first
            check_local_inputs(parsed)
        outcome = run_launch(
            parsed, results, address=address, num_cpus=num_cpus, quiet=quiet, reuse=not no_reuse
        )
    except CKPDError as exc:
        raise _fail(exc) from None
    except SweepStopped as stopped:
        raise _stopped(stopped, f"ckpd-sweep launch {spec}") from None
    _print_outcome(outcome, str(spec))


@app.command()
def resume(
    path: DirArg, address: AddressOpt = None, num_cpus: CpusOpt = None, quiet: QuietOpt = False
) -> None:
    """Continue a sweep whose driver died or was stopped; finished sessions are not rerun or rewritten."""
    from .driver import SweepStopped
    from .driver import resume as run_resume

    try:
        outcome = run_resume(path, address=address, num_cpus=num_cpus, quiet=quiet)
    except CKPDError as exc:
        raise _fail(exc) from None
    except SweepStopped as stopped:
        raise _stopped(stopped) from None
    _print_outcome(outcome, f"{outcome.results_dir}/spec.yaml")


@app.command()
def status(path: DirArg) -> None:
    """Progress of a running or finished sweep: runs by status of the most it can start, the best so far,
    elapsed time, when the last session was written, an ETA, then the verdict so far."""
    from .overview import progress_of
    from .summary import summary_of

    try:
        location, spec = open_sweep_folder(path)
        started_at, ended_at = created_at(location), finished_at(location)
    except CKPDError as exc:
        raise _fail(exc) from None
    sessions, trials = read_sessions(location), read_trials(location)
    summary = summary_of(sessions, trials, spec)
    progress = progress_of(
        sessions,
        trials,
        summary,
        total=spec.max_runs,
        num_sessions=spec.num_sessions,
        now=datetime.now(timezone.utc),
        started_at=started_at,
        finished_at=ended_at,
    )
    console.print(f"sweep '{escape(spec.name)}': {summary.sessions_written} session rows")
    for line in progress.lines():
        console.print(escape(line))
    _print_verdict(summary, f"{location}/spec.yaml")


BaselineOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--baseline",
        help="compare against this configuration instead of the best: key=value (repeat, or separate "
        "with commas, for several parameters)",
    ),
]


@app.command()
def table(
    path: DirArg,
    rows: Annotated[
        str | None,
        typer.Option("--rows", help="a swept parameter: tabulate --metric by session (or --cols) instead"),
    ] = None,
    cols: Annotated[
        str, typer.Option("--cols", help="with --rows: 'session' or another swept parameter")
    ] = "session",
    metric: Annotated[
        str | None, typer.Option("--metric", help="session metric (default: the spec's; with --rows acc_all)")
    ] = None,
    objective: Annotated[
        str | None, typer.Option("--objective", help="avg, last or hm (default: the spec's)")
    ] = None,
    baseline: BaselineOpt = None,
    fmt: Annotated[str, typer.Option("--format", help="markdown, latex or csv")] = "markdown",
    digits: Annotated[int, typer.Option("--digits", min=0, max=6)] = 2,
) -> None:
    """Paper-style table of the completed configurations: objective with n_seeds, mean, std, 95% interval,
    paired difference to the best, Holm-adjusted p-value and ties. With --rows: a metric per session."""
    from .objective import Objective
    from .statistics import compare, run_values
    from .tables import FORMATS, ablation_table, format_comparison, format_table

    try:
        location, spec = open_sweep_folder(path)
        if fmt not in FORMATS:
            raise SpecError(f"--format {fmt!r} is unknown; choose one of {', '.join(FORMATS)}")
        sessions, trials = read_sessions(location), read_trials(location)
        if sessions.empty:
            raise SpecError(
                f"{location} has no session rows yet, so there is nothing to tabulate: "
                f"see `ckpd-sweep status {path}` and try again once trials have reported"
            )
        if rows is not None:
            if objective is not None or baseline:
                raise SpecError(
                    "--objective and --baseline apply to the configuration table: leave out --rows"
                )
            frame = ablation_table(sessions, trials, rows=rows, cols=cols, metric=metric or "acc_all")
            text = format_table(frame, fmt, digits=digits)
        else:
            goal = Objective(objective or spec.objective.kind, metric or spec.metric)
            runs = run_values(sessions, trials, goal)
            if runs.empty:
                raise SpecError(
                    f"no run in {location} has completed every session yet: see `ckpd-sweep status`"
                )
            comparison = compare(runs, objective=goal, mode=spec.mode, baseline=_baseline(baseline))
            text = format_comparison(comparison, fmt, digits=digits)
    except (CKPDError, ValueError) as exc:
        raise _fail(exc) from None
    print(text, end="")


def _baseline(pairs: list[str] | None) -> dict[str, str] | None:
    if not pairs:
        return None
    chosen = {}
    for pair in (item for text in pairs for item in text.split(",") if item.strip()):
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise SpecError(f"--baseline {pair!r}: write key=value, e.g. --baseline rank=8")
        chosen[name.strip()] = value.strip()
    return chosen


@app.command()
def report(
    path: DirArg,
    out: Annotated[
        Path | None, typer.Option("--out", help="folder for the PNGs (default: <DIR>/report)")
    ] = None,
    param: Annotated[str | None, typer.Option("--param", help="swept parameter to compare")] = None,
) -> None:
    """PNG plots: accuracy per session for each value of the swept parameter, and the pruning picture."""
    from .report import plot_report

    try:
        location, spec = open_sweep_folder(path)
        if out is None and not location.is_local:
            raise SpecError(f"{location} is not a local folder: give --out for the PNGs")
        out_dir = out or location.local_path / "report"
        sessions, trials = read_sessions(location), read_trials(location)
    except (CKPDError, ValueError) as exc:
        raise _fail(exc) from None
    try:
        written = plot_report(
            sessions, trials, out_dir, param=param, objective=spec.objective, mode=spec.mode
        )
    except ValueError as exc:
        raise _fail(exc) from None
    except OSError as exc:  # --out is a file, or a folder this user cannot write
        problem = f"{exc.strerror}: {exc.filename}" if exc.strerror and exc.filename else str(exc)
        message = f"--out {out_dir}: cannot write the PNGs there ({problem}); give a folder you can write to"
        raise _fail(SpecError(message)) from None
    for file in written:
        console.print(f"wrote {file}")


@app.command()
def recipe(spec: SpecArg) -> None:
    """The official CKPD recipe element by element beside the values this spec's trials use."""
    from ckpd_core.recipe import differing_line, recipe_table

    try:
        parsed = load_spec(spec)
    except CKPDError as exc:
        raise _fail(exc) from None
    first = {name: domain.extremes()[0] for name, domain in parsed.space.items()}
    config = parsed.trial_config(first, parsed.seeds[0])
    swept = {name: f"swept: {domain.to_yaml()}" for name, domain in parsed.space.items()}
    table, differing = recipe_table(config.to_dict(), config.benchmark, swept)
    console.print(table)
    console.print(escape(differing_line(differing, config.benchmark)))


@app.command()
def store(
    root: Annotated[str, typer.Argument(help="a results root (the folder holding the sweeps), e.g. results")],
    prune_unused: Annotated[
        bool, typer.Option("--prune-unused", help="delete the entries no sweep folder under ROOT refers to")
    ] = False,
    min_age_minutes: Annotated[
        float,
        typer.Option(
            "--min-age-minutes",
            min=0,
            help="with --prune-unused, keep entries written more recently than this (a running sweep may "
            "not have recorded them yet)",
        ),
    ] = 60.0,
) -> None:
    """What the results root's store holds: base sessions and runs, their sizes, the sweeps using them."""
    from .storage import Location
    from .store import STORE_DIR, Store, sweep_references
    from .store import prune_unused as prune

    try:
        location = Location.of(root)
        if not location.is_dir():
            raise SpecError(
                f"{root} is not a folder: give a results root such as results (it holds {STORE_DIR}/)"
            )
        if prune_unused:
            removed = prune(location, min_age_s=60 * min_age_minutes)
            size = sum(r["bytes"] for r in removed)
            console.print(
                f"removed {len(removed)} unused entr{'y' if len(removed) == 1 else 'ies'} ({_size(size)})"
            )
        records, refs = Store(location).contents(), sweep_references(location)
    except (CKPDError, OSError) as exc:
        raise _fail(exc) from None
    _print_store(records, refs, location)


def _print_store(records: list[dict], refs: dict, location) -> None:
    """Base sessions one per line; runs grouped by the sweeps that use them."""
    bases = [r for r in records if r["kind"] == "base"]
    view = Table(title=f"base sessions in {location}/store")
    for column in ("key", "size", "used by"):
        view.add_column(column)
    for record in bases:
        view.add_row(
            record["key"],
            _size(record["bytes"]),
            ", ".join(sorted(refs.get(("base", record["key"]), ()))) or "-",
        )
    console.print(view)
    groups: dict[tuple[str, bool], list[dict]] = {}
    for record in (r for r in records if r["kind"] == "trial"):
        users = ", ".join(sorted(refs.get(("trial", record["key"]), ()))) or "-"
        groups.setdefault((users, record["complete"]), []).append(record)
    runs = Table(title=f"runs in {location}/store")
    for column in ("used by", "state", "runs", "size"):
        runs.add_column(column)
    for (users, complete), members in sorted(groups.items()):
        state = "complete" if complete else "unfinished (resumable)"
        runs.add_row(users, state, str(len(members)), _size(sum(r["bytes"] for r in members)))
    console.print(runs)
    unused = [r for r in records if (r["kind"], r["key"]) not in refs]
    total, unused_size = _size(sum(r["bytes"] for r in records)), _size(sum(r["bytes"] for r in unused))
    console.print(
        f"{len(bases)} base session(s), {len(records) - len(bases)} run(s), {total} in all; "
        f"{len(unused)} entr{'y' if len(unused) == 1 else 'ies'} no sweep refers to ({unused_size}): "
        f"`ckpd-sweep store {location} --prune-unused` deletes them"
    )


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


@app.command("check-cluster")
def check_cluster(
    file: Annotated[Path, typer.Argument(help="Ray cluster launcher YAML")] = Path("cluster.yaml"),
) -> None:
    """Check a Ray cluster config offline as `ray up` does, and that every node installs ckpd-sweep."""
    from .cluster import check_cluster_config

    try:
        summary, notes = check_cluster_config(file)
    except CKPDError as exc:
        raise _fail(exc) from None
    console.print(f"[green]ok[/green] {escape(summary)}", soft_wrap=True)
    for note in notes:
        console.print(f"note: {escape(note)}", soft_wrap=True)


def _print_verdict(summary, spec_hint: str) -> None:
    """The configurations' statistics as a table, then what may be concluded from them."""
    ranking, comparison = summary.ranking, summary.verdict.comparison
    if not ranking.empty:
        view = Table(title=f"completed configurations by {comparison.objective.label} (values in %)")
        for column in [
            *comparison.params,
            "n_seeds",
            "mean",
            "95% interval",
            "diff_vs_best",
            "p_adj",
            "tied",
        ]:
            view.add_column(column, justify="right")
        for i, row in enumerate(ranking.head(15).itertuples(index=False)):
            values = row._asdict()
            interval = f"[{100 * values['ci_low']:.2f}, {100 * values['ci_high']:.2f}]"
            p = values["p_adj"]
            view.add_row(
                *(escape(str(values[p_])) for p_ in comparison.params),
                str(values["n_seeds"]),
                f"{100 * values['mean']:.2f}",
                "n/a" if values["n_seeds"] < 2 else interval,
                "-" if i == 0 else f"{100 * values['diff_vs_best']:+.2f}",
                "-" if i == 0 else ("n/a" if p != p else f"{p:.3g}"),
                comparison.reference if i == 0 else ("yes" if values["tied_with_best"] else "no"),
            )
        console.print(view)
    for line in summary.verdict.lines(spec_hint):
        console.print(escape(line), soft_wrap=True)


def _print_outcome(outcome, spec_hint: str = "the spec") -> None:
    counts = outcome.summary.counts
    console.print(
        f"\nfinished in {outcome.wall_s:.0f}s: {counts['completed']} runs completed, "
        f"{counts['pruned']} pruned (by the Optuna pruner), {counts['failed']} failed; "
        f"base session trained {outcome.base_trainings} time(s) for the whole sweep",
        soft_wrap=True,
    )
    console.print(outcome.summary.compute.line(outcome.base_pretrain_s), soft_wrap=True)
    _print_verdict(outcome.summary, spec_hint)
    console.print(
        f"results: {outcome.results_dir}  (pandas.read_parquet('{outcome.results_dir / 'sessions'}'); "
        f"optuna study: {outcome.results_dir / 'optuna.journal'})",
        soft_wrap=True,
    )
