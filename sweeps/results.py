"""Parquet results of one sweep: small atomic part files under ``sessions/`` and ``trials/``.

Every part of a table has the same columns and Arrow types, so pandas and pyarrow read the folder, and
polars and DuckDB read ``<folder>/*.parquet``, with no project code. A part is published whole (see
``storage``), so readers never see half a file; rows re-reported by a resumed sweep are dropped on write
and on read. The folder may be local or on any pyarrow filesystem URI.
"""

from __future__ import annotations

import logging
import math
import os
import re
import subprocess
import typing
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ckpd_core.metrics import SESSION_METRICS, TRIAL_METRICS, with_validation

from .storage import Location

log = logging.getLogger(__name__)

STATUSES = ("completed", "pruned", "failed")
SESSION_KEY = ("trial_id", "seed", "session")
TRIAL_KEY = ("trial_id", "seed")

_F64, _I64, _STR = pa.float64(), pa.int64(), pa.string()
_ID = [("sweep", _STR), ("trial_id", _STR), ("seed", _I64)]


@dataclass(frozen=True)
class _Layout:
    """One table: its folder, the contract columns before and after the swept parameters, its row key."""

    folder: str
    leading: pa.Schema
    trailing: pa.Schema
    key: tuple[str, ...]

    @property
    def fixed(self) -> set[str]:
        return set(self.leading.names) | set(self.trailing.names)

    def empty(self) -> pa.Table:
        return pa.schema([*self.leading, *self.trailing]).empty_table()


_SESSIONS = _Layout(
    "sessions",
    pa.schema([*_ID, ("session", _I64)]),
    pa.schema(
        [("n_classes", _I64)]
        + [(name, _F64) for name in with_validation(SESSION_METRICS)]
        + [
            ("n_adapted", _I64),
            ("trainable_params", _I64),
            ("adapted_layers", pa.list_(_STR)),
            ("adapted_asr", pa.list_(_F64)),
            ("train_loss", _F64),
            ("seconds", _F64),
            ("reused_seconds", _F64),
            ("reused_from", _STR),
            ("store_key", _STR),
            ("node", _STR),
            ("node_id", _STR),
            ("started_at_session", _I64),
            ("written_at", pa.timestamp("us", tz="UTC")),
        ]
    ),
    SESSION_KEY,
)
_TRIALS = _Layout(
    "trials",
    pa.schema(_ID),
    pa.schema(
        [("status", _STR), ("pruned_at_session", _I64), ("error", _STR), ("sessions_done", _I64)]
        + [(name, _F64) for name in with_validation(TRIAL_METRICS)]
        + [("compute_s", _F64), ("reused_compute_s", _F64), ("base_key", _STR), ("store_key", _STR)]
        + [("node", _STR), ("node_id", _STR)]
        + [("git_commit", _STR), ("version", _STR)]
    ),
    TRIAL_KEY,
)


def _numeric(schema: pa.Schema) -> tuple[str, ...]:
    return tuple(f.name for f in schema if pa.types.is_integer(f.type) or pa.types.is_floating(f.type))


SESSION_COLUMNS = tuple(_SESSIONS.empty().column_names)
TRIAL_COLUMNS = tuple(_TRIALS.empty().column_names)
# Numeric per-session and per-trial values that tables and plots may aggregate.
SESSION_VALUES = _numeric(_SESSIONS.trailing)
TRIAL_VALUES = _numeric(_TRIALS.trailing)
_PART = re.compile(r"part-(\d+)-[0-9a-f]+\.parquet")


def param_columns(*frames: pd.DataFrame) -> list[str]:
    """The swept-parameter columns of result frames: every column that is not a contract column, in order."""
    contract = set(SESSION_COLUMNS) | set(TRIAL_COLUMNS)
    names = [c for frame in frames for c in frame.columns if c not in contract]
    return list(dict.fromkeys(names))


