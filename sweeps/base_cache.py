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
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if path.exists():
                return path, False
            log.info("training base session %s", path.name)
            train_base_session(config, path)
            return path, True
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
