"""miniImageNet for FSCIL, in either layout in use.

- TOPIC's tree: ``MINI-ImageNet/<train|test>/<wnid>/<file>.jpg`` (the paths the lists name);
- the flat layout of CEC and others: ``images/<file>.jpg`` with ``split/{train,test}.csv``
  (header ``filename,label``, label = wnid).

Class order = the wnids sorted; both layouts hold the same 500 train / 100 test images per class.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError
from .benchmark import Benchmark
from .fscil import DatasetDefaults, DatasetSettings, Partition, build_fscil_benchmark, default_workers
from .stores import FileStore

TOPIC = "MINI-ImageNet"
SPLITS = ("train", "test")
DEFAULTS = DatasetDefaults(store_size=84, crop_scale=(0.08, 1.0))  # the images are 84 x 84
_ROOT_NAMES = ("", "miniimagenet", "mini_imagenet", "miniImageNet")


def find_root(data_root: str | None) -> tuple[Path, str]:
    """The dataset folder and its layout, ``topic`` or ``flat``, looked for in and just below data_root."""
    if data_root is None:
        raise ConfigError("benchmark mini_imagenet needs data_root: the folder that holds the dataset")
    root = Path(data_root).expanduser()
    for base in (root / name for name in _ROOT_NAMES):
        if (base / TOPIC / "train").is_dir():
            return base, "topic"
        if (base / "images").is_dir() and (base / "split" / "train.csv").is_file():
            return base, "flat"
    raise DataError(
        f"miniImageNet not found under {root}: expected either {root}/{TOPIC}/{{train,test}}/<wnid>/*.jpg "
        f"or {root}/images/*.jpg with {root}/split/{{train,test}}.csv (also accepted one level down, "
        f"in {', '.join(n for n in _ROOT_NAMES if n)})"
    )


def _topic_files(base: Path, split: str) -> list[tuple[str, str, str]]:
    """(wnid, file name, path) of every image in ``MINI-ImageNet/<split>/<wnid>/``."""
    folder = base / TOPIC / split
    if not folder.is_dir():
        raise DataError(f"miniImageNet: {folder} is missing (expected {TOPIC}/{split}/<wnid>/*.jpg)")
    found = []
    for wnid in sorted(entry.name for entry in os.scandir(folder) if entry.is_dir()):
        wnid_dir = os.path.join(folder, wnid)
        names = sorted(entry.name for entry in os.scandir(wnid_dir) if entry.is_file())
        found += [(wnid, name, os.path.join(wnid_dir, name)) for name in names]
    return found


def _flat_files(base: Path, split: str) -> list[tuple[str, str, str]]:
    """(wnid, file name, path) of every row of ``split/<split>.csv``, images in ``images/``."""
    path = base / "split" / f"{split}.csv"
    try:
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames or not {"filename", "label"} <= set(reader.fieldnames):
                raise DataError(f"{path}: header must be 'filename,label', found {reader.fieldnames}")
            rows = [(row["label"], row["filename"]) for row in reader]
    except OSError as exc:
        raise DataError(
            f"miniImageNet: cannot read {path} ({exc.strerror or exc}); expected split/train.csv and "
            "split/test.csv beside images/"
        ) from exc
    if any(not label or not name for label, name in rows):
        raise DataError(f"{path}: some rows lack a filename or a label")
    images = os.path.join(base, "images")
    return [(label, name, os.path.join(images, name)) for label, name in rows]


def _partition(
    files: list[tuple[str, str, str]], split: str, wnids: list[str], settings: DatasetSettings
) -> Partition:
    index = {wnid: i for i, wnid in enumerate(wnids)}
    store = FileStore(
        paths=[path for _, _, path in files],
        keys=[f"{TOPIC}/{split}/{wnid}/{name}" for wnid, name, _ in files],
        size=settings.store_size or DEFAULTS.store_size,
        workers=default_workers(settings),
    )
    return Partition(labels=np.array([index[wnid] for wnid, _, _ in files], dtype=np.int64), store=store)


def mini_imagenet_benchmark(data_root: str | None = None, **kwargs: Any) -> Benchmark:
    """60 base classes + 8 sessions of 5-way 5-shot on miniImageNet, from the standard lists."""
    settings = DatasetSettings.parse("mini_imagenet", kwargs)
    base, layout = find_root(data_root)
    read = _topic_files if layout == "topic" else _flat_files
    files = {split: read(base, split) for split in SPLITS}
    wnids = sorted({wnid for split in SPLITS for wnid, _, _ in files[split]})
    train, test = (_partition(files[split], split, wnids, settings) for split in SPLITS)
    return build_fscil_benchmark("mini_imagenet", wnids, train, test, settings, DEFAULTS)
