"""The Parquet results store: atomic parts, stable schemas, de-duplication, readers without project code."""

from __future__ import annotations

import math
import re

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

import ckpd_core
from sweeps.results import (
    SESSION_COLUMNS,
    TRIAL_COLUMNS,
    ResultsStore,
    git_commit,
    package_version,
    read_sessions,
    read_trials,
)

from .helpers import session_row, trial_row


def read_everywhere(folder) -> dict[str, pd.DataFrame]:
    """The folder as pandas, pyarrow, polars and DuckDB read it, with no project code."""
    glob = f"{folder}/*.parquet"
    return {
        "pandas": pd.read_parquet(folder),
        "pyarrow": ds.dataset(folder, format="parquet").to_table().to_pandas(),
        "polars": pl.read_parquet(glob).to_pandas(),
        "duckdb": duckdb.sql(f"SELECT * FROM read_parquet('{glob}')").to_arrow_table().to_pandas(),
    }


def test_folders_appear_only_on_first_write(tmp_path):
    store = ResultsStore(tmp_path / "rank")
    assert not (tmp_path / "rank").exists()
    assert store.write_sessions([]) == 0
    assert not (tmp_path / "rank").exists()
    assert store.write_sessions([session_row("t0", 0, rank=4)]) == 1
    assert (tmp_path / "rank" / "sessions").is_dir()
    assert not (tmp_path / "rank" / "trials").exists()


def test_parts_are_numbered_and_no_temporary_file_remains(tmp_path):
    store = ResultsStore(tmp_path / "rank")
    for session in range(3):
        store.write_sessions([session_row("t0", session, rank=4)])
    names = sorted(p.name for p in (tmp_path / "rank" / "sessions").iterdir())
    assert [re.fullmatch(r"part-(\d{8})-[0-9a-f]{32}\.parquet", n).group(1) for n in names] == [
        "00000001",
        "00000002",
        "00000003",
    ]


