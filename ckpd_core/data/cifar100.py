"""CIFAR-100 from the official python release: ``cifar-100-python/{train,test,meta}`` pickles.

The session lists are row numbers into the ``train`` / ``test`` arrays; the class of a row is its
fine label, which is also the class order of the standard protocol.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, DataError
from .benchmark import Benchmark
from .fscil import DatasetDefaults, DatasetSettings, Partition, build_fscil_benchmark
from .stores import ArrayStore

FOLDER = "cifar-100-python"
FILES = ("train", "test", "meta")
SIDE = 32
# 8% of a 32 px image is 9 px, too little to crop; evaluation sees the whole image.
DEFAULTS = DatasetDefaults(store_size=SIDE, crop_scale=(0.35, 1.0), crop_pct=1.0)


def find_root(data_root: str | None) -> Path:
    """The folder holding the three pickles: ``<data_root>/cifar-100-python`` or ``data_root`` itself."""
    if data_root is None:
        raise ConfigError("benchmark cifar100 needs data_root: the folder that holds cifar-100-python/")
    root = Path(data_root).expanduser()
    for folder in (root / FOLDER, root):
        if all((folder / name).is_file() for name in FILES):
            return folder
    raise DataError(
        f"CIFAR-100 not found under {root}: expected {root / FOLDER}/{{train,test,meta}} "
        "(the python version from https://www.cs.toronto.edu/~kriz/cifar.html, extracted)"
    )


def unpickle(path: Path) -> dict[str, Any]:
    """One official pickle as a dict with str keys (the files have bytes keys)."""
    try:
        with open(path, "rb") as handle:
            blob = pickle.load(handle, encoding="bytes")
    except Exception as exc:  # a damaged pickle can raise almost anything
        raise DataError(f"{path} is not a readable CIFAR-100 pickle ({exc!r}): download it again") from exc
    if not isinstance(blob, dict):
        raise DataError(f"{path} holds a {type(blob).__name__}, not the dict of a CIFAR-100 pickle")
    return {key.decode() if isinstance(key, bytes) else key: value for key, value in blob.items()}


def _partition(path: Path) -> Partition:
    blob = unpickle(path)
    if "data" not in blob or "fine_labels" not in blob:
        raise DataError(f"{path} lacks b'data' or b'fine_labels': not a CIFAR-100 python pickle")
    data, labels = blob["data"], np.asarray(blob["fine_labels"], dtype=np.int64)
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != 3 * SIDE**2
    ):
        shape = getattr(data, "shape", None)
        raise DataError(
            f"{path}: b'data' must be a uint8 array (N, 3072), found {type(data).__name__} {shape}"
        )
    if labels.shape != (data.shape[0],) or labels.min(initial=0) < 0:
        raise DataError(f"{path}: {labels.shape[0]} fine labels for {data.shape[0]} images")
    images = torch.from_numpy(data).view(-1, 3, SIDE, SIDE)
    return Partition(labels=labels, store=ArrayStore(images, [str(row) for row in range(len(labels))]))


def cifar100_benchmark(data_root: str | None = None, **kwargs: Any) -> Benchmark:
    """60 base classes + 8 sessions of 5-way 5-shot on CIFAR-100, from the standard index lists."""
    settings = DatasetSettings.parse("cifar100", kwargs)
    if settings.store_size not in (None, SIDE):
        raise ConfigError(
            f"benchmark_kwargs for cifar100: store_size must be {SIDE} (the images are {SIDE} px)"
        )
    root = find_root(data_root)
    meta = unpickle(root / "meta")
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta.get("fine_label_names", [])]
    train, test = _partition(root / "train"), _partition(root / "test")
    classes = int(max(train.labels.max(initial=-1), test.labels.max(initial=-1))) + 1
    if len(names) != classes:
        raise DataError(f"{root / 'meta'}: {len(names)} fine_label_names for {classes} classes in the data")
    return build_fscil_benchmark("cifar100", names, train, test, settings, DEFAULTS)
