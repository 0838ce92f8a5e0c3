"""Synthetic datasets in the real on-disk formats, consistent with the standard lists.

For tests, benchmarks and dry runs where CIFAR-100, miniImageNet or CUB-200-2011 cannot be
downloaded. Every image of a class has that class's colour, so a model can learn them. With
``distinct=False`` one JPEG is written per class and split and the rest are hard links to it
(tens of thousands of files in well under a second); ``distinct=True`` writes a noisy JPEG each.
"""

from __future__ import annotations

import csv
import os
import pickle
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from .splits import read_split, session_lists

CIFAR_BASE, CIFAR_WAYS, CIFAR_PER_CLASS = 60, 5, 500
CUB_PREFIX = "CUB_200_2011/images/"


def _palette(num_classes: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (num_classes, 3), dtype=np.uint8)


def _jpeg(path: Path, colour: np.ndarray, size: tuple[int, int], noise_seed: int | None) -> None:
    width, height = size
    pixels = np.broadcast_to(colour, (height, width, 3)).astype(np.int16)
    if noise_seed is not None:
        pixels = pixels + np.random.default_rng(noise_seed).integers(-40, 41, pixels.shape, dtype=np.int16)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path, quality=90)


def _link(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:  # file systems without hard links
        shutil.copyfile(source, target)


def _write_images(
    files: list[tuple[Path, int]], colours: np.ndarray, size: tuple[int, int], distinct: bool
) -> None:
    """Write ``(path, class)`` images: one per class then hard links, or a distinct one per file."""
    if distinct:
        with ThreadPoolExecutor(min(16, os.cpu_count() or 1)) as pool:
            list(
                pool.map(lambda item: _jpeg(item[1][0], colours[item[1][1]], size, item[0]), enumerate(files))
            )
        return
    first: dict[int, Path] = {}
    for path, label in files:
        if label in first:
            _link(first[label], path)
        else:
            _jpeg(path, colours[label], size, None)
            first[label] = path


def write_cifar100(root: Path, seed: int = 0) -> Path:
    """``root/cifar-100-python/{train,test,meta}``: 50,000 / 10,000 images, labelled as the lists imply."""
    train_lists, test_lists = session_lists("cifar100")
    train = np.full(50_000, -1, dtype=np.int64)
    test = np.full(10_000, -1, dtype=np.int64)
    for t, (entries, tests) in enumerate(zip(train_lists, test_lists, strict=True)):
        first_class = 0 if t == 0 else CIFAR_BASE + CIFAR_WAYS * (t - 1)
        per_class, test_per_class = len(entries) // (CIFAR_BASE if t == 0 else CIFAR_WAYS), 100
        train[np.array(entries, dtype=np.int64)] = first_class + np.arange(len(entries)) // per_class
        test[np.array(tests, dtype=np.int64)] = first_class + np.arange(len(tests)) // test_per_class
    unlisted = np.flatnonzero(train < 0)
    counts = np.bincount(train[train >= 0], minlength=100)
    train[unlisted] = np.repeat(np.arange(100), CIFAR_PER_CLASS - counts)
    colours = _palette(100, seed) // 8 * 7  # leaves room for noise below 256
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for name, labels in (("train", train), ("test", test)):
        noise = rng.integers(0, 32, (len(labels), 1, 1024), dtype=np.uint8)
        data = (colours[labels][:, :, None] + noise).reshape(len(labels), 3072)
        blob = {b"data": data, b"fine_labels": labels.tolist(), b"filenames": [b"x.png"] * len(labels)}
        with open(folder / name, "wb") as handle:
            pickle.dump(blob, handle, protocol=4)
    with open(folder / "meta", "wb") as handle:
        pickle.dump({b"fine_label_names": [f"class_{c:02d}".encode() for c in range(100)]}, handle)
    return folder


def write_mini_imagenet(
    root: Path, layout: str = "topic", image_size: int = 8, distinct: bool = False, seed: int = 0
) -> Path:
    """Every image the lists' ``train.txt``/``test.txt`` name, in TOPIC's tree or the flat csv layout."""
    entries = {split: read_split("mini_imagenet", f"{split}.txt") for split in ("train", "test")}
    wnids = sorted({entry.split("/")[2] for entry in entries["train"]})
    label = {wnid: i for i, wnid in enumerate(wnids)}
    files = []
    for split, names in entries.items():
        rows = [(name.split("/")[2], name.rsplit("/", 1)[1]) for name in names]
        if layout == "topic":
            files += [(root / name, label[wnid]) for name, (wnid, _) in zip(names, rows, strict=True)]
        elif layout == "flat":
            files += [(root / "images" / file, label[wnid]) for wnid, file in rows]
            (root / "split").mkdir(parents=True, exist_ok=True)
            with open(root / "split" / f"{split}.csv", "w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(["filename", "label"])
                writer.writerows((file, wnid) for wnid, file in rows)
        else:
            raise ValueError(f"layout={layout!r}: use 'topic' or 'flat'")
    _write_images(files, _palette(len(wnids), seed), (image_size, image_size), distinct)
    return root


def write_cub200(root: Path, image_size: int = 8, distinct: bool = False, seed: int = 0) -> Path:
    """``root/CUB_200_2011`` with its four tables and every image of the lists' train/test partition."""
    train = read_split("cub200", "train.txt")
    test = set(read_split("cub200", "test.txt"))
    entries = sorted([*train, *test])
    folder = root / "CUB_200_2011"
    folder.mkdir(parents=True, exist_ok=True)
    relative = [entry.removeprefix(CUB_PREFIX) for entry in entries]
    classes = sorted({rel.split("/")[0] for rel in relative})
    class_id = {name: int(name.split(".")[0]) for name in classes}
    tables = {
        "images.txt": [f"{i} {rel}" for i, rel in enumerate(relative, start=1)],
        "train_test_split.txt": [f"{i} {int(e not in test)}" for i, e in enumerate(entries, start=1)],
        "image_class_labels.txt": [
            f"{i} {class_id[rel.split('/')[0]]}" for i, rel in enumerate(relative, start=1)
        ],
        "classes.txt": [f"{class_id[name]} {name}" for name in classes],
    }
    for name, lines in tables.items():
        (folder / name).write_text("\n".join(lines) + "\n")
    files = [(folder / "images" / rel, class_id[rel.split("/")[0]] - 1) for rel in relative]
    size = (image_size * 4 // 3, image_size)  # landscape, like most CUB photos
    _write_images(files, _palette(len(classes), seed), size, distinct)
    return folder
