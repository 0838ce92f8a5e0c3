"""Where a real dataset's images live: a decoded array in memory, or image files decoded on demand.

Files are decoded by a thread pool (PIL releases the GIL while decoding and resizing) to a fixed
square size and, when the benchmark's memory budget allows, kept in a uint8 cache so each image is
decoded once per trial. Nothing is ever held as float.
"""

from __future__ import annotations

import os
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import numpy as np
import torch
from PIL import Image

from ..errors import DataError
from .benchmark import BaseImageSet
from .transforms import Transform

_MAX_LISTED = 5


class Store(Protocol):
    """Every image of one dataset partition, addressed by row; ``keys`` name them as the split lists do."""

    keys: list[str]

    def __len__(self) -> int: ...

    def read(self, rows: np.ndarray) -> torch.Tensor: ...


class ArrayStore:
    """Images already decoded in memory as one uint8 ``(N, 3, H, W)`` tensor (e.g. CIFAR-100's pickles)."""

    def __init__(self, images: torch.Tensor, keys: list[str]) -> None:
        self.images = images
        self.keys = keys

    def __len__(self) -> int:
        return self.images.shape[0]

    def read(self, rows: np.ndarray) -> torch.Tensor:
        return self.images[torch.from_numpy(rows)]


def decode_image(path: str, size: int) -> np.ndarray:
    """``path`` as uint8 ``(3, size, size)``: short side resized to ``size``, centre square kept."""
    try:
        with Image.open(path) as image:
            image.draft("RGB", (size, size))  # JPEG: let libjpeg decode at a reduced scale >= size
            image = image.convert("RGB")
            width, height = image.size
            scale = size / min(width, height)
            resized = (max(size, round(width * scale)), max(size, round(height * scale)))
            left, top = (resized[0] - size) // 2, (resized[1] - size) // 2
            image = image.resize(resized, Image.BILINEAR).crop((left, top, left + size, top + size))
            return np.array(image, dtype=np.uint8).transpose(2, 0, 1)
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"image {path} cannot be read ({exc}): the file is missing or corrupt") from exc


class FileStore:
    """Image files decoded on demand to ``size`` x ``size``; cached as uint8 after ``enable_cache()``.

    ``paths`` are strings (tens of thousands of ``Path`` objects cost seconds to build and compare).
    """

    def __init__(self, paths: list[str], keys: list[str], size: int, workers: int) -> None:
        self.paths = paths
        self.keys = keys
        self.size = size
        self.workers = max(1, workers)
        self._pool: ThreadPoolExecutor | None = None
        self._cache: torch.Tensor | None = None
        self._cached = np.zeros(len(paths), dtype=bool)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def image_bytes(self) -> int:
        return 3 * self.size * self.size

    def enable_cache(self) -> None:
        """Keep every decoded image (memory is committed only as rows are filled)."""
        if self._cache is None:
            self._cache = torch.empty((len(self.paths), 3, self.size, self.size), dtype=torch.uint8)

    def check_files(self, rows: np.ndarray, what: str) -> None:
        """Raise DataError listing the files of ``rows`` that do not exist (one listing per folder)."""
        by_folder: dict[str, list[str]] = defaultdict(list)
        for row in np.unique(rows):
            folder, name = os.path.split(self.paths[row])
            by_folder[folder].append(name)
        missing = []
        for folder, names in by_folder.items():
            present = set(os.listdir(folder)) if os.path.isdir(folder) else set()
            missing += [os.path.join(folder, name) for name in names if name not in present]
        if missing:
            examples = ", ".join(missing[:_MAX_LISTED])
            raise DataError(f"{what}: {len(missing)} image file(s) are missing, e.g. {examples}")

    def read(self, rows: np.ndarray) -> torch.Tensor:
        if self._cache is None:
            return self._decode(rows)
        todo = np.unique(rows[~self._cached[rows]])
        if len(todo):
            self._cache[torch.from_numpy(todo)] = self._decode(todo)
            self._cached[todo] = True
        return self._cache[torch.from_numpy(rows)]

    def _decode(self, rows: np.ndarray) -> torch.Tensor:
        paths = [self.paths[row] for row in rows]
        if not paths:
            return torch.empty((0, 3, self.size, self.size), dtype=torch.uint8)
        if len(paths) < 4 or self.workers == 1:
            images = [decode_image(path, self.size) for path in paths]
        else:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="decode")
            images = list(self._pool.map(decode_image, paths, [self.size] * len(paths)))
        return torch.from_numpy(np.stack(images))


class StoredImageSet(BaseImageSet):
    """Some rows of a ``Store`` with their labels; subsets and concatenations share the store (and cache)."""

    def __init__(self, store: Store, rows: np.ndarray, labels: torch.Tensor, transform: Transform) -> None:
        if len(rows) != labels.shape[0]:
            raise ValueError("StoredImageSet needs one label per row")
        self.store = store
        self.rows = np.asarray(rows, dtype=np.int64)
        self.labels = labels.long()
        self.transform = transform

    @property
    def keys(self) -> list[str]:
        """How the standard split lists name each image of this set."""
        return [self.store.keys[row] for row in self.rows]

    def subset(self, indices: torch.Tensor) -> StoredImageSet:
        chosen = np.asarray(indices.cpu(), dtype=np.int64).reshape(-1)
        return StoredImageSet(self.store, self.rows[chosen], self.labels[indices], self.transform)

    def raw(self, indices: torch.Tensor | None = None) -> torch.Tensor:
        rows = (
            self.rows if indices is None else self.rows[np.asarray(indices.cpu(), dtype=np.int64).reshape(-1)]
        )
        return self.store.read(rows)

    def concat(self, others: list[BaseImageSet]) -> BaseImageSet:
        same_store = [o for o in others if isinstance(o, StoredImageSet) and o.store is self.store]
        if len(same_store) < len(others):  # mixed storage: decode everything into memory
            return super().concat(others)
        rows = np.concatenate([self.rows, *(o.rows for o in same_store)])
        labels = torch.cat([self.labels, *(o.labels for o in same_store)])
        return StoredImageSet(self.store, rows, labels, self.transform)