def value_label(value: Any) -> str:
    """A parameter value as a table header or legend entry: ``none`` when missing, floats without noise."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "none"
    return f"{value:g}" if isinstance(value, float) else str(value)


class ResultsStore:
    """The single writer of one sweep's results folder (``<root>/<sweep>``); folders appear on first write.

    ``param_types`` fixes the Arrow type of swept parameters (say ``{"asr_threshold": pa.float64()}``) so
    that a part where a parameter is always None still writes it with the same type as the others.
    Undeclared ones take the type of their ``TrialConfig`` field, else of their values (int64, float64).
    """

    def __init__(
        self, path: str | os.PathLike | Location, param_types: Mapping[str, pa.DataType] | None = None
    ) -> None:
        self.location = Location.of(path)
        self._types: dict[str, pa.DataType] = dict(param_types or {})
        self._params = {layout.folder: list(self._types) for layout in (_SESSIONS, _TRIALS)}
        self._session_keys: set[tuple] = set()
        self._trial_status: dict[tuple, str] = {}
        self._seq = 0
        self._loaded = False

    def load_written_keys(self) -> tuple[set[tuple], dict[tuple, str]]:
        """Read back what earlier drivers wrote: session keys, trial keys with their status, parameter types.

        Returns the session keys and the trial status by key; the next part number continues after the last.
        """
        for layout in (_SESSIONS, _TRIALS):
            for seq, part in _parts(self.location / layout.folder):
                self._seq = max(self._seq, seq)
                for field in pq.read_schema(part.path, filesystem=part.fs):
                    if field.name not in layout.fixed:
                        self._adopt(layout.folder, field.name, field.type)
                columns = list(layout.key) + (["status"] if layout is _TRIALS else [])
                table = pq.read_table(part.path, columns=columns, filesystem=part.fs)
                rows = zip(*(table.column(c).to_pylist() for c in columns), strict=True)
                if layout is _SESSIONS:
                    self._session_keys.update(rows)
                else:
                    self._trial_status.update({row[:-1]: row[-1] for row in rows})
        self._loaded = True
        return set(self._session_keys), dict(self._trial_status)

    def write_sessions(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Write as one part the rows whose (trial_id, seed, session) is not written yet; return how many."""
        self._ensure_loaded()
        fresh: dict[tuple, Mapping[str, Any]] = {}
        for row in rows:
            key = _key(row, SESSION_KEY)
            if key not in self._session_keys:
                fresh.setdefault(key, row)
        now = datetime.now(timezone.utc)
        self._write(_SESSIONS, [{"written_at": now, **row} for row in fresh.values()])
        self._session_keys.update(fresh)
        return len(fresh)

    def write_trials(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Write trial summaries as one part, skipping a (trial_id, seed) already written with this status.

        ``git_commit`` and ``version`` default to this checkout's; a later row of a trial supersedes on read.
        """
        self._ensure_loaded()
        fresh: dict[tuple, Mapping[str, Any]] = {}
        for row in rows:
            key = _key(row, TRIAL_KEY)
            if row.get("status") not in STATUSES:
                allowed = ", ".join(STATUSES)
                raise ValueError(f"trial {key}: status {row.get('status')!r} is not one of {allowed}")
            if self._trial_status.get(key) != row["status"]:
                fresh[key] = row
        if fresh:
            defaults = {"git_commit": git_commit(), "version": package_version()}
            self._write(_TRIALS, [{**defaults, **row} for row in fresh.values()])
        self._trial_status.update({key: row["status"] for key, row in fresh.items()})
        return len(fresh)

    def _ensure_loaded(self) -> None:
        if not self._loaded:
            self.load_written_keys()

    def _adopt(self, folder: str, name: str, type_: pa.DataType) -> None:
        """Keep a parameter column with the type it already has on disk, so new parts match the old ones."""
        if self._types.get(name, type_) != type_:
            log.warning(
                "parameter %r is %s on disk, not the declared %s: keeping %s",
                name,
                type_,
                self._types[name],
                type_,
            )
        self._types[name] = type_
        if name not in self._params[folder]:
            self._params[folder].append(name)

    def _write(self, layout: _Layout, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        rows = [{"sweep": self.location.name, **row} for row in rows]
        folder = self.location / layout.folder
        params = self._params[layout.folder]
        known = layout.fixed | set(params)
        new = [name for name in dict.fromkeys(n for row in rows for n in row) if name not in known]
        if new and folder.is_dir():
            log.warning(
                "column(s) %s new in %s: pandas and polars read a folder with the columns of its "
                "first part; declare every parameter in param_types before the first write",
                ", ".join(new),
                folder,
            )
        types = {**self._types, **{name: self._new_type(name, rows) for name in new}}
        schema = pa.schema([*layout.leading, *((n, types[n]) for n in params + new), *layout.trailing])
        arrays = [_array(field, [row.get(field.name) for row in rows]) for field in schema]
        table = pa.Table.from_arrays(arrays, schema=schema)
        self._seq += 1
        buffer = pa.BufferOutputStream()
        pq.write_table(table, buffer)
        part = folder / f"part-{self._seq:08d}-{uuid.uuid4().hex}.parquet"
        part.write_bytes(buffer.getvalue().to_pybytes())
        self._types = types  # only a written part fixes the type of a new column
        params.extend(new)

    def _new_type(self, name: str, rows: Sequence[Mapping[str, Any]]) -> pa.DataType:
        if name in self._types:  # declared, or fixed by the other table
            return self._types[name]
        return _trial_config_types().get(name) or _infer_type(name, rows)


def _key(row: Mapping[str, Any], columns: Sequence[str]) -> tuple:
    missing = [c for c in columns if row.get(c) is None]
    if missing:
        raise ValueError(f"result row lacks its key column(s) {', '.join(missing)}: {dict(row)}")
    return tuple(row[c] for c in columns)


def _infer_type(name: str, rows: Sequence[Mapping[str, Any]]) -> pa.DataType:
    """Arrow type of an undeclared column from its values: int64 for ints, float64 for floats and all-None."""
    try:
        type_ = pa.array([row[name] for row in rows if row.get(name) is not None]).type
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ValueError(f"column {name!r} mixes value types; declare it in param_types: {exc}") from exc
    if pa.types.is_integer(type_):
        return _I64
    if pa.types.is_floating(type_) or pa.types.is_null(type_):
        return _F64
    return type_


def _array(field: pa.Field, values: list[Any]) -> pa.Array:
    try:
        return pa.array(values, type=field.type)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ValueError(f"column {field.name!r} must hold {field.type}, got {values!r}: {exc}") from exc


@lru_cache(maxsize=1)
def _trial_config_types() -> dict[str, pa.DataType]:
    """Arrow types of TrialConfig's scalar fields, so an all-None ``top_n`` is still int64."""
    from ckpd_core import TrialConfig

    scalars = {bool: pa.bool_(), int: _I64, float: _F64, str: _STR}
    types: dict[str, pa.DataType] = {}
    for name, hint in typing.get_type_hints(TrialConfig).items():
        args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
        if len(args) == 1 and args[0] in scalars:
            types[name] = scalars[args[0]]
    return types


def _parts(folder: Location) -> list[tuple[int, Location]]:
    """Finished part files of a table folder, in write order; temporary and foreign files are left out."""
    return sorted((int(m.group(1)), folder / name) for name in folder.files() if (m := _PART.fullmatch(name)))


def _read(path: str | os.PathLike | Location, layout: _Layout) -> pd.DataFrame:
    parts = _parts(Location.of(path) / layout.folder)
    if not parts:
        return layout.empty().to_pandas()
    tables = [pq.read_table(part.path, filesystem=part.fs) for _, part in parts]
    table = pa.concat_tables(tables, promote_options="permissive")
    return table.to_pandas().drop_duplicates(list(layout.key), keep="last", ignore_index=True)


def read_sessions(path: str | os.PathLike | Location) -> pd.DataFrame:
    """Session rows of the sweep at ``path``, one per (trial_id, seed, session): the last written."""
    return _read(path, _SESSIONS)


def read_trials(path: str | os.PathLike | Location) -> pd.DataFrame:
    """Trial rows of the sweep at ``path``, one per (trial_id, seed): the last written."""
    return _read(path, _TRIALS)


@lru_cache(maxsize=1)
def git_commit() -> str:
    """The commit of the checkout this package runs from, or "unknown" (no git, no commit, not a checkout)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def package_version() -> str:
    """The ckpd_core version the results were computed with."""
    import ckpd_core

    return ckpd_core.__version__