def test_leftover_temporary_files_are_ignored_by_every_reader(tmp_path):
    store = ResultsStore(tmp_path / "rank")
    store.write_sessions([session_row("t0", 0, rank=4), session_row("t0", 1, rank=4)])
    store.write_sessions([session_row("t0", 2, rank=4)])
    folder = tmp_path / "rank" / "sessions"
    whole = next(folder.iterdir()).read_bytes()
    (folder / ".part-00000004-dead.parquet.tmp").write_bytes(whole[: len(whole) // 2])  # crash mid-write
    (folder / "_tmp").write_bytes(b"not parquet")
    assert sorted(f.rsplit("/", 1)[1] for f in ds.dataset(folder, format="parquet").files) == sorted(
        p.name for p in folder.glob("part-*.parquet")
    )  # pyarrow's discovery skips names starting with "." or "_" by default
    for reader, frame in {**read_everywhere(folder), "project": read_sessions(tmp_path / "rank")}.items():
        assert sorted(frame["session"].tolist()) == [0, 1, 2], reader


def test_columns_types_lists_and_nan_round_trip(tmp_path):
    store = ResultsStore(tmp_path / "rank")
    store.write_sessions([session_row("t0", s, rank=4, lr=0.001, peft_mode="ckpd") for s in range(2)])
    store.write_trials([trial_row("t0", rank=4, lr=0.001, peft_mode="ckpd")])
    schema = ds.dataset(tmp_path / "rank" / "sessions", format="parquet").schema
    expected = {
        "sweep": pa.string(),
        "seed": pa.int64(),
        "session": pa.int64(),
        "rank": pa.int64(),
        "lr": pa.float64(),
        "peft_mode": pa.string(),
        "acc_novel": pa.float64(),
        "trainable_params": pa.int64(),
        "adapted_layers": pa.list_(pa.string()),
        "adapted_asr": pa.list_(pa.float64()),
        "written_at": pa.timestamp("us", tz="UTC"),
    }
    assert {name: schema.field(name).type for name in expected} == expected
    assert schema.names[:7] == ["sweep", "trial_id", "seed", "session", "rank", "lr", "peft_mode"]
    table = pq.read_table(tmp_path / "rank" / "sessions")
    assert table.column("acc_novel").null_count == 0  # NaN stays NaN, not null
    sessions = read_sessions(tmp_path / "rank")
    assert list(sessions.columns) == list(schema.names)
    assert sessions["sweep"].tolist() == ["rank", "rank"]
    assert math.isnan(sessions.loc[0, "acc_novel"]) and sessions.loc[1, "acc_novel"] == pytest.approx(0.4)
    assert list(sessions.loc[1, "adapted_layers"]) == ["blocks.0.attn.qkv", "blocks.1.mlp.fc2"]
    assert list(sessions.loc[1, "adapted_asr"]) == [0.125, 0.25] and len(sessions.loc[0, "adapted_asr"]) == 0
    trials = read_trials(tmp_path / "rank")
    assert set(TRIAL_COLUMNS) <= set(trials.columns)
    assert trials.loc[0, "status"] == "completed" and pd.isna(trials.loc[0, "pruned_at_session"])
    assert trials.loc[0, "version"] == ckpd_core.__version__ == package_version()
    assert trials.loc[0, "git_commit"] == git_commit()
    assert git_commit() == "unknown" or re.fullmatch(r"[0-9a-f]{40}", git_commit())


def test_resume_skips_written_keys_and_reads_never_duplicate(tmp_path):
    path = tmp_path / "rank"
    first = ResultsStore(path)
    assert first.write_sessions([session_row("t0", 0, rank=4), session_row("t0", 1, rank=4)]) == 2
    assert first.write_sessions([session_row("t0", 1, rank=4)]) == 0  # re-reported in the same process
    assert first.write_trials([trial_row("t0", status="failed", rank=4)]) == 1

    resumed = ResultsStore(path)  # a new driver process after a crash
    sessions_on_disk, trials_on_disk = resumed.load_written_keys()
    assert sessions_on_disk == {("t0", 0, 0), ("t0", 0, 1)} and trials_on_disk == {("t0", 0): "failed"}
    assert resumed.write_sessions([session_row("t0", 1, rank=4), session_row("t0", 2, rank=4)]) == 1
    assert resumed.write_trials([trial_row("t0", status="failed", rank=4)]) == 0
    assert resumed.write_trials([trial_row("t0", status="completed", rank=4)]) == 1  # retried, then finished
    assert sorted(p.name[:13] for p in (path / "sessions").iterdir())[-1] == "part-00000003"

    # a duplicate that reached the disk anyway (say two drivers) is dropped on read: the later part wins
    later = pq.read_table(next((path / "sessions").glob("part-00000001-*.parquet")))
    later = later.set_column(later.schema.get_field_index("acc_all"), "acc_all", pa.array([0.11, 0.22]))
    pq.write_table(later, path / "sessions" / f"part-00000009-{'0' * 32}.parquet")
    sessions = read_sessions(path)
    assert sorted(sessions["session"]) == [0, 1, 2]
    assert sessions.set_index("session").loc[[0, 1], "acc_all"].tolist() == [0.11, 0.22]
    trials = read_trials(path)
    assert trials[["trial_id", "status"]].values.tolist() == [["t0", "completed"]]


def test_parameters_that_are_none_in_some_parts_read_everywhere(tmp_path):
    path = tmp_path / "threshold"
    store = ResultsStore(path, param_types={"asr_threshold": pa.float64()})
    # part 1: layer selection by top_n; part 2: by threshold (top_n None); part 3: an int for a float
    store.write_sessions([session_row("a", s, rank=4, asr_threshold=None, top_n=2) for s in range(2)])
    store.write_sessions([session_row("b", s, rank=8, asr_threshold=0.5, top_n=None) for s in range(2)])
    store.write_sessions([session_row("c", 0, rank=8, asr_threshold=1, top_n=None)])
    # a first part where an undeclared TrialConfig parameter is all None still gets its real type
    fresh = ResultsStore(tmp_path / "topn")
    fresh.write_sessions([session_row("a", 0, top_n=None)])
    fresh.write_sessions([session_row("b", 0, top_n=3)])

    for folder in (path / "sessions", tmp_path / "topn" / "sessions"):
        schemas = [pq.read_schema(p) for p in sorted(folder.iterdir())]
        types = {name: {s.field(name).type for s in schemas if name in s.names} for name in schemas[-1].names}
        assert all(len(t) == 1 for t in types.values()), types
    assert pq.read_schema(next((tmp_path / "topn" / "sessions").iterdir())).field("top_n").type == pa.int64()

    for reader, frame in read_everywhere(path / "sessions").items():
        frame = frame.sort_values(["trial_id", "session"]).reset_index(drop=True)
        assert frame["rank"].tolist() == [4, 4, 8, 8, 8], reader
        assert frame["asr_threshold"].isna().tolist() == [True, True, False, False, False], reader
        assert frame["asr_threshold"].dropna().tolist() == [0.5, 0.5, 1.0], reader
        assert frame["top_n"].tolist()[:2] == [2, 2] and frame["top_n"].isna().sum() == 3, reader
    topn = read_sessions(tmp_path / "topn")
    assert topn["top_n"].isna().tolist() == [True, False] and topn["top_n"].iloc[1] == 3


def test_a_column_new_after_the_first_part_is_warned_about_and_read_by_the_project(tmp_path, caplog):
    store = ResultsStore(tmp_path / "rank")
    store.write_sessions([session_row("a", 0, rank=4)])
    with caplog.at_level("WARNING", logger="sweeps.results"):
        store.write_sessions([session_row("b", 0, rank=4, variant="x")])
    assert "column(s) variant new" in caplog.text
    variant = read_sessions(tmp_path / "rank")["variant"]
    assert variant.isna().tolist() == [True, False] and variant.iloc[1] == "x"


def test_empty_reads_have_the_contract_columns(tmp_path):
    sessions, trials = read_sessions(tmp_path / "nothing"), read_trials(tmp_path / "nothing")
    assert sessions.empty and tuple(sessions.columns) == SESSION_COLUMNS
    assert trials.empty and tuple(trials.columns) == TRIAL_COLUMNS
    assert sessions["seed"].dtype == "int64" and sessions["acc_all"].dtype == "float64"
    assert not (tmp_path / "nothing").exists()


def test_malformed_rows_are_refused_without_writing(tmp_path):
    store = ResultsStore(tmp_path / "rank")
    with pytest.raises(ValueError, match="seed"):
        store.write_sessions([{k: v for k, v in session_row("t0", 0).items() if k != "seed"}])
    with pytest.raises(ValueError, match="completed, pruned, failed"):
        store.write_trials([trial_row("t0", status="stopped")])
    with pytest.raises(ValueError, match="n_classes"):
        store.write_sessions([{**session_row("t0", 0), "extra": 1, "n_classes": "ten"}])
    assert not (tmp_path / "rank").exists()
    assert store.write_sessions([session_row("t0", 0)]) == 1  # the refused rows left nothing behind
    assert "extra" not in read_sessions(tmp_path / "rank").columns


def test_a_failed_write_leaves_no_visible_part_and_no_temporary_file(tmp_path, monkeypatch):
    def crash(table, where, **kwargs):
        where.write(b"PAR1 half a file")
        raise OSError("disk full")

    store = ResultsStore(tmp_path / "rank")
    store.write_sessions([session_row("t0", 0, rank=4)])
    monkeypatch.setattr(pq, "write_table", crash)
    with pytest.raises(OSError, match="disk full"):
        store.write_sessions([session_row("t0", 1, rank=4)])
    monkeypatch.undo()
    assert [p.name[:13] for p in (tmp_path / "rank" / "sessions").iterdir()] == ["part-00000001"]
    assert store.write_sessions([session_row("t0", 1, rank=4)]) == 1  # not marked written by the failure
    assert read_sessions(tmp_path / "rank")["session"].tolist() == [0, 1]
