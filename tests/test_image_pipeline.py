"""Image pipelines and file-backed image sets: crops, decoding, the uint8 cache, the ImageSet API."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ckpd_core import DataError, ReplayMemory
from ckpd_core.data import ImageSet, StoredImageSet
from ckpd_core.data import stores as stores_module
from ckpd_core.data.benchmark import Benchmark
from ckpd_core.data.stores import FileStore, decode_image
from ckpd_core.data.transforms import CropTransform, ShiftTransform

GREY = dict(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def ramp(n: int = 4, side: int = 16) -> torch.Tensor:
    values = torch.arange(n * 3 * side * side) % 251
    return values.to(torch.uint8).view(n, 3, side, side)


def test_eval_pipeline_resizes_short_side_then_takes_the_centre():
    raw = ramp(side=16)
    exact = CropTransform(**GREY, size=14, crop_pct=0.875)(raw, augment=False, generator=None)
    assert torch.allclose(exact, raw[..., 1:15, 1:15].float() / 127.5 - 1)  # crop 14 of 16, no resampling
    resized = CropTransform(**GREY, size=8, crop_pct=1.0)(raw, augment=False, generator=None)
    assert resized.shape == (4, 3, 8, 8)


def test_train_pipeline_is_seeded_and_reduces_to_identity_without_randomness():
    raw = ramp()
    transform = CropTransform(**GREY, size=12)
    first = transform(raw, augment=True, generator=torch.Generator().manual_seed(3))
    again = transform(raw, augment=True, generator=torch.Generator().manual_seed(3))
    other = transform(raw, augment=True, generator=torch.Generator().manual_seed(4))
    assert first.shape == (4, 3, 12, 12) and torch.equal(first, again) and not torch.equal(first, other)
    assert float(first.min()) >= -1 and float(first.max()) <= 1
    still = CropTransform(**GREY, size=16, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=False, jitter=0.0)
    out = still(raw, augment=True, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out, raw.float() / 127.5 - 1, atol=1e-5)


def test_flip_mirrors_and_jitter_changes_colours():
    raw = ramp(n=64)
    flips = CropTransform(**GREY, size=16, scale=(1.0, 1.0), ratio=(1.0, 1.0), jitter=0.0)
    out = flips(raw, augment=True, generator=torch.Generator().manual_seed(0))
    plain = raw.float() / 127.5 - 1
    mirrored = [torch.allclose(o, p.flip(-1), atol=1e-5) for o, p in zip(out, plain, strict=True)]
    kept = [torch.allclose(o, p, atol=1e-5) for o, p in zip(out, plain, strict=True)]
    assert all(m or k for m, k in zip(mirrored, kept, strict=True)) and 10 < sum(mirrored) < 54
    jitter = CropTransform(**GREY, size=16, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=False, jitter=0.4)
    assert not torch.allclose(jitter(raw, augment=True, generator=torch.Generator()), plain, atol=1e-3)


def test_pipeline_follows_the_backbone_data_config():
    config = dict(input_size=(3, 224, 224), mean=(0.1, 0.2, 0.3), std=(0.4, 0.5, 0.6), crop_pct=0.9)
    transform = CropTransform.from_data_config(config, scale=(0.5, 1.0), crop_pct=None)
    assert (transform.size, transform.crop_pct, transform.mean, transform.scale) == (
        224,
        0.9,
        (0.1, 0.2, 0.3),
        (0.5, 1.0),
    )


def test_decode_resizes_the_short_side_and_keeps_the_centre(tmp_path):
    pixels = np.zeros((40, 80, 3), np.uint8)
    pixels[:, 20:60] = 255  # the white centre square of a 2:1 image
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    out = decode_image(str(tmp_path / "wide.png"), 20)
    assert out.shape == (3, 20, 20) and out.dtype == np.uint8
    assert out[:, :, 1:-1].min() == 255 and out.min() > 200  # only the filter's edge touches the black sides
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(DataError, match="bad.jpg cannot be read"):
        decode_image(str(tmp_path / "bad.jpg"), 20)


@pytest.fixture
def files(tmp_path):
    paths = []
    for i in range(6):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(np.full((10, 10, 3), 40 * i, np.uint8)).save(paths[-1])
    return paths


def counting_decoder(monkeypatch) -> list[str]:
    calls: list[str] = []

    def decode(path, size):
        calls.append(path)
        return decode_image(path, size)

    monkeypatch.setattr(stores_module, "decode_image", decode)
    return calls


def test_cache_decodes_each_file_once(files, monkeypatch):
    calls = counting_decoder(monkeypatch)
    store = FileStore(files, [f"k{i}" for i in range(6)], size=8, workers=2)
    store.enable_cache()
    first = store.read(np.array([5, 0, 5, 1, 2]))
    again = store.read(np.array([0, 1, 2, 3, 4, 5]))
    assert sorted(calls) == sorted(files)  # five distinct, then the one not yet seen
    assert torch.equal(first[0], again[5]) and int(first[0, 0, 0, 0]) == 200
    uncached = FileStore(files, [f"k{i}" for i in range(6)], size=8, workers=1)
    calls.clear()
    uncached.read(np.array([1, 1]))
    assert calls == [files[1], files[1]]


def test_stored_sets_implement_the_image_set_api(files):
    store = FileStore(files, [f"k{i}" for i in range(6)], size=8, workers=1)
    transform = CropTransform(**GREY, size=8, crop_pct=1.0)
    images = StoredImageSet(store, np.arange(6), torch.tensor([0, 0, 1, 1, 2, 2]), transform)
    part = images.subset(torch.tensor([4, 1]))
    assert part.keys == ["k4", "k1"] and part.labels.tolist() == [2, 0] and part.store is store
    joined = part.concat([images.subset(torch.tensor([0]))])
    assert isinstance(joined, StoredImageSet) and joined.keys == ["k4", "k1", "k0"]
    in_memory = part.in_memory()
    assert isinstance(in_memory, ImageSet) and in_memory.transform is transform
    assert torch.equal(in_memory.images, part.images)
    mixed = part.concat([in_memory])
    assert isinstance(mixed, ImageSet) and len(mixed) == 4
    assert torch.equal(mixed.load(), torch.cat([part.load(), in_memory.load()]))
    batches = list(images.batches(4))
    assert [len(labels) for _, labels in batches] == [4, 2] and batches[0][0].shape == (4, 3, 8, 8)


def test_replay_keeps_file_backed_exemplars_in_memory(files):
    store = FileStore(files, [f"k{i}" for i in range(6)], size=8, workers=1)
    images = StoredImageSet(store, np.arange(6), torch.tensor([0, 0, 1, 1, 2, 2]), ShiftTransform(**GREY))
    replay = ReplayMemory(per_class=1, seed=0)
    replay.add(images)
    assert all(isinstance(part, ImageSet) for part in replay.parts) and replay.classes == [0, 1, 2]
    assert replay.image_set().images.shape == (3, 3, 8, 8)


def test_input_config_switches_real_pipelines_but_not_fixed_ones():
    fixed = ImageSet(ramp(), torch.arange(4))
    config = dict(input_size=(3, 8, 8), mean=(0.5,) * 3, std=(0.5,) * 3, crop_pct=1.0)
    icons = Benchmark("icons", list("abcd"), [[0, 1], [2, 3]], fixed, fixed, fixed, [torch.arange(2)] * 2)
    icons.use_input_config(config)
    assert icons.train.transform is fixed.transform
    real = Benchmark(
        "real",
        list("abcd"),
        [[0, 1], [2, 3]],
        fixed,
        fixed,
        fixed,
        [torch.arange(2)] * 2,
        CropTransform.from_data_config,
    )
    real.use_input_config(config)
    assert isinstance(real.train.transform, CropTransform) and real.test.load().shape == (4, 3, 8, 8)
    assert fixed.transform is icons.train.transform  # the original set is left alone
