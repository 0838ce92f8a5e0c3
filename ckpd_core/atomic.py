"""Files published whole: a reader sees the old file or the new one, never half of one, even after a crash."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A hidden temporary path beside ``path`` to write to; on success it is flushed to disk and renamed
    onto ``path`` (and the rename made durable), on failure removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        yield tmp
        _fsync(tmp, os.O_RDONLY)
        _publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    if os.name == "posix":
        _fsync(path.parent, os.O_RDONLY)


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path``, published whole."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def _fsync(path: Path, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish(tmp: Path, final: Path) -> None:
    """The moment a finished file becomes visible to readers (an atomic rename on POSIX)."""
    os.replace(tmp, final)
