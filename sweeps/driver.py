"""Start, join and resume sweeps: Ray, the shared base sessions, the Tuner with Optuna search and pruning."""

from __future__ import annotations

import gc
import logging
import os
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ckpd_core.config import BASE_SESSION_FIELDS
from ckpd_core.data import count_sessions

from .base_sessions import (
    BaseSessionLock,
    base_checkpoint,
    base_checkpoint_path,
    ensure_base_session,
    start_registry,
    train_if_missing,
)
from .callback import SweepResultsCallback
from .folder import (
    BASE_DIR,
    TUNE_DIR,
    create_sweep_folder,
    open_sweep_folder,
    reuses_store,
    sweep_location,
)
from .progress import ProgressPrinter
from .scheduler import OptunaPruningScheduler
from .searcher import OptunaSweepSearcher
from .spec import SpecError, SweepSpec
from .storage import Location
from .store import Store
from .study import STUDY_FILE, SweepStudies
from .summary import SweepSummary, summarize
from .trainable import ckpd_trainable

log = logging.getLogger(__name__)


@dataclass
class LaunchOutcome:
    results_dir: Location
    summary: SweepSummary
    base_trainings: int
    wall_s: float
    base_pretrain_s: float = 0.0


def _quiet_tune() -> None:
    """Settings for Tune set before it starts (they are read from the environment)."""
    # One checkpoint per session is the point (resume after any session), so Tune's warning about
    # frequent experiment snapshots is noise here.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Our own progress lines replace Tune's tables; rows hold lists, which TensorBoard cannot log.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")


