"""Start, join and resume sweeps: Ray, the shared base sessions, the Tuner with Optuna search and pruning."""

from __future__ import annotations

import gc
import logging
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any, ClassVar

from ray import tune

from ckpd_core.config import BASE_SESSION_FIELDS

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
    mark_finished,
    open_sweep_folder,
    reuses_store,
    sweep_location,
)
from .progress import ProgressPrinter
from .resources import check_local, cluster_fit, local_resources, request
from .results import read_sessions, read_trials
from .scheduler import OptunaPruningScheduler
from .searcher import OptunaSweepSearcher
from .spec import SpecError, SweepSpec
from .storage import Location
from .store import Store
from .study import STUDY_FILE, SweepStudies
from .summary import SweepSummary, summarize
from .trackers import check_trackers, tracker_callbacks
from .trainable import ckpd_trainable

log = logging.getLogger(__name__)


@dataclass
class LaunchOutcome:
    results_dir: Location
    summary: SweepSummary
    base_trainings: int
    wall_s: float
    base_pretrain_s: float = 0.0


class SweepStopped(Exception):
    """A launch or resume stopped by SIGINT or SIGTERM. ``resumable``: its trials had started, Tune saved
    its state and ``ckpd-sweep resume`` continues it; otherwise nothing was left behind."""

    def __init__(self, results_dir: Location, signum: int, resumable: bool) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.results_dir, self.signum, self.resumable = results_dir, signum, resumable


class _Signals:
    """SIGINT (Ctrl-C) and SIGTERM while a sweep runs stop it as Ctrl-C stops ``Tuner.fit``: at Tune's
    next step (``_ForwardStop``) its state is saved and its trials stopped; a second signal stops at
    once. Installed after ``ray.init``, which sets a SIGTERM handler of its own."""

    received: list[int] = []  # the signals of the running sweep (process-wide, as signals are)

    def __init__(self, progress: ProgressPrinter) -> None:
        self.progress = progress
        self._saved: dict[int, Any] = {}

    def install(self) -> None:
        _Signals.received.clear()
        if threading.current_thread() is not threading.main_thread():
            return  # only the main thread can have handlers (a sweep launched from a thread stops by Ray)
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
            self._saved[signum] = signal.getsignal(signum)
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGTERM, self._handle)

    def restore(self) -> None:
        for signum, handler in self._saved.items():
            signal.signal(signum, handler)
        self._saved.clear()

    @property
    def signum(self) -> int | None:
        return _Signals.received[0] if _Signals.received else None

    def _handle(self, signum: int, frame) -> None:
        if _Signals.received:
            raise KeyboardInterrupt
        _Signals.received.append(signum)
        name = signal.Signals(signum).name
        self.progress.warn(
            f"{name}: stopping the sweep, every reported session is kept (a second one: at once)"
        )


class _ForwardStop(tune.Callback):
    """At each of Tune's steps: once a signal came, ask Tune to stop as Ctrl-C asks it (Tune's SIGINT
    handler is off: it would hide the signal from us; its SIGUSR1 handler does the same thing)."""

    def on_step_begin(self, iteration: int, trials: list, **info) -> None:
        if not _Signals.received:
            return
        for pretraining in _Pretraining.running:  # counted before Tune saves the state a resume reads
            pretraining.settle()
        stop = signal.getsignal(signal.SIGUSR1)
        if not callable(stop):  # a Ray without it: stop at once
            raise KeyboardInterrupt
        stop(signal.SIGUSR1, None)


# Tune's messages that ours replace: how to continue a stopped sweep (`ckpd-sweep resume`, not
# `Tuner.restore`), the results callback's one warning about runs waiting for resources (not one a minute).
_REPLACED = {
    "ray.tune.tune": ("Stop signal received", "Experiment has been interrupted", "Trials did not complete"),
    "ray.tune.analysis.experiment_analysis": ("Failed to fetch metrics",),  # a run stopped before reporting
    "ray.tune.execution.insufficient_resources_manager": (
        "Ignore this message if the cluster is autoscaling",
    ),
}


