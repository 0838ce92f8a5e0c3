"""The embedded icons benchmark: protocol shape, disjoint splits, determinism, disk cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ckpd_core import ConfigError, build_benchmark
from ckpd_core.data.icons import EXCLUDED_CONCEPTS, IconsSettings, icon_styles, load_icons

from .helpers import TINY_BENCHMARK


def test_concepts_come_from_all_three_font_families():
    styles = icon_styles()
    assert len(styles) >= 100
    assert not EXCLUDED_CONCEPTS & set(styles)
    for name, variants in styles.items():
        fonts = {path.name.split("-")[0] for path, _ in variants}
        assert {"phosphor", "fontawesome6", "materialdesignicons6"} <= fonts, name
        assert len(variants) >= 7  # 5 Phosphor weights, FA6, MDI6


def test_default_protocol_is_60_base_plus_8_sessions_of_5_way_5_shot():
    settings = IconsSettings()
    assert (settings.num_classes, settings.base_classes, settings.ways, settings.shots) == (100, 60, 5, 5)


def test_sessions_classes_and_shots(icons_cache):
    bench = build_benchmark("icons", icons_cache, **TINY_BENCHMARK)
    assert bench.num_sessions == 3
    assert bench.session_classes == [list(range(10)), [10, 11, 12, 13, 14], [15, 16, 17, 18, 19]]
    base = bench.train_set(0)
    assert len(base) == 10 * 30 and set(base.labels.tolist()) == set(range(10))
    shots = bench.train_set(2)
    assert len(shots) == 25
    assert torch.equal(torch.bincount(shots.labels, minlength=20)[15:], torch.full((5,), 5))
    for session in range(3):
        seen = set(bench.seen_classes(session))
        for split in ("val", "test"):
            data = bench.eval_set(session, split)
            assert set(data.labels.tolist()) == seen
            assert len(data) == 6 * len(seen)


def test_splits_are_disjoint_images(icons_cache):
    bench = build_benchmark("icons", icons_cache, **TINY_BENCHMARK)

    def keys(images: torch.Tensor) -> set[bytes]:
        return {img.numpy().tobytes() for img in images}

    train, val, test = keys(bench.train.images), keys(bench.val.images), keys(bench.test.images)
    assert len(train) == len(bench.train)  # no duplicate renders either
    assert not train & val and not train & test and not val & test


def test_rendering_is_deterministic_and_cached(tmp_path):
    settings = IconsSettings(**TINY_BENCHMARK)
    first = load_icons(settings, tmp_path)
    files = list(tmp_path.glob("icons-*.npz"))
    assert len(files) == 1 and not list(tmp_path.glob("*.tmp"))
    stamp = files[0].stat().st_mtime_ns
    again = load_icons(settings, tmp_path)
    assert files[0].stat().st_mtime_ns == stamp  # read back, not re-rendered
    fresh = load_icons(settings, tmp_path / "other")
    for key in first:
        assert np.array_equal(first[key], again[key]) and np.array_equal(first[key], fresh[key])
    other_seed = load_icons(IconsSettings(**{**TINY_BENCHMARK, "seed": 1}), tmp_path)
    assert not np.array_equal(first["train_images"], other_seed["train_images"])


def test_images_are_32px_rgb_and_normalised(icons_cache):
    bench = build_benchmark("icons", icons_cache, **TINY_BENCHMARK)
    assert bench.train.images.shape[1:] == (3, 32, 32) and bench.train.images.dtype == torch.uint8
    x = bench.train.load(torch.arange(64))
    assert x.dtype == torch.float32 and -1.0 <= float(x.min()) and float(x.max()) <= 1.0
    shifted = bench.train.load(torch.arange(64), augment=True, generator=torch.Generator().manual_seed(0))
    assert shifted.shape == x.shape and not torch.equal(shifted, x)


def test_bad_settings_are_rejected(icons_cache):
    with pytest.raises(ConfigError, match="ways"):
        build_benchmark("icons", icons_cache, num_classes=23, base_classes=10, ways=5)
    with pytest.raises(ConfigError, match="colour"):
        build_benchmark("icons", icons_cache, colour=True)
    with pytest.raises(ConfigError, match="benchmark='cifar10'"):
        build_benchmark("cifar10")