def _init_ray(address: str | None, num_cpus: int | None) -> bool:
    """Start a local Ray (or join ``address``); returns whether this call started it."""
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "logging_level": logging.WARNING,
        "log_to_driver": False,
    }
    if address:
        _check_reachable(address)
        kwargs["address"] = address
    else:  # always a new local Ray: never join (and fail on) one that something else left running
        kwargs.update(address="local", num_cpus=num_cpus or os.cpu_count())
    try:
        ray.init(**kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        if not address:
            raise
        raise _unreachable(address, exc) from None
    return True


def _check_reachable(address: str, timeout_s: float = 10.0) -> None:
    """Fail fast on a ``host:port`` nobody listens on (Ray itself retries for minutes)."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto" and other forms Ray resolves itself
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise _unreachable(address, exc) from None


def _unreachable(address: str, exc: Exception) -> SpecError:
    return SpecError(
        f"cannot join the Ray cluster at --address {address}: {exc}. Start it first "
        "(`ray start --head`, or `ray up cluster.yaml` then `ray attach`), or leave out --address "
        "to run on a local Ray"
    )


def _num_sessions(spec: SweepSpec) -> int:
    config = spec.trial_config({k: d.extremes()[0] for k, d in spec.space.items()}, spec.seeds[0])
    return count_sessions(config.benchmark, **config.benchmark_kwargs)  # the driver may not hold the data


def _shutdown_ray() -> None:
    """Collect what still refers to Ray objects (Tune's trials, object refs) and then disconnect:
    a reference released after the core worker is gone can crash the interpreter at exit."""
    import ray

    gc.collect()
    ray.shutdown()


def _start_base_sessions(
    spec: SweepSpec, base_dir: Location, progress: ProgressPrinter, local: bool
) -> Callable[[], tuple[int, float]]:
    """Start training every base session the sweep needs, once each; returns a wait() that gives how
    many were trained and how long that took.

    Possible when no swept setting changes the base session (then the keys are one per seed);
    otherwise trials train them on demand, still once per key under a file lock. On a local CPU run
    the driver trains them in a thread, holding their locks from before the first trial starts, so
    trial workers start up meanwhile and then wait for them; elsewhere they are Ray tasks with the
    trials' resources (so they land on GPU nodes).
    """
    import ray

    if set(spec.space) & set(BASE_SESSION_FIELDS):
        return lambda: (0, 0.0)
    first = {k: d.extremes()[0] for k, d in spec.space.items()}
    configs = {}
    for seed in spec.seeds:
        config = spec.trial_config(first, seed)
        configs.setdefault(config.base_session_key(), config)
    todo = [c for c in configs.values() if not base_checkpoint(c, base_dir).exists()]
    if not todo:
        return lambda: (0, 0.0)
    progress.note(f"training {len(todo)} shared base session(s) before the trials start")
    cpu, gpu = spec.resources.get("cpu", 1), spec.resources.get("gpu", 0)
    if local and not gpu and base_dir.is_local:
        locks = [BaseSessionLock(base_checkpoint_path(c, base_dir)) for c in todo]
        threads = max(1, int(ray.cluster_resources().get("CPU", 1)))
        pool = ThreadPoolExecutor(max_workers=1)
        return pool.submit(_train_holding_locks, todo, locks, base_dir, threads).result
    largest_node = max(n["Resources"].get("CPU", 0) for n in ray.nodes() if n["Alive"])
    if not gpu:  # each base session gets its share of the cluster, within one node
        cpu = max(cpu, min(int(ray.cluster_resources().get("CPU", 1)) // len(todo), largest_node))
    remote = ray.remote(_train_base).options(num_cpus=cpu, num_gpus=gpu)
    start = time.perf_counter()
    refs = [remote.remote(c, base_dir, max(1, int(cpu))) for c in todo]
    return lambda: (sum(ray.get(refs)), time.perf_counter() - start)


def _train_holding_locks(configs: list, locks: list[BaseSessionLock], base_dir: Location, threads: int):
    import torch

    torch.set_num_threads(threads)
    start, trained = time.perf_counter(), 0
    for config, lock in zip(configs, locks, strict=True):
        try:
            trained += train_if_missing(config, base_checkpoint_path(config, base_dir))
        finally:
            lock.release()
    return trained, time.perf_counter() - start


def _train_base(config, base_dir: Location, threads: int) -> bool:
    import torch

    torch.set_num_threads(threads)
    return ensure_base_session(config, base_dir)[1]


def _tuner_parts(spec: SweepSpec, results_dir: Location, progress: ProgressPrinter):
    num_sessions = _num_sessions(spec)
    studies = SweepStudies(results_dir / STUDY_FILE, spec.name, spec.mode)
    searcher = OptunaSweepSearcher(spec, studies, num_sessions)
    scheduler = OptunaPruningScheduler(spec, studies, num_sessions)
    callback = SweepResultsCallback(results_dir, spec.name, studies, num_sessions, progress)
    return num_sessions, searcher, scheduler, callback


def _base_dir(results_dir: Location, reuse: bool) -> Location:
    """Where the sweep's base sessions live: the root's store, or the sweep's own ``base/`` without reuse."""
    return Store(results_dir.parent).base_dir if reuse else results_dir / BASE_DIR


def _trainable(spec: SweepSpec, results_dir: Location, reuse: bool, share_base: bool = True):
    from ray import tune

    resources = {"cpu": spec.resources.get("cpu", 1), "gpu": spec.resources.get("gpu", 0)}
    fn = tune.with_parameters(
        ckpd_trainable,
        fixed=spec.trial,
        sweep=spec.name,
        store_root=results_dir.parent.uri if reuse else None,
        base_dir=_base_dir(results_dir, reuse).uri if share_base else None,
        threads=max(1, int(resources["cpu"])),
    )
    return tune.with_resources(fn, resources)


def _storage(location: Location) -> dict[str, Any]:
    """Ray Tune's storage arguments for a sweep folder: a local path, or a path on a remote filesystem."""
    if location.is_local:
        return {"storage_path": str(location.local_path)}
    return {"storage_path": location.path, "storage_filesystem": location.fs}


def launch(
    spec: SweepSpec,
    results_root: str | os.PathLike | None = None,
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    quiet: bool = False,
    share_base: bool = True,
    reuse: bool = True,
) -> LaunchOutcome:
    """Run the sweep described by ``spec``; results go to ``<results_root or spec.results>/<name>``.

    The results root may be a local folder or a URI such as ``s3://bucket/sweeps`` (see ``storage``).
    Base sessions and runs already in the root's store are reused, and what is computed is stored;
    ``reuse=False`` computes everything again and stores nothing (a timing or reproducibility check).
    ``share_base=False`` makes every trial train its own base session (only to measure what sharing saves).
    """
    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    results_dir = sweep_location(spec, results_root)
    start = time.perf_counter()
    created = create_sweep_folder(results_dir, spec, reuse)
    base_dir = _base_dir(results_dir, reuse)
    _quiet_tune()
    started_ray = False
    try:
        started_ray = _init_ray(address, num_cpus)
        start_registry(base_dir)
        progress = ProgressPrinter(spec.objective, spec.mode, quiet=quiet)
        num_sessions, searcher, scheduler, callback = _tuner_parts(spec, results_dir, progress)
        progress.total = searcher.total_trials
        wait_for_bases = (
            _start_base_sessions(spec, base_dir, progress, local=address is None)
            if share_base
            else lambda: (0, 0.0)
        )
    except BaseException:
        if started_ray:
            _shutdown_ray()
        for leftover in created:  # no trial has run: leave nothing half-made behind
            leftover.delete()
        raise
    try:
        tune.Tuner(
            _trainable(spec, results_dir, reuse, share_base),
            tune_config=tune.TuneConfig(
                metric=spec.metric,
                mode=spec.mode,
                search_alg=searcher,
                scheduler=scheduler,
                num_samples=searcher.total_trials,
                max_concurrent_trials=spec.max_concurrent,
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name=TUNE_DIR,
                **_storage(results_dir),
                failure_config=tune.FailureConfig(max_failures=spec.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                callbacks=[callback, JsonLoggerCallback(), CSVLoggerCallback()],
                verbose=0,
            ),
        ).fit()
        pretrained, pretrain_s = wait_for_bases()
    finally:
        wait_for_bases = None  # it may hold object refs of the base-session tasks
        if started_ray:
            _shutdown_ray()
    base_trainings = pretrained + callback.base_trainings
    wall = time.perf_counter() - start
    return LaunchOutcome(results_dir, summarize(results_dir, spec), base_trainings, wall, pretrain_s)


def resume(
    results_dir: str | os.PathLike | Location,
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    quiet: bool = False,
) -> LaunchOutcome:
    """Continue a sweep whose driver died: finished sessions are neither rerun nor written twice."""
    from ray import tune

    results_dir, spec = open_sweep_folder(results_dir, resume=True)
    reuse = reuses_store(results_dir)
    start = time.perf_counter()
    _quiet_tune()
    started_ray = _init_ray(address, num_cpus)
    try:
        start_registry(_base_dir(results_dir, reuse))
        storage = _storage(results_dir / TUNE_DIR)
        tune.Tuner.restore(
            storage["storage_path"],
            trainable=_trainable(spec, results_dir, reuse),
            resume_unfinished=True,
            resume_errored=True,
            storage_filesystem=storage.get("storage_filesystem"),
        ).fit()
    finally:
        if started_ray:
            _shutdown_ray()
    return LaunchOutcome(results_dir, summarize(results_dir, spec), 0, time.perf_counter() - start)
