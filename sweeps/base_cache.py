"""Base sessions shared by all trials of a sweep: trained once per base key, stored with the sweep.

With results in a local (or shared, NFS-mounted) folder the checkpoints live in ``<results>/base``
and a file lock per key makes trials that ask at once wait for the one that trains. With results on
a remote URI (a cluster without a shared disk) they are uploaded there, and each node keeps a
downloaded copy in a local cache; the launcher trains them before the trials start, so the lock only
has to order the trials of one node.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import tempfile
from pathlib import Path

from ckpd_core import TrialConfig, train_base_session

from .storage import Location

log = logging.getLogger(__name__)


def base_checkpoint(config: TrialConfig, base_dir: str | os.PathLike | Location) -> Location:
    """Where the sweep stores the base session of ``config``."""
    return Location.of(base_dir) / f"base-{config.base_session_key()}.pt"


def base_checkpoint_path(config: TrialConfig, base_dir: str | os.PathLike | Location) -> Path:
    """The local file a trial on this node loads: the stored checkpoint itself, or this node's copy of it."""
    stored = base_checkpoint(config, base_dir)
    if stored.is_local:
        return stored.local_path
    digest = hashlib.sha1(Location.of(base_dir).uri.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / "ckpd-sweep-base" / digest / stored.name


def ensure_base_session(config: TrialConfig, base_dir: str | os.PathLike | Location) -> tuple[Path, bool]:
    """The local base checkpoint for ``config``, trained here only if nobody has trained it yet.

    Returns the local path and whether this call trained it.
    """
    path = base_checkpoint_path(config, base_dir)
    if path.exists():
        return path, False
    with BaseSessionLock(path):
        return path, train_if_missing(config, path, base_checkpoint(config, base_dir))


def train_if_missing(config: TrialConfig, path: Path, stored: Location | None = None) -> bool:
    """Make ``path`` hold the base session, from the store or by training (then stored); hold its lock."""
    if path.exists():
        return False
    if stored is not None and not stored.is_local and stored.exists():
        stored.download(path)
        return False
    log.info("training base session %s", path.name)
    train_base_session(config, path)
    if stored is not None and not stored.is_local:
        stored.upload(path)
    return True


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
