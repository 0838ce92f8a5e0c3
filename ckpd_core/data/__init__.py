"""Benchmarks behind one interface: the embedded ``icons`` benchmark and the real FSCIL datasets."""

from __future__ import annotations

from ..errors import ConfigError
from . import cifar100, cub200, mini_imagenet
from .benchmark import BaseImageSet, Benchmark, ImageSet
from .cifar100 import cifar100_benchmark
from .cub200 import cub200_benchmark
from .fscil import DatasetSettings
from .icons import IconsSettings, icons_benchmark
from .mini_imagenet import mini_imagenet_benchmark
from .splits import SPLIT_DATASETS, num_sessions
from .stores import StoredImageSet

BENCHMARKS = {
    "icons": icons_benchmark,
    "cifar100": cifar100_benchmark,
    "mini_imagenet": mini_imagenet_benchmark,
    "cub200": cub200_benchmark,
}


def build_benchmark(name: str, data_root: str | None = None, **kwargs) -> Benchmark:
    """The benchmark called ``name``; ``kwargs`` are its own settings."""
    if name not in BENCHMARKS:
        raise ConfigError(f"benchmark={name!r} is unknown; choose one of {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name](data_root, **kwargs)


def count_sessions(name: str, **kwargs) -> int:
    """How many sessions benchmark ``name`` has with ``kwargs``, without reading any data.

    For sweep drivers, which may run on a node that does not hold the dataset.
    """
    if name == "icons":
        icons = IconsSettings(**kwargs)
        return 1 + (icons.num_classes - icons.base_classes) // icons.ways
    if name not in SPLIT_DATASETS:
        raise ConfigError(f"benchmark={name!r} is unknown; choose one of {', '.join(BENCHMARKS)}")
    standard = num_sessions(name)
    return min(standard, DatasetSettings.parse(name, kwargs).num_sessions or standard)


def check_data_root(name: str, data_root: str | None) -> None:
    """Refuse, without reading any data, a real dataset (a known benchmark, as ``count_sessions``
    checks) without ``data_root``: a ConfigError saying which folder to set."""
    if name != "icons" and data_root is None:
        # find_root(None) raises the ConfigError that says which folder data_root must hold
        {"cifar100": cifar100, "mini_imagenet": mini_imagenet, "cub200": cub200}[name].find_root(None)


__all__ = [
    "BENCHMARKS",
    "BaseImageSet",
    "Benchmark",
    "DatasetSettings",
    "IconsSettings",
    "ImageSet",
    "StoredImageSet",
    "build_benchmark",
    "check_data_root",
    "cifar100_benchmark",
    "count_sessions",
    "cub200_benchmark",
    "icons_benchmark",
    "mini_imagenet_benchmark",
]
