"""miniImageNet in TOPIC's folder tree and in the flat csv layout: the same sessions, val held out, errors."""

from __future__ import annotations

import os
import shutil
from collections import Counter

import pytest

from ckpd_core import DataError, build_benchmark, run_trial
from ckpd_core.data.fake import write_mini_imagenet
from ckpd_core.data.splits import read_split, session_lists

from .helpers import real_format_config


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("mini")
    return {layout: write_mini_imagenet(base / layout, layout=layout) for layout in ("topic", "flat")}


@pytest.fixture(scope="module")
def benches(roots):
    return {
        layout: build_benchmark("mini_imagenet", str(root), store_size=8) for layout, root in roots.items()
    }


def wnid(key: str) -> str:
    return key.split("/")[2]


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["topic", "flat"])
def test_sessions_hold_exactly_the_listed_classes_and_images(benches, layout):
    bench = benches[layout]
    train_lists, test_lists = session_lists("mini_imagenet")
    wnids = sorted({wnid(k) for k in read_split("mini_imagenet", "train.txt")})
    assert bench.class_names == wnids and bench.num_sessions == 9
    assert bench.session_classes == [list(range(60))] + [list(range(s, s + 5)) for s in range(60, 100, 5)]
    base = bench.train_set(0)
    base_val = [k for k in bench.val.keys if wnids.index(wnid(k)) < 60]
    assert sorted(base.keys + base_val) == sorted(train_lists[0])
    for session in range(1, 9):
        shots = bench.train_set(session)
        assert shots.keys == train_lists[session]
        assert [bench.class_names[c] for c in shots.labels] == [wnid(k) for k in shots.keys]
        assert sorted(bench.eval_set(session, "test").keys) == sorted(
            k for t in test_lists[: session + 1] for k in t
        )
    paths = bench.train_set(1).store.paths
    assert all(os.path.isfile(p) for p in paths[:50])
    if layout == "flat":
        assert os.path.basename(os.path.dirname(paths[0])) == "images"


@pytest.mark.slow
def test_both_layouts_give_the_same_benchmark(benches):
    topic, flat = benches["topic"], benches["flat"]
    for split in ("train", "val", "test"):
        assert getattr(topic, split).keys == getattr(flat, split).keys
        assert getattr(topic, split).labels.tolist() == getattr(flat, split).labels.tolist()


@pytest.mark.slow
def test_val_is_held_out_of_training_and_test(benches):
    bench = benches["topic"]
    train, val, test = set(bench.train.keys), bench.val.keys, set(bench.test.keys)
    assert len(set(val)) == len(val) and not train & set(val) and not test & (train | set(val))
    assert set(val) <= set(read_split("mini_imagenet", "train.txt"))
    assert Counter(bench.val.labels.tolist()) == {c: 50 for c in range(100)}


@pytest.mark.slow
def test_val_per_novel_class_and_max_per_class(roots):
    bench = build_benchmark("mini_imagenet", str(roots["flat"]), val_per_novel_class=7, max_per_class=20)
    counts = Counter(bench.val.labels.tolist())
    assert counts[0] == 20 and counts[99] == 7
    assert len(bench.train_set(0)) == 60 * 20 and len(bench.eval_set(8, "test")) == 100 * 20


@pytest.fixture
def flat_copy(roots, tmp_path):
    """The flat fixture with hard-linked images, safe to damage file by file (unlink before writing)."""
    shutil.copytree(roots["flat"], tmp_path / "mini", copy_function=os.link)
    return tmp_path / "mini"


@pytest.mark.slow
def test_missing_layout_csv_rows_and_images_are_named(flat_copy, tmp_path):
    with pytest.raises(
        DataError, match=r"MINI-ImageNet/\{train,test\}/<wnid>/\*\.jpg or .*split/\{train,test\}\.csv"
    ):
        build_benchmark("mini_imagenet", str(tmp_path / "nowhere"))
    test_csv = flat_copy / "split" / "test.csv"
    lines = test_csv.read_text().splitlines()
    test_csv.unlink()
    with pytest.raises(DataError, match="split/test.csv"):
        build_benchmark("mini_imagenet", str(flat_copy))
    test_csv.write_text("file,wnid\n" + "\n".join(lines[1:]) + "\n")
    with pytest.raises(DataError, match="header must be 'filename,label'"):
        build_benchmark("mini_imagenet", str(flat_copy))
    entry = read_split("mini_imagenet", "test_2.txt")[0]
    test_csv.write_text("\n".join(line for line in lines if line.split(",")[0] != entry.rsplit("/", 1)[1]))
    with pytest.raises(DataError, match=rf"test_2.txt: 1 listed image\(s\) are not in the dataset.*{entry}"):
        build_benchmark("mini_imagenet", str(flat_copy))
    test_csv.write_text("\n".join(lines) + "\n")
    shot = flat_copy / "images" / read_split("mini_imagenet", "session_3.txt")[4].rsplit("/", 1)[1]
    shot.unlink()
    with pytest.raises(DataError, match=rf"1 image file\(s\) are missing, e.g. .*{shot.name}"):
        build_benchmark("mini_imagenet", str(flat_copy))
    shot.write_bytes(b"\xff\xd8\xff truncated jpeg")
    bench = build_benchmark("mini_imagenet", str(flat_copy), store_size=8, num_sessions=3)
    with pytest.raises(DataError, match=rf"{shot.name} cannot be read .* missing or corrupt"):
        bench.train_set(2).raw()


@pytest.mark.slow
def test_trial_runs_end_to_end(roots):
    config = real_format_config("mini_imagenet", str(roots["topic"]), feature_dim=80, store_size=32)
    result = run_trial(config)
    assert [row["n_classes"] for row in result.sessions] == [60, 65, 70]
    assert all(0 <= row["acc_all"] <= 1 and 0 <= row["val_acc_all"] <= 1 for row in result.sessions)
    assert result.sessions[1]["n_adapted"] == 2
