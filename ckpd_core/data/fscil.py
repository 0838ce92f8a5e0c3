"""Turn a dataset plus the standard session lists into a ``Benchmark`` with a held-out validation split.

Shared by the real datasets (cifar100, mini_imagenet, cub200): each one only says which images
exist, their classes and how the lists name them; sessions, the seeded val split, the memory
budget of the decode cache and the input pipeline are decided here, the same way for all.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from functools import partial
from typing import Annotated, Any

import numpy as np
import torch
from pydantic import Field, NonNegativeInt, PositiveInt
from pydantic.dataclasses import dataclass as pydantic_dataclass

from ..errors import ConfigError, DataError
from ..validation import STRICT, Number, config_errors, pair
from .benchmark import Benchmark
from .splits import session_lists
from .stores import FileStore, Store, StoredImageSet
from .transforms import CropTransform

log = logging.getLogger(__name__)
# Used until the trial hands over the backbone's own data config (timm's defaults).
_DEFAULT_INPUT = dict(
    input_size=(3, 224, 224), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), crop_pct=0.875
)
_Scale = pair(Number, "two numbers")


@config_errors()
@pydantic_dataclass(frozen=True, config=STRICT)
class DatasetSettings:
    """``benchmark_kwargs`` of a real benchmark: val split, smoke-test limits, decoding and pipeline.

    Val: ``val_fraction`` of each base class's training images, and for each novel class up to
    ``val_per_novel_class`` of its training images outside the K shots (None: as many as a base
    class holds out); chosen with ``seed``, never trained on. ``num_sessions`` / ``max_per_class``
    shrink the protocol for smoke tests and quick proxy sweeps (None: the standard lists).
    ``store_size``: side in pixels at which image files are decoded and cached (None: the dataset's
    default); ``cache_mb``: memory budget of that cache; ``workers``: decoding threads.
    ``crop_scale`` / ``color_jitter`` / ``crop_pct``: train augmentation and eval crop (None: the
    dataset's default, else the backbone's crop_pct).
    """

    val_fraction: Annotated[Number, Field(gt=0, lt=1)] = 0.1
    val_per_novel_class: PositiveInt | None = None
    seed: NonNegativeInt = 0
    num_sessions: PositiveInt | None = None
    max_per_class: PositiveInt | None = None
    store_size: PositiveInt | None = None
    cache_mb: NonNegativeInt = 4096
    workers: PositiveInt | None = None
    crop_scale: _Scale | None = None
    color_jitter: Number = 0.4
    crop_pct: Number | None = None

    @classmethod
    def parse(cls, dataset: str, kwargs: dict[str, Any]) -> DatasetSettings:
        """The settings, or a ConfigError that names the dataset and the setting."""
        try:
            return cls(**kwargs)
        except ConfigError as exc:
            raise ConfigError(f"benchmark_kwargs for {dataset}: {exc}") from None


@dataclass
class Partition:
    """One official partition (train or test) of a dataset: class id and list name of every image."""

    labels: np.ndarray
    store: Store
    _rows: dict[str, int] = field(default_factory=dict, init=False, repr=False)

    def locate(self, entries: list[str], what: str) -> np.ndarray:
        """Rows of the images that a split list names; DataError listing the entries not found."""
        if not self._rows:
            self._rows = {key: row for row, key in enumerate(self.store.keys)}
        rows = np.array([self._rows.get(entry, -1) for entry in entries], dtype=np.int64)
        if (rows < 0).any():
            missing = [e for e, r in zip(entries, rows, strict=True) if r < 0]
            raise DataError(
                f"{what}: {len(missing)} listed image(s) are not in the dataset, e.g. {missing[:5]}"
            )
        return rows


@dataclass(frozen=True)
class DatasetDefaults:
    """What differs between datasets: decode size of files, train crop scale, eval crop (None: backbone's)."""

    store_size: int
    crop_scale: tuple[float, float]
    crop_pct: float | None = None


def build_fscil_benchmark(
    name: str,
    class_names: list[str],
    train: Partition,
    test: Partition,
    settings: DatasetSettings,
    defaults: DatasetDefaults,
) -> Benchmark:
    """Sessions from the standard lists of ``name``; labels renumbered so sessions are in class order."""
    train_lists, test_lists = session_lists(name)
    count = min(settings.num_sessions or len(train_lists), len(train_lists))
    train_rows = [
        train.locate(entries, f"{name} session_{t}.txt") for t, entries in _numbered(train_lists[:count])
    ]
    test_rows = [test.locate(entries, f"{name} test_{t}.txt") for t, entries in _numbered(test_lists[:count])]
    sessions = _session_classes(name, train, test, train_rows, test_rows)
    order = [c for classes in sessions for c in classes]
    relabel = np.full(max(len(class_names), int(train.labels.max()) + 1, int(test.labels.max()) + 1), -1)
    relabel[order] = np.arange(len(order))
    splits = _split_rows(train, test, sessions, train_rows, test_rows, settings)
    _budget_cache(name, settings, splits, train.store, test.store)
    transform = partial(
        CropTransform.from_data_config,
        scale=settings.crop_scale or defaults.crop_scale,
        jitter=settings.color_jitter,
        crop_pct=settings.crop_pct or defaults.crop_pct,
    )

    def image_set(part: Partition, rows: np.ndarray) -> StoredImageSet:
        return StoredImageSet(
            part.store, rows, torch.from_numpy(relabel[part.labels[rows]]), transform(_DEFAULT_INPUT)
        )

    shots = [splits["base_train"], *splits["shots"]]
    bounds = np.cumsum([0] + [len(rows) for rows in shots])
    return Benchmark(
        name=name,
        class_names=[class_names[c] for c in order],
        session_classes=[[int(relabel[c]) for c in classes] for classes in sessions],
        train=image_set(train, np.concatenate(shots)),
        val=image_set(train, splits["val"]),
        test=image_set(test, np.concatenate(splits["test"])),
        train_indices=[
            torch.arange(int(lo), int(hi)) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)
        ],
        input_transform=transform,
    )


