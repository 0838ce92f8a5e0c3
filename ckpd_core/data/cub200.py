"""CUB-200-2011 in its official layout: ``CUB_200_2011/{images.txt, train_test_split.txt,
image_class_labels.txt, classes.txt, images/<NNN.Name>/<file>.jpg}``.

Labels come from ``image_class_labels.txt`` (1-based, so class NNN is label NNN - 1, the order of
the standard protocol), the train/test partition from ``train_test_split.txt``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError
from .benchmark import Benchmark
from .fscil import DatasetDefaults, DatasetSettings, Partition, build_fscil_benchmark, default_workers
from .stores import FileStore

FOLDER = "CUB_200_2011"
TABLES = ("images.txt", "train_test_split.txt", "image_class_labels.txt", "classes.txt")
DEFAULTS = DatasetDefaults(store_size=256, crop_scale=(0.08, 1.0))  # resize 256, crop 224 as usual


def find_root(data_root: str | None) -> Path:
    """``<data_root>/CUB_200_2011``, or data_root itself when it is that folder."""
    if data_root is None:
        raise ConfigError(f"benchmark cub200 needs data_root: the folder that holds {FOLDER}/")
    root = Path(data_root).expanduser()
    for folder in (root / FOLDER, root):
        if (folder / "images.txt").is_file():
            return folder
    raise DataError(
        f"CUB-200-2011 not found under {root}: expected {root / FOLDER}/ with {', '.join(TABLES)} "
        "and images/<NNN.Name>/*.jpg (the official CUB_200_2011.tgz, extracted)"
    )


def read_table(path: Path) -> dict[int, str]:
    """A ``<id> <value>`` file of the release as {id: value}; DataError naming the file and bad line."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise DataError(
            f"CUB-200-2011: cannot read {path} ({exc.strerror or exc}); expected {', '.join(TABLES)}"
        ) from exc
    table = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        key, _, value = line.strip().partition(" ")
        if not key.isdigit() or not value:
            raise DataError(f"{path}, line {number}: expected '<id> <value>', found {line!r}")
        table[int(key)] = value.strip()
    return table


def _partition(
    folder: Path, ids: list[int], images: dict[int, str], labels: dict[int, int], settings: DatasetSettings
) -> Partition:
    store = FileStore(
        paths=[os.path.join(folder, "images", images[i]) for i in ids],
        keys=[f"{FOLDER}/images/{images[i]}" for i in ids],
        size=settings.store_size or DEFAULTS.store_size,
        workers=default_workers(settings),
    )
    return Partition(labels=np.array([labels[i] for i in ids], dtype=np.int64), store=store)


def cub200_benchmark(data_root: str | None = None, **kwargs: Any) -> Benchmark:
    """100 base classes + 10 sessions of 10-way 5-shot on CUB-200-2011, from the standard lists."""
    settings = DatasetSettings.parse("cub200", kwargs)
    folder = find_root(data_root)
    images, split, image_labels, classes = (read_table(folder / name) for name in TABLES)
    if not set(images) == set(split) == set(image_labels):
        raise DataError(
            f"{folder}: images.txt, train_test_split.txt and image_class_labels.txt list different ids"
        )
    try:
        labels = {i: int(c) - 1 for i, c in image_labels.items()}
        is_train = {i: int(flag) == 1 for i, flag in split.items()}
    except ValueError as exc:
        raise DataError(f"{folder}: a class id or train flag is not an integer ({exc})") from exc
    if set(labels.values()) - {c - 1 for c in classes}:
        raise DataError(f"{folder}: image_class_labels.txt uses class ids missing from classes.txt")
    names = [f"class {c + 1}" for c in range(max(classes))]
    for c, name in classes.items():
        names[c - 1] = name.partition(".")[2] or name
    ids = sorted(images)
    train = _partition(folder, [i for i in ids if is_train[i]], images, labels, settings)
    test = _partition(folder, [i for i in ids if not is_train[i]], images, labels, settings)
    return build_fscil_benchmark("cub200", names, train, test, settings, DEFAULTS)
