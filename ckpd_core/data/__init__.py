"""Benchmarks behind one interface: the embedded ``icons`` benchmark (real datasets plug in the same way)."""

from __future__ import annotations

from ..errors import ConfigError
from .benchmark import Benchmark, ImageSet
from .icons import IconsSettings, icons_benchmark

BENCHMARKS = {"icons": icons_benchmark}


def build_benchmark(name: str, data_root: str | None = None, **kwargs) -> Benchmark:
    """The benchmark called ``name``; ``kwargs`` are its own settings."""
    if name not in BENCHMARKS:
        raise ConfigError(f"benchmark={name!r} is unknown; choose one of {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name](data_root, **kwargs)


__all__ = ["BENCHMARKS", "Benchmark", "IconsSettings", "ImageSet", "build_benchmark", "icons_benchmark"]
