"""One content-addressed store for every sweep under a results root: nothing is computed twice.

``<root>/store/`` holds
- ``base/base-<base key>.pt``: base sessions, trained once per key for all sweeps under the root;
- ``trials/<trial key>.json``: a run's session rows so far, each with the sweep and trial that computed
  it and its compute seconds; the key digests the full trial configuration (seed included) and the
  method's code (``ckpd_core.code_digest``), so a code change makes old entries miss;
- ``trials/<trial key>.state-<n>.pt``: for a run that stopped before its last session (pruned,
  interrupted), its state after session ``n - 1``, so the next sweep that needs it continues from there.

An entry is published whole (``storage``) and names its state file, which is written before it, so a
writer killed at any point leaves either the previous entry or the new one, never a half-made one.
Entries are self-contained: deleting a sweep folder by hand never breaks another sweep.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ckpd_core import TrialConfig, code_digest

from .storage import Location

STORE_DIR = "store"
TRIAL_ENTRY = ".json"
MIN_AGE_S = (
    3600.0  # entries younger than this are kept by --prune-unused: a running sweep may not list them yet
)


def trial_key(config: TrialConfig, digest: str | None = None) -> str:
    """The store key of one run: every setting (the seed included) and the digest of the method's code."""
    values = {"config": config.to_dict(), "code": digest or code_digest()}
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:20]


@dataclass
class StoredTrial:
    """A run's rows as stored: complete when it has every session, else resumable from ``state``."""

    key: str
    config: dict[str, Any]
    code: str
    num_sessions: int
    rows: list[dict[str, Any]] = field(default_factory=list)  # each with "origin" and "seconds"
    state: str | None = None  # file name of the state after the last row (unfinished runs only)
    written_at: float = 0.0

    @property
    def complete(self) -> bool:
        return len(self.rows) >= self.num_sessions

    def to_json(self) -> str:
        return json.dumps(self.__dict__, default=str)

    @classmethod
    def from_json(cls, text: str) -> StoredTrial:
        return cls(**json.loads(text))


class Store:
    """The store under one results root (a local folder or a URI)."""

    def __init__(self, root: str | os.PathLike | Location) -> None:
        self.root = Location.of(root)
        self.location = self.root / STORE_DIR
        self.base_dir = self.location / "base"
        self.trials_dir = self.location / "trials"

    # -- trials ----------------------------------------------------------------------------------
    def load(self, key: str, need_state: bool = True) -> StoredTrial | None:
        """The stored run, or None when there is none (or, with ``need_state``, when it is unfinished and
        its state file is gone, so it cannot go on)."""
        entry = self.trials_dir / f"{key}{TRIAL_ENTRY}"
        if not entry.exists():
            return None
        stored = StoredTrial.from_json(entry.read_text())
        resumable = stored.state is not None and (self.trials_dir / stored.state).exists()
        if need_state and not stored.complete and not resumable:
            return None
        return stored

    def save(self, stored: StoredTrial, state_file: Path | None) -> None:
        """Publish ``stored``: the state file first (unfinished runs), the entry, then drop the old state."""
        previous = self.load(stored.key, need_state=False)
        stored.state = None
        if not stored.complete and state_file is not None:
            stored.state = f"{stored.key}.state-{len(stored.rows)}.pt"
            (self.trials_dir / stored.state).upload(state_file)
        stored.written_at = time.time()
        (self.trials_dir / f"{stored.key}{TRIAL_ENTRY}").write_text(stored.to_json())
        if previous is not None and previous.state and previous.state != stored.state:
            (self.trials_dir / previous.state).delete()

    def fetch_state(self, stored: StoredTrial, dest: Path) -> None:
        """Copy the state of an unfinished stored run to the local file ``dest``."""
        (self.trials_dir / stored.state).download(dest)

    @contextlib.contextmanager
    def claim(self, key: str) -> Iterator[None]:
        """Hold ``key`` while a run computes it, so two sweeps on one disk never compute it at once.

        A file lock next to the entry for a local root; for a root on a URI, a lock in this node's cache
        (runs on other nodes of another sweep may then compute the same key; the last one stored wins).
        """
        from .base_sessions import BaseSessionLock, node_copy

        entry = self.trials_dir / f"{key}{TRIAL_ENTRY}"
        with BaseSessionLock(entry.local_path if entry.is_local else node_copy(entry, self.root)):
            yield

    # -- what the store holds --------------------------------------------------------------------
    def contents(self) -> list[dict[str, Any]]:
        """One record per entry: kind (base / trial), key, bytes, age in seconds, complete (trials)."""
        records = []
        now = time.time()
        for info in self.base_dir.file_infos():
            if info.base_name.startswith("base-") and info.base_name.endswith(".pt"):
                key = info.base_name.removeprefix("base-").removesuffix(".pt")
                records.append(_record("base", key, [info], now, complete=True))
        infos = self.trials_dir.file_infos()
        states: dict[str, list] = {}
        for info in infos:
            if ".state-" in info.base_name:
                states.setdefault(info.base_name.split(".state-")[0], []).append(info)
        for info in infos:
            if info.base_name.endswith(TRIAL_ENTRY) and not info.base_name.startswith("."):
                key = info.base_name.removesuffix(TRIAL_ENTRY)
                stored = StoredTrial.from_json((self.trials_dir / info.base_name).read_text())
                records.append(_record("trial", key, [info, *states.get(key, [])], now, stored.complete))
        return records

    def delete(self, kind: str, key: str) -> None:
        """Remove one entry and whatever belongs to it (a trial's state files, a base session's lock)."""
        if kind == "base":
            (self.base_dir / f"base-{key}.pt").delete()
            return
        for info in self.trials_dir.file_infos():
            if info.base_name.startswith(f"{key}.") and not info.base_name.endswith(".lock"):
                (self.trials_dir / info.base_name).delete()


