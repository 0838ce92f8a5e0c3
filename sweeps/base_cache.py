"""Base sessions shared by all trials of a sweep: trained once per base key, stored with the sweep."""

from __future__ import annotations

import fcntl
import logging
from pathlib import Path

from ckpd_core import TrialConfig, train_base_session

log = logging.getLogger(__name__)


def base_checkpoint_path(config: TrialConfig, base_dir: str | Path) -> Path:
    return Path(base_dir) / f"base-{config.base_session_key()}.pt"


def ensure_base_session(config: TrialConfig, base_dir: str | Path) -> tuple[Path, bool]:
    """The base checkpoint for ``config``, trained here only if nobody has trained it yet.

    An exclusive file lock per base key makes concurrent trials (processes on one node, or nodes
    sharing the folder) wait for the one that trains instead of training it again. Returns the
    path and whether this call trained it.
    """
    path = base_checkpoint_path(config, base_dir)
    if path.exists():
        return path, False
    with BaseSessionLock(path):
        return path, train_if_missing(config, path)


def train_if_missing(config: TrialConfig, path: Path) -> bool:
    """Train the base session into ``path`` unless it is there; call it holding the path's lock."""
    if path.exists():
        return False
    log.info("training base session %s", path.name)
    train_base_session(config, path)
    return True


class BaseSessionLock:
    """Exclusive lock on one base checkpoint (``<checkpoint>.lock``), held until ``release``."""

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