def _numbered(lists: list[list[str]]) -> list[tuple[int, list[str]]]:
    """Pair each list with its 1-based session number, as in the file names."""
    return list(enumerate(lists, start=1))


def _session_classes(
    name: str, train: Partition, test: Partition, train_rows: list[np.ndarray], test_rows: list[np.ndarray]
) -> list[list[int]]:
    """Each session's classes (in list order), checked: disjoint sessions, test lists of the same classes."""
    sessions, seen = [], set()
    for t, (rows, tests) in enumerate(zip(train_rows, test_rows, strict=True), start=1):
        classes = list(dict.fromkeys(int(c) for c in train.labels[rows]))
        if set(classes) & seen:
            raise DataError(
                f"{name}: session_{t}.txt repeats classes of earlier sessions: the dataset's labels "
                "do not match the standard lists"
            )
        tested = set(int(c) for c in test.labels[tests])
        if tested != set(classes):
            raise DataError(
                f"{name}: test_{t}.txt holds classes {sorted(tested)} but session_{t}.txt trains "
                f"{sorted(classes)}: the dataset's labels do not match the standard lists"
            )
        seen.update(classes)
        sessions.append(classes)
    return sessions


def _split_rows(
    train: Partition,
    test: Partition,
    sessions: list[list[int]],
    train_rows: list[np.ndarray],
    test_rows: list[np.ndarray],
    settings: DatasetSettings,
) -> dict[str, Any]:
    """Base training rows, shots per session and val rows (seeded), every class capped at max_per_class."""
    rng = np.random.default_rng(settings.seed)
    cap = settings.max_per_class

    def first(rows: np.ndarray) -> np.ndarray:
        return rows if cap is None else rows[:cap]

    base_train, val, base_val_counts = [], [], []
    base_rows = train_rows[0]
    for c in sessions[0]:
        rows = base_rows[train.labels[base_rows] == c]
        held = max(1, round(settings.val_fraction * len(rows)))
        if held >= len(rows):
            raise DataError(f"base class {c} has only {len(rows)} training image(s): too few to hold out val")
        chosen = np.zeros(len(rows), dtype=bool)
        chosen[rng.permutation(len(rows))[:held]] = True
        base_train.append(first(rows[~chosen]))
        val.append(first(rows[chosen]))
        base_val_counts.append(held)
    novel_val = settings.val_per_novel_class or min(base_val_counts)
    shots = []
    for t in range(1, len(sessions)):
        session_shots = []
        for c in sessions[t]:
            own = train_rows[t][train.labels[train_rows[t]] == c]
            others = np.setdiff1d(np.flatnonzero(train.labels == c), own)
            session_shots.append(first(own))
            val.append(first(np.sort(others[rng.permutation(len(others))[:novel_val]])))
        shots.append(np.concatenate(session_shots))
    tests = [
        np.concatenate([first(rows[test.labels[rows] == c]) for c in classes])
        for rows, classes in zip(test_rows, sessions, strict=True)
    ]
    return {
        "base_train": np.concatenate(base_train),
        "shots": shots,
        "val": np.concatenate(val),
        "test": tests,
    }


def _budget_cache(
    name: str, settings: DatasetSettings, splits: dict[str, Any], train_store: Store, test_store: Store
) -> None:
    """Cache decoded files while the used images fit in ``cache_mb``; check that every used file exists."""
    budget = settings.cache_mb * 2**20
    train_used = np.concatenate([splits["base_train"], *splits["shots"], splits["val"]])
    test_used = np.concatenate(splits["test"])
    for store, rows, what in ((train_store, train_used, "training"), (test_store, test_used, "test")):
        if not isinstance(store, FileStore):
            continue
        store.check_files(rows, f"{name} {what} images")
        needed = len(np.unique(rows)) * store.image_bytes
        if needed <= budget:
            store.enable_cache()
            budget -= needed
        else:
            log.warning(
                "%s %s images need %.0f MB decoded, more than the %d MB cache_mb left: decoding every batch",
                name,
                what,
                needed / 2**20,
                budget // 2**20,
            )


def default_workers(settings: DatasetSettings) -> int:
    """Decoding threads: the setting, else one per CPU core up to 8."""
    return settings.workers or min(8, os.cpu_count() or 1)
