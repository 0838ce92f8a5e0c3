"""The standard FSCIL session lists shipped as package data (``ckpd_core/splits/<dataset>/*.txt``)."""

from __future__ import annotations

import re
from importlib import resources
from typing import TYPE_CHECKING

from ..errors import DataError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

SPLIT_DATASETS = ("cifar100", "mini_imagenet", "cub200")
_SESSION_FILE = re.compile(r"session_(\d+)\.txt")


def splits_root() -> Traversable:
    """The folder holding one sub-folder of lists per dataset, plus SOURCE.md and SHA256SUMS."""
    return resources.files("ckpd_core") / "splits"


def read_split(dataset: str, name: str) -> list[str]:
    """The entries of one list file, without line endings (CRLF copies read the same) or blank lines."""
    path = splits_root() / dataset / name
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise DataError(
            f"split list {dataset}/{name} is not in the installed package: reinstall ckpd-sweep"
        ) from exc
    return [line.strip() for line in text.splitlines() if line.strip()]


def num_sessions(dataset: str) -> int:
    """How many sessions (base included) the standard protocol of ``dataset`` has."""
    names = [entry.name for entry in (splits_root() / dataset).iterdir()]
    found = sorted(int(m.group(1)) for m in map(_SESSION_FILE.fullmatch, names) if m)
    if not found or found != list(range(1, len(found) + 1)):
        raise DataError(f"split lists of {dataset} are incomplete ({names}): reinstall ckpd-sweep")
    return len(found)


def session_lists(dataset: str) -> tuple[list[list[str]], list[list[str]]]:
    """Per session, its training entries (``session_t.txt``) and its new classes' test entries."""
    sessions = range(1, num_sessions(dataset) + 1)
    return (
        [read_split(dataset, f"session_{t}.txt") for t in sessions],
        [read_split(dataset, f"test_{t}.txt") for t in sessions],
    )