def _not_replaced(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith(_REPLACED.get(record.name, ()))


def _quiet_tune() -> None:
    """Settings for Tune set before it starts (most are read from the environment)."""
    for name in _REPLACED:
        logging.getLogger(name).addFilter(_not_replaced)
    # One checkpoint per session is the point (resume after any session), so Tune's warning about
    # frequent experiment snapshots is noise here.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Our own progress lines replace Tune's tables; ``--log tensorboard`` adds TensorBoard's logger (rows
    # hold lists, which it cannot log: it gets the session metrics, see ``trackers``).
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # _Signals handles SIGINT (and SIGTERM)


def _init_ray(address: str | None, local: dict[str, float] | None) -> bool:
    """Start a local Ray with the ``local`` resources (or join ``address``); returns whether this call
    started it."""
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
        kwargs.update(address="local", num_cpus=local["CPU"], num_gpus=local["GPU"])
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


def _shutdown_ray() -> None:
    """Collect what still refers to Ray objects (Tune's trials, object refs) and then disconnect:
    a reference released after the core worker is gone can crash the interpreter at exit."""
    import ray

    gc.collect()
    ray.shutdown()


def _start_base_sessions(
    spec: SweepSpec,
    base_dir: Location,
    progress: ProgressPrinter,
    callback: SweepResultsCallback,
    local: bool,
) -> _Pretraining:
    """Start training every base session the sweep needs, once each, as Ray tasks.

    Possible when no swept setting changes the base session (then the keys are one per seed);
    otherwise trials train them on demand, still once per key under a file lock. On a local CPU run
    the tasks reserve no CPU and the driver holds their locks from before the first trial starts, so
    trial workers start up meanwhile and then wait for them; they run one after the other with every
    CPU (the same threads, so the same numbers, however many there are). Elsewhere they get the
    trials' resources (so they land on GPU nodes). Each one trained is counted by ``callback`` as soon
    as it is done.
    """
    import ray

    if set(spec.space) & set(BASE_SESSION_FIELDS):
        return _Pretraining()
    first = {k: d.extremes()[0] for k, d in spec.space.items()}
    configs = {}
    for seed in spec.seeds:
        config = spec.trial_config(first, seed)
        configs.setdefault(config.base_session_key(), config)
    todo = [c for c in configs.values() if not base_checkpoint(c, base_dir).exists()]
    if not todo:
        return _Pretraining()
    progress.note(f"training {len(todo)} shared base session(s) before the trials start")
    cpu, gpu = spec.resources.get("cpu", 1), spec.resources.get("gpu", 0)
    total = int(ray.cluster_resources().get("CPU", 1))
    hold = local and not gpu and base_dir.is_local
    if hold:
        cpu = total
    elif not gpu:  # each base session gets its share of the cluster, within one node
        largest_node = max(n["Resources"].get("CPU", 0) for n in ray.nodes() if n["Alive"])
        cpu = max(cpu, min(total // len(todo), largest_node))
    locks = [BaseSessionLock(base_checkpoint_path(c, base_dir)) if hold else None for c in todo]
    remote = ray.remote(_train_base).options(num_cpus=0 if hold else cpu, num_gpus=gpu)
    started, previous = _Pretraining(), None
    for config, lock in zip(todo, locks, strict=True):
        ref = remote.remote(config, base_dir, max(1, int(cpu)), locked=hold, after=previous)
        previous = ref if hold else None  # Ray starts a task once the refs it is given are ready
        started.refs.append(ref)
        started.done.append(threading.Event())
        key, stored = config.base_session_key(), base_checkpoint(config, base_dir)
        done = partial(_base_session_done, callback, key, lock, stored, started.done[-1])
        ref.future().add_done_callback(done)
    _Pretraining.running[:] = [started]
    return started


@dataclass
class _Pretraining:
    """The base-session tasks the driver started, and for each an event set once it has been counted."""

    refs: list = field(default_factory=list)
    done: list[threading.Event] = field(default_factory=list)
    running: ClassVar[list[_Pretraining]] = []  # this process's, for a stop to settle (as signals are)

    def wait(self) -> float:
        """The seconds they took to train, once all are done and counted."""
        import ray

        seconds = sum(s for _, s in ray.get(self.refs))
        for event in self.done:
            event.wait()
        return seconds

    def cancel(self) -> None:
        """Stop those still training while Ray can still tell their owner (this driver) about it."""
        import ray

        for ref in self.refs:
            ray.cancel(ref, force=True)

    def settle(self, timeout_s: float = 10.0) -> None:
        """Cancel those still training and wait until every one has been counted."""
        self.cancel()
        for event in self.done:
            event.wait(timeout_s)


def _base_session_done(
    callback: SweepResultsCallback, key: str, lock, stored: Location, event: threading.Event, future
) -> None:
    """A base-session task ended: count it if it trained, release its lock (in Ray's callback thread).

    A task cancelled by a stop may have written its checkpoint just before: while the driver holds the
    lock nobody else can have, so the checkpoint being there (looked at before the release) says it trained.
    """
    try:
        if future.cancelled() or future.exception() is not None:
            trained = lock is not None and stored.exists()
        else:
            trained = future.result()[0]
        if lock is not None:
            lock.release()
        if trained:
            callback.count_base_training(key)
    finally:
        event.set()


def _train_base(config, base_dir: Location, threads: int, locked: bool, after=None) -> tuple[bool, float]:
    """Train one base session unless it is stored (``locked``: the driver holds its lock for this task;
    ``after``: the result of the task to run after); returns whether this trained it and the seconds
    training took."""
    import torch

    torch.set_num_threads(threads)
    start = time.perf_counter()
    if locked:
        trained = train_if_missing(config, base_checkpoint_path(config, base_dir))
    else:
        trained = ensure_base_session(config, base_dir)[1]
    return trained, time.perf_counter() - start if trained else 0.0


def _tuner_parts(spec: SweepSpec, results_dir: Location, progress: ProgressPrinter, address: str | None):
    num_sessions = spec.num_sessions
    studies = SweepStudies(results_dir / STUDY_FILE, spec.name, spec.mode)
    searcher = OptunaSweepSearcher(spec, studies, num_sessions)
    scheduler = OptunaPruningScheduler(spec, studies, num_sessions)
    callback = SweepResultsCallback(results_dir, spec.name, studies, num_sessions)
    _follow(callback, spec, progress, address)
    trackers, notes = tracker_callbacks(spec.log, spec, results_dir, studies, num_sessions)
    for note in notes:
        progress.note(note)
    return searcher, scheduler, callback, trackers


def _follow(callback: SweepResultsCallback, spec: SweepSpec, progress: ProgressPrinter, address: str | None):
    """Let ``callback`` print to ``progress`` and, on a cluster, warn if runs wait for nodes none fit."""
    callback.on_event = progress
    callback.cluster_fit = partial(cluster_fit, request(spec)) if address else None


def _local_resources(spec: SweepSpec, address: str | None, num_cpus: int | None) -> dict[str, float] | None:
    """The resources of a local Ray, after checking that one run fits in them (None on a cluster)."""
    if address:
        return None
    local = local_resources(num_cpus)
    check_local(spec, local, num_cpus)
    return local


def _check_cluster(spec: SweepSpec, progress: ProgressPrinter) -> None:
    """Say which of the cluster's nodes and node types can take a run; refuse one that none ever can."""
    text, nodes, node_types = cluster_fit(request(spec))
    if nodes:
        progress.note(text)
    elif node_types is None:
        progress.warn(f"{text}: runs wait until a node that fits joins the cluster")
    elif not node_types:
        raise SpecError(
            f"{spec.path or '<sweep spec>'}: resources: {text}: lower resources, or add such nodes"
        )
    else:
        progress.note(f"{text}: runs wait until the autoscaler starts one")


def _fit(tuner, signals: _Signals, results_dir: Location) -> None:
    """``tuner.fit()``; raises SweepStopped if a signal stopped it."""
    try:
        tuner.fit()
    except KeyboardInterrupt:  # a second signal
        pass
    else:
        if signals.signum is None:
            return
    raise SweepStopped(results_dir, signals.signum or signal.SIGINT, resumable=True)


def _base_dir(results_dir: Location, reuse: bool) -> Location:
    """Where the sweep's base sessions live: the root's store, or the sweep's own ``base/`` without reuse."""
    return Store(results_dir.parent).base_dir if reuse else results_dir / BASE_DIR


def _trainable(spec: SweepSpec, results_dir: Location, reuse: bool, share_base: bool = True):
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
    Raises SweepStopped on SIGINT or SIGTERM.
    """
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    results_dir = sweep_location(spec, results_root)
    check_trackers(spec.log, results_dir)
    local = _local_resources(spec, address, num_cpus)
    start = time.perf_counter()
    created = create_sweep_folder(results_dir, spec, reuse)
    base_dir = _base_dir(results_dir, reuse)
    progress = ProgressPrinter(spec.objective, spec.mode, quiet=quiet)
    signals = _Signals(progress)
    _quiet_tune()
    started_ray, pretraining = False, _Pretraining()
    try:
        started_ray = _init_ray(address, local)
        signals.install()
        if address:
            _check_cluster(spec, progress)
        start_registry(base_dir)
        searcher, scheduler, callback, trackers = _tuner_parts(spec, results_dir, progress, address)
        progress.total, progress.num_sessions = searcher.total_trials, spec.num_sessions
        pretraining = (
            _start_base_sessions(spec, base_dir, progress, callback, local=address is None)
            if share_base
            else _Pretraining()
        )
        if signals.signum is not None:
            raise KeyboardInterrupt
    except BaseException as exc:
        signals.restore()
        pretraining.cancel()
        _Pretraining.running.clear()
        if started_ray:
            _shutdown_ray()
        for leftover in created:  # no trial has run: leave nothing half-made behind
            leftover.delete()
        if isinstance(exc, KeyboardInterrupt):
            raise SweepStopped(results_dir, signals.signum or signal.SIGINT, resumable=False) from None
        raise
    try:
        tuner = tune.Tuner(
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
                callbacks=[callback, *trackers, _ForwardStop(), JsonLoggerCallback(), CSVLoggerCallback()],
                verbose=0,
            ),
        )
        progress.start()
        _fit(tuner, signals, results_dir)
        pretrain_s = pretraining.wait()
        mark_finished(results_dir, True)
    finally:
        progress.stop()
        signals.restore()
        pretraining.cancel()
        _Pretraining.running.clear()
        tuner = pretraining = None  # they hold Ray objects (trials, the base-session tasks' refs)
        if started_ray:
            _shutdown_ray()
    wall = time.perf_counter() - start
    return LaunchOutcome(results_dir, summarize(results_dir, spec), callback.base_trainings, wall, pretrain_s)


def resume(
    results_dir: str | os.PathLike | Location,
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    quiet: bool = False,
) -> LaunchOutcome:
    """Continue a sweep whose driver died or was stopped: finished sessions are neither rerun nor
    written twice. Raises SweepStopped on SIGINT or SIGTERM."""
    results_dir, spec = open_sweep_folder(results_dir, resume=True)
    reuse = reuses_store(results_dir)
    local = _local_resources(spec, address, num_cpus)
    start = time.perf_counter()
    progress = ProgressPrinter(spec.objective, spec.mode, quiet=quiet)
    progress.total, progress.num_sessions = spec.max_runs, spec.num_sessions
    progress.resume_from(read_trials(results_dir), read_sessions(results_dir))
    signals = _Signals(progress)
    _quiet_tune()
    started_ray = _init_ray(address, local)
    try:
        signals.install()
        start_registry(_base_dir(results_dir, reuse))
        storage = _storage(results_dir / TUNE_DIR)
        tuner = tune.Tuner.restore(
            storage["storage_path"],
            trainable=_trainable(spec, results_dir, reuse),
            resume_unfinished=True,
            resume_errored=True,
            storage_filesystem=storage.get("storage_filesystem"),
        )
        callback = _results_callback(tuner)
        if callback is not None:
            _follow(callback, spec, progress, address)
        mark_finished(results_dir, False)
        progress.start()
        _fit(tuner, signals, results_dir)
        mark_finished(results_dir, True)
    finally:
        progress.stop()
        signals.restore()
        tuner = None
        if started_ray:
            _shutdown_ray()
    trained = callback.base_trainings if callback is not None else 0
    return LaunchOutcome(results_dir, summarize(results_dir, spec), trained, time.perf_counter() - start)


def _results_callback(tuner) -> SweepResultsCallback | None:
    """The results callback Tune restored with the sweep (a restore takes no new callbacks); None with a
    Ray Client address, where the Tuner runs on the cluster."""
    restored = tuner._local_tuner
    if restored is None:
        return None
    return next(c for c in restored.get_run_config().callbacks if isinstance(c, SweepResultsCallback))
