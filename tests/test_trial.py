"""The session loop end to end on a tiny icons benchmark."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ckpd_core import (
    PEFT_MODES,
    ConfigError,
    DataError,
    DecomposedLinear,
    TrialConfig,
    run_trial,
    trial_summary,
)
from ckpd_core.models import create_neck

from .helpers import crash_then_resume

SESSION_COLUMNS = {
    "session",
    "n_classes",
    "acc_all",
    "acc_base",
    "acc_novel",
    "acc_new",
    "val_acc_all",
    "val_acc_base",
    "val_acc_novel",
    "val_acc_new",
    "n_adapted",
    "adapted_layers",
    "adapted_asr",
    "trainable_params",
    "seconds",
}


@pytest.fixture(scope="module")
def shared_base(tmp_path_factory):
    return tmp_path_factory.mktemp("base") / "base.pt"


@pytest.fixture
def quick_config(tiny_config):
    """The tiny trial with a 2-epoch base session: for tests of what sessions do, not of what they learn."""
    return tiny_config.replace(base_epochs=2)


@pytest.fixture(scope="module")
def quick_base(tmp_path_factory):
    return tmp_path_factory.mktemp("quick-base") / "base.pt"


def adapter_params(m: int, n: int, rank: int) -> int:
    return m * rank + rank * n + m  # A, B and the bias


@pytest.mark.slow
def test_rows_metrics_and_callback(tiny_config, shared_base):
    seen = []
    result = run_trial(tiny_config, on_session=seen.append, base_checkpoint=shared_base)
    assert [row["session"] for row in result.sessions] == [0, 1, 2]
    assert seen == result.sessions
    assert [row["n_classes"] for row in result.sessions] == [10, 15, 20]
    for row in result.sessions:
        assert SESSION_COLUMNS <= set(row)
        for key in ("acc_all", "acc_base", "acc_new", "val_acc_all", "val_acc_base", "val_acc_new"):
            assert 0.0 <= row[key] <= 1.0
        assert row["seconds"] > 0
    assert math.isnan(result.sessions[0]["acc_novel"]) and 0 <= result.sessions[2]["acc_novel"] <= 1
    assert result.summary == trial_summary(result.sessions)
    shapes = {"attn.qkv": (192, 64), "attn.proj": (64, 64), "mlp.fc2": (64, 128)}
    neck = sum(p.numel() for p in create_neck("mlp", 64, 32).parameters())
    for row in result.sessions[1:]:
        assert row["n_adapted"] == 2 == len(row["adapted_layers"]) == len(row["adapted_asr"])
        assert row["adapted_asr"] == sorted(row["adapted_asr"])
        expected = neck
        for name in row["adapted_layers"]:
            kind = name.split(".", 2)[2]
            expected += adapter_params(*shapes[kind], tiny_config.rank)
        assert row["trainable_params"] == expected


@pytest.mark.slow
def test_final_model_is_merged_with_no_extra_parameters(tiny_config, shared_base):
    result = run_trial(tiny_config, base_checkpoint=shared_base)
    model = result.model
    assert not any(isinstance(m, DecomposedLinear) for m in model.modules())
    frozen = run_trial(tiny_config.replace(peft_mode="frozen"), base_checkpoint=shared_base).model
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in frozen.parameters())
    assert isinstance(model.backbone.get_submodule("blocks.0.attn.qkv"), nn.Linear)


@pytest.mark.slow
def test_base_checkpoint_is_reused_and_checked(tiny_config, tmp_path):
    path = tmp_path / "base.pt"
    first = run_trial(tiny_config, base_checkpoint=path)
    assert path.exists() and first.sessions[0]["trainable_params"] > 0
    second = run_trial(tiny_config, base_checkpoint=path)
    assert second.sessions[0]["trainable_params"] == 0  # loaded, not trained
    for a, b in zip(first.sessions, second.sessions, strict=False):
        for key in ("acc_all", "val_acc_all", "acc_base", "adapted_layers"):
            assert a[key] == b[key]
    assert first.base_key == second.base_key == tiny_config.base_session_key()
    assert tiny_config.replace(rank=2, lr=0.1).base_session_key() == first.base_key
    with pytest.raises(DataError, match="other base-session settings"):
        run_trial(tiny_config.replace(base_epochs=1), base_checkpoint=path)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="unreadable"):
        run_trial(tiny_config, base_checkpoint=path)


@pytest.mark.slow
def test_base_seed_shares_the_base_session_and_seed_drives_the_incremental_sessions(tiny_config, tmp_path):
    assert (
        tiny_config.replace(seed=3).base_session_key()
        == tiny_config.replace(seed=0, base_seed=3).base_session_key()
    )
    shared = [tiny_config.replace(seed=seed, base_seed=0) for seed in (0, 1)]
    assert shared[0].base_session_key() == shared[1].base_session_key() == tiny_config.base_session_key()
    assert tiny_config.replace(seed=1).base_session_key() != tiny_config.base_session_key()
    path = tmp_path / "base.pt"
    first, second = (run_trial(config, base_checkpoint=path) for config in shared)
    assert second.sessions[0]["trainable_params"] == 0  # seed 1 loaded seed 0's base session
    assert first.sessions[0]["val_acc_all"] == second.sessions[0]["val_acc_all"]
    losses = [
        (a["train_loss"], b["train_loss"])
        for a, b in zip(first.sessions[1:], second.sessions[1:], strict=True)
    ]
    assert all(a != b for a, b in losses)  # other replay draws and batches in every incremental session


@pytest.mark.parametrize("mode", PEFT_MODES)
def test_every_peft_mode_runs(quick_config, quick_base, mode):
    result = run_trial(quick_config.replace(peft_mode=mode), base_checkpoint=quick_base)
    last = result.sessions[-1]
    neck = sum(p.numel() for p in create_neck("mlp", 64, 32).parameters())
    if mode == "frozen":
        assert last["n_adapted"] == 0 and last["trainable_params"] == neck
    else:
        assert last["n_adapted"] == 2 and last["trainable_params"] > neck
    assert all(0.0 <= row["acc_all"] <= 1.0 for row in result.sessions)


@pytest.mark.slow
def test_covariance_modes_select_the_same_layers(tiny_config, shared_base):
    layers = {
        mode: run_trial(tiny_config.replace(peft_mode=mode, steps=0), base_checkpoint=shared_base).sessions[
            1
        ]["adapted_layers"]
        for mode in ("ckpd", "lora", "full")
    }
    assert layers["ckpd"] == layers["lora"] == layers["full"]


def test_threshold_selection_and_static_decomposition(quick_config, quick_base):
    everything = run_trial(quick_config.replace(top_n=None, asr_threshold=1.0), base_checkpoint=quick_base)
    assert everything.sessions[1]["n_adapted"] == 6  # 2 blocks x (qkv, proj, fc2)
    static = run_trial(quick_config.replace(continuous=False), base_checkpoint=quick_base)
    s1, s2 = static.sessions[1], static.sessions[2]
    assert s1["adapted_layers"] == s2["adapted_layers"] and s1["adapted_asr"] == s2["adapted_asr"]
    continuous = run_trial(quick_config, base_checkpoint=quick_base)
    assert continuous.sessions[2]["adapted_asr"] != s2["adapted_asr"]  # re-decomposed after merging


@pytest.mark.parametrize(
    "changes,match",
    [
        (dict(asr_threshold=0.5, top_n=2), "both set"),
        (dict(top_n=None, asr_threshold=1.5), "asr_threshold=1.5"),
        (dict(top_n=None, asr_threshold=0.0), "asr_threshold=0.0"),
        (dict(peft_mode="dora"), "peft_mode='dora'"),
        (dict(rank=0), "rank=0"),
        (dict(top_n=0), "top_n=0"),
        (dict(replay_per_class=0), "replay_per_class=0"),
        (dict(lr=-1.0), "lr=-1.0"),
    ],
)
def test_impossible_settings_are_refused_up_front(tiny_config, changes, match):
    with pytest.raises(ConfigError, match=match):
        tiny_config.replace(**changes)


@pytest.mark.parametrize(
    "changes,match",
    [
        (dict(backbone="vit_tiny_convstm"), "vit_tiny_convstem"),
        (dict(layer_patterns=("blocks.*.attn.qkv", "blocks.*.attention.out")), "blocks.*.attention.out"),
        (dict(rank=65), "rank=65"),
        (dict(benchmark="omniglot"), "benchmark='omniglot'"),
    ],
)
def test_settings_checked_against_the_model_fail_before_training(tiny_config, changes, match, monkeypatch):
    import ckpd_core.trial as trial_module

    def no_training(*args, **kwargs):
        raise AssertionError("training started before the settings were checked")

    monkeypatch.setattr(trial_module, "train_base", no_training)
    with pytest.raises(ConfigError, match=match):
        run_trial(tiny_config.replace(**changes))


def test_unknown_setting_names_are_rejected():
    with pytest.raises(ConfigError, match="ranks"):
        TrialConfig.from_dict({"ranks": 4})
    assert TrialConfig.from_dict({"rank": 4}).rank == 4


def test_settings_are_strict_and_keep_the_type_given():
    with pytest.raises(ConfigError, match="pretrained='yes' must be true or false"):
        TrialConfig(pretrained="yes")
    with pytest.raises(ConfigError, match="rank=True must be an integer >= 1"):
        TrialConfig(rank=True)
    ints = TrialConfig(loss_weight=1, base_lr=1, momentum=0, drop_path_rate=0, base_weight_decay=0)
    assert type(ints.loss_weight) is int and ints.replace(rank=2).loss_weight == 1
    # the keys these settings had before pydantic checked them: cached base sessions stay valid
    assert TrialConfig().base_session_key() == "cff4c0ae180fb340"
    assert ints.base_session_key() == "da8fd1c9f6444e32"
    official = TrialConfig(recipe="official", benchmark="cub200", data_root="/d")
    assert official.base_session_key() == "be0c2dc0082a032e"


@pytest.mark.slow
def test_runs_are_deterministic_for_a_seed(tiny_config, shared_base):
    a = run_trial(tiny_config.replace(seed=0), base_checkpoint=shared_base)
    b = run_trial(tiny_config.replace(seed=0), base_checkpoint=shared_base)
    assert [r["acc_all"] for r in a.sessions] == [r["acc_all"] for r in b.sessions]
    assert torch.equal(
        a.model.backbone.get_submodule("blocks.1.mlp.fc2").weight,
        b.model.backbone.get_submodule("blocks.1.mlp.fc2").weight,
    )


@pytest.mark.slow
@pytest.mark.parametrize("continuous", [True, False])
def test_interrupted_trial_resumes_after_its_last_finished_session(
    tiny_config, shared_base, tmp_path, continuous
):
    config = tiny_config.replace(continuous=continuous)
    uninterrupted = run_trial(config, base_checkpoint=shared_base)
    reported = []
    resumed = crash_then_resume(config, tmp_path, reported, base_checkpoint=shared_base)
    assert [row["session"] for row in reported] == [0, 1, 2]  # finished sessions are not run again
    assert [r["session"] for r in resumed.sessions] == [0, 1, 2]
    for a, b in zip(uninterrupted.sessions, resumed.sessions, strict=True):
        assert (a["acc_all"], a["val_acc_all"], a["adapted_layers"]) == (
            b["acc_all"],
            b["val_acc_all"],
            b["adapted_layers"],
        )
    with pytest.raises(DataError, match="another trial configuration"):
        run_trial(config.replace(rank=2), base_checkpoint=shared_base, state_dir=tmp_path)
