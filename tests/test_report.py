"""Report figures: PNG files of the configured pixel size, with every trial status drawn."""

from __future__ import annotations

import struct

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgb
from matplotlib.image import imread

from sweeps.report import STATUS_COLORS, VERDICT_COLORS, plot_report
from sweeps.results import read_sessions, read_trials

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two ranks x two seeds completed over 3 sessions, one trial pruned at session 1, one failed."""
    sessions, trials = [], []
    runs = [(f"r{rank}", seed, rank, "completed") for rank in (4, 8) for seed in (0, 1)]
    runs += [("pruned", 0, 4, "pruned"), ("failed", 0, 8, "failed")]
    for trial_id, seed, rank, status in runs:
        last = {"completed": 2, "pruned": 2, "failed": 0}[status]  # the pruned run reported one more row
        for session in range(last + 1):
            acc = 0.9 - 0.1 * session - 0.02 * seed - (0.3 if status == "pruned" else 0.0)
            sessions.append(
                dict(
                    trial_id=trial_id,
                    seed=seed,
                    session=session,
                    rank=rank,
                    lr=0.001,
                    acc_all=acc,
                    val_acc_all=acc - 0.05,
                )
            )
        trials.append(
            dict(
                trial_id=trial_id,
                seed=seed,
                rank=rank,
                lr=0.001,
                status=status,
                pruned_at_session=1.0 if status == "pruned" else np.nan,
            )
        )
    return pd.DataFrame(sessions), pd.DataFrame(trials)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def has_colour(path, colour: str) -> bool:
    pixels = imread(path)[..., :3]
    return bool((np.abs(pixels - np.array(to_rgb(colour))).max(axis=-1) < 0.02).any())


def test_figures_are_pngs_of_the_configured_size(tmp_path):
    paths = plot_report(*frames(), tmp_path / "report", figsize=(6.0, 4.0), dpi=50)
    assert [p.name for p in paths] == ["objective.png", "accuracy_per_session.png", "pruning.png"]
    for path in paths:
        data = path.read_bytes()
        assert len(data) > 1000 and png_size(data) == (300, 200)


def test_objective_figure_marks_the_best_and_what_is_tied_or_set_apart(tmp_path):
    sessions, trials = frames()
    objective = plot_report(sessions, trials, tmp_path / "two-seeds")[0]
    # rank 4 and rank 8 ran the same accuracies: tied, each with its interval over two seeds
    assert has_colour(objective, VERDICT_COLORS["best"]) and has_colour(objective, VERDICT_COLORS["tied"])
    assert not has_colour(objective, VERDICT_COLORS["different"])
    worse = sessions.assign(acc_all=sessions.acc_all - 0.3 * (sessions["rank"] == 8))
    worse = worse.assign(val_acc_all=worse.val_acc_all - 0.3 * (worse["rank"] == 8) + 0.001 * worse.seed)
    apart = plot_report(worse, trials, tmp_path / "apart")[0]
    assert has_colour(apart, VERDICT_COLORS["different"]) and not has_colour(apart, VERDICT_COLORS["tied"])


def test_pruning_figure_colours_every_status_and_accuracy_figure_every_value(tmp_path):
    _, accuracy, pruning = plot_report(*frames(), tmp_path)
    assert png_size(accuracy.read_bytes()) == png_size(pruning.read_bytes()) == (800, 500)  # the defaults
    for status in ("completed", "pruned", "failed"):
        assert has_colour(pruning, STATUS_COLORS[status]), status
    assert not has_colour(pruning, STATUS_COLORS["running"])
    assert has_colour(accuracy, "C0") and has_colour(accuracy, "C1")  # rank=4 and rank=8
    assert not has_colour(accuracy, "C2")


def test_running_trials_and_empty_sweeps_still_give_figures(tmp_path):
    sessions, trials = frames()
    unfinished = trials[trials["status"] != "failed"]  # the failed run has sessions but no trial row yet
    running = plot_report(sessions, unfinished, tmp_path / "running", param="lr", dpi=60)
    assert has_colour(running[2], STATUS_COLORS["running"])
    nothing = tmp_path / "not-started"
    empty = plot_report(read_sessions(nothing), read_trials(nothing), tmp_path / "empty", dpi=40)
    assert [png_size(p.read_bytes()) for p in empty] == [(320, 200)] * 3


def test_unknown_parameter_is_refused(tmp_path):
    with pytest.raises(ValueError, match="choose one of: rank, lr"):
        plot_report(*frames(), tmp_path, param="depth")
