"""Base sessions shared by all trials of a sweep: trained once per base key, stored with the sweep.

With results in a local (or shared, NFS-mounted) folder the checkpoints live in ``<results>/base``
and a file lock per key makes trials that ask at once wait for the one that trains. With results on
a remote URI (a cluster without a shared disk) they are uploaded there and each node keeps a
downloaded copy in a local cache; a file lock orders the trials of one node, and a named Ray actor
(``BaseSessionRegistry``) hands the training of each key to one trial in the cluster.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import tempfile
import threading
import time
import uuid
from pathlib import Path

import ray

from ckpd_core import TrialConfig, train_base_session

from .storage import Location

log = logging.getLogger(__name__)
CACHE_ENV = "CKPD_SWEEP_CACHE"
LEASE_S = 60.0  # a base-session claim not renewed for this long is given to another trial


def base_checkpoint(config: TrialConfig, base_dir: str | os.PathLike | Location) -> Location:
    """Where the sweep stores the base session of ``config``."""
    return Location.of(base_dir) / f"base-{config.base_session_key()}.pt"


def base_checkpoint_path(config: TrialConfig, base_dir: str | os.PathLike | Location) -> Path:
    """The local file a trial on this node loads: the stored checkpoint itself, or this node's copy of it."""
    stored = base_checkpoint(config, base_dir)
    return stored.local_path if stored.is_local else node_copy(stored, Location.of(base_dir))


def node_copy(stored: Location, scope: Location) -> Path:
    """This node's local path for the remote file ``stored``, in a cache folder of its own per ``scope``."""
    return node_cache_dir() / hashlib.sha1(scope.uri.encode()).hexdigest()[:16] / stored.name


def node_cache_dir() -> Path:
    """Where a node keeps its copies of remote base sessions: ``$CKPD_SWEEP_CACHE``, else a temp folder."""
    return Path(os.environ.get(CACHE_ENV) or Path(tempfile.gettempdir()) / "ckpd-sweep-base")


def ensure_base_session(config: TrialConfig, base_dir: str | os.PathLike | Location) -> tuple[Path, bool]:
    """The local base checkpoint for ``config``, trained here only if nobody has trained it yet.

    Returns the local path and whether this call trained it.
    """
    path = base_checkpoint_path(config, base_dir)
    if path.exists():
        return path, False
    with BaseSessionLock(path):
        stored = base_checkpoint(config, base_dir)
        if stored.is_local:
            return path, train_if_missing(config, path)
        return path, _fetch_or_train(config, path, stored)


def train_if_missing(config: TrialConfig, path: Path) -> bool:
    """Train the base session into ``path`` unless it is there; call it holding the path's lock."""
    if path.exists():
        return False
    log.info("training base session %s", path.name)
    train_base_session(config, path)
    return True


def _fetch_or_train(config: TrialConfig, path: Path, stored: Location, poll_s: float = 2.0) -> bool:
    """Download the stored base session, or train and upload it if this call wins the cluster-wide claim."""
    registry, me = _registry(stored), uuid.uuid4().hex
    while not path.exists():
        if stored.exists():
            stored.download(path)
            return False
        if registry is None or ray.get(registry.claim.remote(stored.name, me)):
            with _Lease(registry, stored.name, me):
                if stored.exists():  # uploaded between the check above and the claim
                    continue
                trained = train_if_missing(config, path)
                stored.upload(path)
            return trained
        time.sleep(poll_s)  # another node is training it
    return False


@ray.remote(num_cpus=0)
class BaseSessionRegistry:
    """Who trains which base session, for nodes that share no disk and so no file lock.

    A claim is a lease its holder renews while it trains; one not renewed for ``lease_s`` (its
    process or node died) goes to the next caller.
    """

    def __init__(self, lease_s: float = LEASE_S) -> None:
        self.lease_s = lease_s
        self._claims: dict[str, tuple[str, float]] = {}

    def claim(self, key: str, owner: str) -> bool:
        holder, renewed = self._claims.get(key, (owner, 0.0))
        if holder != owner and time.monotonic() - renewed < self.lease_s:
            return False
        self._claims[key] = (owner, time.monotonic())
        return True

    def release(self, key: str, owner: str) -> None:
        if self._claims.get(key, (None,))[0] == owner:
            del self._claims[key]


class _Lease:
    """Renews a registry claim from a background thread while the base session trains; releases it after."""

    def __init__(self, registry, key: str, owner: str) -> None:
        self.registry, self.key, self.owner = registry, key, owner
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, daemon=True)

    def _renew(self) -> None:
        while not self._stop.wait(LEASE_S / 4):
            self.registry.claim.remote(self.key, self.owner)

    def __enter__(self) -> _Lease:
        if self.registry is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.registry is not None:
            self._stop.set()
            self.registry.release.remote(self.key, self.owner)


def start_registry(base_dir: str | os.PathLike | Location) -> None:
    """Create the claim registry of a sweep whose base sessions live on a remote store (driver side).

    The driver keeps its handle, so the registry lives as long as the driver's Ray job.
    """
    location = Location.of(base_dir)
    if not location.is_local:
        name = _registry_name(location)
        _REGISTRIES[name] = BaseSessionRegistry.options(name=name, get_if_exists=True).remote()


_REGISTRIES: dict[str, ray.actor.ActorHandle] = {}


def _registry(stored: Location):
    if not ray.is_initialized():
        return None
    try:
        return ray.get_actor(_registry_name(stored.parent))
    except ValueError:
        return None


def _registry_name(base_dir: Location) -> str:
    return "ckpd-sweep-base-" + hashlib.sha1(base_dir.uri.encode()).hexdigest()[:16]


class BaseSessionLock:
    """Exclusive lock on one local base checkpoint (``<checkpoint>.lock``), held until ``release``."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path.with_suffix(".lock"), "w")  # noqa: SIM115 - released in release()
        fcntl.flock(self._file, fcntl.LOCK_EX)

    def release(self) -> None:
        fcntl.flock(self._file, fcntl.LOCK_UN)
        self._file.close()

    def __enter__(self) -> BaseSessionLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
