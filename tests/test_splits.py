"""The standard session lists shipped as package data: intact (checksums), complete (line counts)."""

from __future__ import annotations

import hashlib
import re

import pytest

from ckpd_core import ConfigError
from ckpd_core.data import count_sessions, splits
from ckpd_core.data.splits import SPLIT_DATASETS, num_sessions, read_split, session_lists, splits_root

ROOT = splits_root()


def manifest() -> dict[str, str]:
    lines = (ROOT / "SHA256SUMS").read_text().splitlines()
    return {name: digest for digest, name in (line.split(maxsplit=1) for line in lines)}


def shipped_lists() -> list[str]:
    return sorted(f"{d}/{entry.name}" for d in SPLIT_DATASETS for entry in (ROOT / d).iterdir())


def test_every_shipped_list_matches_its_recorded_sha256():
    recorded = manifest()
    assert sorted(recorded) == shipped_lists()  # nothing unlisted, nothing missing
    for name, digest in recorded.items():
        assert hashlib.sha256((ROOT / name).read_bytes()).hexdigest() == digest, name


def line_count_table() -> dict[str, dict[str, str]]:
    """SOURCE.md's table as {dataset: {column: cell}}."""
    rows = [line for line in (ROOT / "SOURCE.md").read_text().splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in rows[0].strip("|").split("|")]
    table = {}
    for row in rows[2:]:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        table[cells[0]] = dict(zip(header[1:], cells[1:], strict=True))
    return table


def expected_counts(dataset: str, cells: dict[str, str]) -> dict[str, tuple[int, int]]:
    """File name -> (least, most) lines, from one row of the table."""
    sessions = num_sessions(dataset)
    expected = {"session_1.txt": (int(cells["session_1"]),) * 2, "test_1.txt": (int(cells["test_1"]),) * 2}
    few = re.fullmatch(r"(\d+) each \(2\.\.(\d+)\)", cells["session_2..N"])
    assert few and int(few.group(2)) == sessions
    for t in range(2, sessions + 1):
        expected[f"session_{t}.txt"] = (int(few.group(1)),) * 2
        test = cells["test_2..N"]
        low, high = (
            map(int, re.fullmatch(r"(\d+)-(\d+)", test).groups())
            if "-" in test
            else (int(test.split()[0]),) * 2
        )
        expected[f"test_{t}.txt"] = (low, high)
    if cells["other"] != "none":
        for part in cells["other"].split(", "):
            name, count = part.split()
            expected[f"{name}.txt"] = (int(count),) * 2
    return expected


@pytest.mark.parametrize("dataset", SPLIT_DATASETS)
def test_line_counts_match_the_source_note(dataset):
    expected = expected_counts(dataset, line_count_table()[dataset])
    assert sorted(expected) == sorted(entry.name for entry in (ROOT / dataset).iterdir())
    for name, (low, high) in expected.items():
        assert low <= len(read_split(dataset, name)) <= high, name


def test_session_lists_pair_training_and_test_lists():
    train, test = session_lists("cub200")
    assert len(train) == len(test) == 11
    assert len(train[0]) == 3000 and all(len(shots) == 50 for shots in train[1:])
    assert sum(map(len, test)) == 5794


def test_crlf_copies_read_the_same(tmp_path, monkeypatch):
    (tmp_path / "mini").mkdir()
    (tmp_path / "mini" / "session_1.txt").write_bytes(b"a/b.jpg\r\nc/d.jpg\r\n\r\n")
    monkeypatch.setattr(splits, "splits_root", lambda: tmp_path)
    assert read_split("mini", "session_1.txt") == ["a/b.jpg", "c/d.jpg"]


def test_session_counts_need_no_data():
    assert count_sessions("cub200") == 11 and count_sessions("mini_imagenet") == 9
    assert (
        count_sessions("cifar100", num_sessions=3) == 3 and count_sessions("cifar100", num_sessions=99) == 9
    )
    assert count_sessions("icons") == 9 and count_sessions("icons", num_classes=20, base_classes=10) == 3
    with pytest.raises(ConfigError, match="benchmark='omniglot'"):
        count_sessions("omniglot")
    with pytest.raises(ConfigError, match="unknown setting"):
        count_sessions("cub200", shots=1)
