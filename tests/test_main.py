"""``python -m ckpd_core`` prints a per-session table, and refuses bad settings with exit code 2."""

from __future__ import annotations

import pytest

from .helpers import run_ckpd_core

TINY = [
    "benchmark_kwargs={num_classes: 20, base_classes: 10, ways: 5, train_per_class: 30, val_per_class: 6, "
    "test_per_class: 6}",
    "backbone_kwargs={depth: 1, embed_dim: 64, num_heads: 2}",
    "feature_dim=32",
    "rank=4",
    "base_epochs=1",
    "steps=2",
]


@pytest.mark.slow
def test_prints_one_row_per_session(tmp_path):
    done = run_ckpd_core(TINY, tmp_path)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.strip().startswith("│")]
    sessions = [line.split("│")[1].strip() for line in lines]
    assert sessions == ["0", "1", "2"]
    assert "avg_acc=" in done.stdout and "val_last_acc=" in done.stdout
    assert list(tmp_path.glob("base-*.pt"))  # base session cached for the next run


@pytest.mark.slow
def test_bad_setting_exits_2_without_traceback(tmp_path):
    done = run_ckpd_core([*TINY, "rank=0"], tmp_path)
    assert done.returncode == 2
    assert "rank=0" in done.stdout and "Traceback" not in done.stdout + done.stderr
    done = run_ckpd_core([*TINY, "rnak=4"], tmp_path)
    assert done.returncode == 2 and "rnak" in done.stdout