def _record(kind: str, key: str, infos: list, now: float, complete: bool) -> dict[str, Any]:
    newest = max((i.mtime.timestamp() if i.mtime else now) for i in infos)
    return {
        "kind": kind,
        "key": key,
        "bytes": sum(i.size or 0 for i in infos),
        "age_s": max(0.0, now - newest),
        "complete": complete,
    }


def sweep_references(root: str | os.PathLike | Location) -> dict[tuple[str, str], set[str]]:
    """Which sweep folders under ``root`` refer to which entries: ``(kind, key) -> {sweep, ...}``.

    Read from the sweeps' own Parquet (base keys of their runs, store keys of their session rows), so a
    sweep folder deleted by hand simply stops referring to anything.
    """
    import pyarrow.fs as pafs

    from .folder import SPEC_COPY
    from .results import read_sessions, read_trials

    root = Location.of(root)
    selector = pafs.FileSelector(root.path, allow_not_found=True)
    refs: dict[tuple[str, str], set[str]] = {}
    for info in root.fs.get_file_info(selector):
        sweep = root / info.base_name
        if (
            info.type != pafs.FileType.Directory
            or info.base_name == STORE_DIR
            or not (sweep / SPEC_COPY).exists()
        ):
            continue
        trials, sessions = read_trials(sweep), read_sessions(sweep)
        for kind, column, frame in (
            ("base", "base_key", trials),
            ("trial", "store_key", sessions),
            ("trial", "store_key", trials),
        ):
            if column in frame:
                for key in frame[column].dropna().unique():
                    if key:
                        refs.setdefault((kind, str(key)), set()).add(info.base_name)
    return refs


def prune_unused(root: str | os.PathLike | Location, min_age_s: float = MIN_AGE_S) -> list[dict[str, Any]]:
    """Delete every entry no sweep folder refers to and older than ``min_age_s``; returns what went."""
    store, refs = Store(root), sweep_references(root)
    removed = []
    for record in store.contents():
        if (record["kind"], record["key"]) not in refs and record["age_s"] >= min_age_s:
            store.delete(record["kind"], record["key"])
            removed.append(record)
    return removed
