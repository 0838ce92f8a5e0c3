"""CUB-200-2011 in its official layout: sessions exactly as the standard lists say, val held out, errors."""

from __future__ import annotations

import os
import shutil
from collections import Counter

import pandas as pd
import pytest
import torch

from ckpd_core import ConfigError, DataError, build_benchmark
from ckpd_core.data.splits import read_split, session_lists

from .helpers import crash_then_resume, real_format_config


@pytest.fixture(scope="module")
def bench(cub_root):
    return build_benchmark("cub200", str(cub_root), store_size=16)


def class_of(key: str) -> int:
    return int(key.split("/")[2].split(".")[0]) - 1


def test_sessions_hold_exactly_the_listed_classes_and_images(bench):
    train_lists, test_lists = session_lists("cub200")
    assert bench.num_sessions == 11 and bench.num_classes == 200
    assert bench.session_classes == [list(range(100))] + [list(range(s, s + 10)) for s in range(100, 200, 10)]
    assert bench.class_names[0] == "Black_footed_Albatross"
    base, val = bench.train_set(0), bench.val
    assert set(base.keys) | {k for k in val.keys if class_of(k) < 100} == set(train_lists[0])
    for session in range(1, 11):
        shots = bench.train_set(session)
        assert shots.keys == train_lists[session]  # same images, same order
        assert shots.labels.tolist() == [class_of(k) for k in shots.keys]
        test = bench.eval_set(session, "test")
        assert sorted(test.keys) == sorted(k for t in test_lists[: session + 1] for k in t)
    assert base.labels.tolist() == [class_of(k) for k in base.keys]


def test_val_is_held_out_of_training_and_test(bench):
    train_keys = set(bench.train.keys)
    val_keys = bench.val.keys
    assert len(set(val_keys)) == len(val_keys) and not train_keys & set(val_keys)
    assert not set(read_split("cub200", "test.txt")) & (train_keys | set(val_keys))
    assert set(val_keys) <= set(read_split("cub200", "train.txt"))
    per_class = Counter(class_of(k) for k in val_keys)
    assert all(per_class[c] == 3 for c in range(200))  # 10% of 30 base images; as many for novel classes
    assert len(bench.train_set(0)) == 100 * 27
    assert bench.val.labels.tolist() == [class_of(k) for k in val_keys]


def test_val_split_is_seeded(cub_root, bench):
    again = build_benchmark("cub200", str(cub_root), store_size=16)
    other = build_benchmark("cub200", str(cub_root), store_size=16, seed=1)
    assert again.val.keys == bench.val.keys and other.val.keys != bench.val.keys


def test_images_are_decoded_at_the_store_size_and_fed_at_the_backbone_size(bench):
    raw = bench.train_set(1).raw(torch.arange(3))
    assert raw.shape == (3, 3, 16, 16) and raw.dtype == torch.uint8
    bench.use_input_config(dict(input_size=(3, 24, 24), mean=(0.5,) * 3, std=(0.5,) * 3, crop_pct=1.0))
    x = bench.eval_set(0, "val").load(torch.arange(4))
    assert x.shape == (4, 3, 24, 24) and x.dtype == torch.float32


def test_bad_settings_are_refused_before_reading(cub_root):
    with pytest.raises(ConfigError, match="cub200 needs data_root"):
        build_benchmark("cub200")
    with pytest.raises(ConfigError, match="val_fraction=1.5"):
        build_benchmark("cub200", str(cub_root), val_fraction=1.5)
    with pytest.raises(ConfigError, match="unknown setting.*shots"):
        build_benchmark("cub200", str(cub_root), shots=1)
    with pytest.raises(ConfigError, match="crop_scale"):
        build_benchmark("cub200", str(cub_root), crop_scale=[0.9, 0.1])


@pytest.fixture
def broken_root(cub_root, tmp_path):
    """A copy of the fixture (tables copied, images hard-linked) that a test may damage."""
    shutil.copytree(cub_root, tmp_path / "cub", copy_function=os.link)
    folder = tmp_path / "cub" / "CUB_200_2011"
    for name in ("images.txt", "image_class_labels.txt"):
        (folder / name).unlink()
        shutil.copyfile(cub_root / "CUB_200_2011" / name, folder / name)
    return folder


def test_missing_dataset_and_tables_are_named(tmp_path, broken_root):
    with pytest.raises(DataError, match="CUB_200_2011/ with images.txt, train_test_split.txt"):
        build_benchmark("cub200", str(tmp_path / "nowhere"))
    (broken_root / "classes.txt").unlink()
    with pytest.raises(DataError, match="classes.txt"):
        build_benchmark("cub200", str(broken_root.parent))


def test_malformed_table_line_is_named(broken_root):
    with open(broken_root / "images.txt", "a") as handle:
        handle.write("oops\n")
    with pytest.raises(DataError, match=r"images.txt, line 11789"):
        build_benchmark("cub200", str(broken_root.parent))


def test_missing_and_corrupt_images_are_named(broken_root):
    shot = broken_root.parent / read_split("cub200", "session_2.txt")[0]
    shot.unlink()
    with pytest.raises(DataError, match=rf"1 image file\(s\) are missing, e.g. .*{shot.name}"):
        build_benchmark("cub200", str(broken_root.parent))
    shot.write_bytes(b"not a jpeg")
    bench = build_benchmark("cub200", str(broken_root.parent), store_size=16)
    bench.train_set(2).raw()  # other images still load
    with pytest.raises(DataError, match=rf"{shot.name} cannot be read .* missing or corrupt"):
        bench.train_set(1).raw()


def test_labels_contradicting_the_lists_are_refused(broken_root):
    lines = (broken_root / "image_class_labels.txt").read_text().splitlines()
    images = (broken_root / "images.txt").read_text().splitlines()
    first_test = read_split("cub200", "test_2.txt")[0].removeprefix("CUB_200_2011/images/")
    row = next(i for i, line in enumerate(images) if line.split()[1] == first_test)
    lines[row] = f"{row + 1} 150"  # a session-2 test image claimed by a class of session 6
    (broken_root / "image_class_labels.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="test_2.txt holds classes .* do not match the standard lists"):
        build_benchmark("cub200", str(broken_root.parent))


@pytest.mark.slow
def test_trial_runs_end_to_end_and_resumes_with_file_backed_replay(cub_root, tmp_path):
    config = real_format_config("cub200", str(cub_root), feature_dim=128, store_size=32)
    reported = []
    result = crash_then_resume(config, tmp_path, reported)  # the resumed run's replay comes from the state
    assert [row["session"] for row in reported] == [0, 1, 2]
    assert [row["n_classes"] for row in result.sessions] == [100, 110, 120]
    assert [row["n_adapted"] for row in result.sessions] == [0, 2, 2]
    for row in result.sessions:
        assert 0 <= row["acc_all"] <= 1 and 0 <= row["val_acc_all"] <= 1
    pd.testing.assert_frame_equal(result.to_frame(), pd.DataFrame(reported))
