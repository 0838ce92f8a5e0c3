"""CIFAR-100 from the official python pickles: sessions exactly as the standard lists say, val, errors."""

from __future__ import annotations

import pickle
from collections import Counter

import numpy as np
import pytest
import torch

from ckpd_core import DataError, build_benchmark, run_trial
from ckpd_core.data.fake import write_cifar100
from ckpd_core.data.splits import session_lists

from .helpers import real_format_config


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    write_cifar100(root)
    return root


@pytest.fixture(scope="module")
def pickles(cifar_root):
    def load(name):
        with open(cifar_root / "cifar-100-python" / name, "rb") as handle:
            return pickle.load(handle, encoding="bytes")

    return load("train"), load("test")


@pytest.fixture(scope="module")
def bench(cifar_root):
    return build_benchmark("cifar100", str(cifar_root))


@pytest.mark.slow
def test_sessions_hold_exactly_the_listed_images_with_their_fine_labels(bench, pickles):
    train_lists, test_lists = session_lists("cifar100")
    train, test = pickles
    fine = np.array(train[b"fine_labels"])
    assert bench.num_sessions == 9 and bench.session_classes[0] == list(range(60))
    assert bench.session_classes[1:] == [list(range(s, s + 5)) for s in range(60, 100, 5)]
    base = bench.train_set(0)
    base_val = [k for k in bench.val.keys if fine[int(k)] < 60]
    assert sorted(base.keys + base_val) == sorted(train_lists[0])
    assert base.labels.tolist() == fine[[int(k) for k in base.keys]].tolist()
    for session in range(1, 9):
        shots = bench.train_set(session)
        assert shots.keys == train_lists[session]
        assert shots.labels.tolist() == fine[[int(k) for k in shots.keys]].tolist()
        rows = [int(k) for k in shots.keys]
        expected = torch.from_numpy(train[b"data"][rows]).view(-1, 3, 32, 32)
        assert torch.equal(shots.raw(), expected)
    final = bench.eval_set(8, "test")
    assert sorted(final.keys) == sorted(k for t in test_lists for k in t) and len(final) == 10_000
    assert final.labels.tolist() == np.array(test[b"fine_labels"])[[int(k) for k in final.keys]].tolist()


@pytest.mark.slow
def test_val_is_held_out_of_training(bench, pickles):
    fine = np.array(pickles[0][b"fine_labels"])
    val = [int(k) for k in bench.val.keys]
    train = {int(k) for k in bench.train.keys}
    assert len(set(val)) == len(val) and not train & set(val)
    assert bench.val.store is bench.train.store and bench.test.store is not bench.train.store
    assert Counter(fine[val].tolist()) == {c: 50 for c in range(100)}  # 10% of 500, as many per novel class
    assert len(bench.train_set(0)) == 60 * 450


@pytest.mark.slow
def test_eval_feeds_the_whole_image_and_training_crops_it(bench):
    bench.use_input_config(dict(input_size=(3, 32, 32), mean=(0.5,) * 3, std=(0.5,) * 3, crop_pct=0.9))
    rows = torch.arange(8)
    assert torch.allclose(bench.test.load(rows), bench.test.raw(rows).float() / 127.5 - 1)
    augmented = bench.train.load(rows, augment=True, generator=torch.Generator().manual_seed(0))
    assert augmented.shape == (8, 3, 32, 32) and not torch.allclose(augmented, bench.train.load(rows))


@pytest.mark.slow
def test_missing_or_corrupt_pickles_give_a_clear_error(cifar_root, tmp_path):
    with pytest.raises(DataError, match=r"cifar-100-python/\{train,test,meta\}"):
        build_benchmark("cifar100", str(tmp_path))
    for name in ("test", "meta"):
        (tmp_path / name).symlink_to(cifar_root / "cifar-100-python" / name)
    (tmp_path / "train").write_bytes(b"\x80\x04garbage")
    with pytest.raises(DataError, match="train is not a readable CIFAR-100 pickle"):
        build_benchmark("cifar100", str(tmp_path))
    short = {b"data": np.zeros((100, 3072), np.uint8), b"fine_labels": [0] * 100}
    (tmp_path / "train").write_bytes(pickle.dumps(short))
    with pytest.raises(DataError, match="session_1.txt: 29.* listed image"):
        build_benchmark("cifar100", str(tmp_path))
    flat = {b"data": np.zeros((100, 32, 32, 3), np.uint8), b"fine_labels": [0] * 100}
    (tmp_path / "train").write_bytes(pickle.dumps(flat))
    with pytest.raises(DataError, match=r"uint8 array \(N, 3072\)"):
        build_benchmark("cifar100", str(tmp_path))


@pytest.mark.slow
def test_trial_runs_end_to_end(cifar_root):
    result = run_trial(real_format_config("cifar100", str(cifar_root), feature_dim=80))
    assert [row["n_classes"] for row in result.sessions] == [60, 65, 70]
    assert all(0 <= row["acc_all"] <= 1 and 0 <= row["val_acc_new"] <= 1 for row in result.sessions)
    assert result.sessions[2]["n_adapted"] == 2
