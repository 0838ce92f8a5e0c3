"""Backbone weights from a local .pth / .safetensors file through TrialConfig, never from the hub."""

from __future__ import annotations

import pytest
import safetensors.torch
import timm.models._builder as timm_builder
import torch

from ckpd_core import ConfigError, DataError, TrialConfig, run_trial
from ckpd_core.models.backbone import create_backbone, input_config

TINY = dict(depth=1, embed_dim=32, num_heads=2)


@pytest.fixture(autouse=True)
def no_hub(monkeypatch):
    """Any attempt to reach a hub fails the test's expectations loudly."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def refuse(*args, **kwargs):
        raise ConnectionError("the hub must not be contacted in tests")

    for name in ("load_state_dict_from_hf", "load_state_dict_from_url", "download_cached_file"):
        monkeypatch.setattr(timm_builder, name, refuse)


def save(model: torch.nn.Module, path, fmt: str) -> None:
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if fmt == "safetensors":
        safetensors.torch.save_file(state, str(path))
    else:
        torch.save({"state_dict": state}, path)  # the usual training-checkpoint wrapping


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_local_checkpoint_loads_through_the_config_with_identical_outputs(icons_cache, tmp_path, fmt):
    torch.manual_seed(123)
    source = create_backbone("vit_tiny_convstem", **TINY).eval()
    path = tmp_path / f"weights.{fmt}"
    save(source, path, fmt)
    config = TrialConfig(
        benchmark_kwargs=dict(
            num_classes=15, base_classes=10, train_per_class=6, val_per_class=2, test_per_class=2
        ),
        data_root=icons_cache,
        backbone_kwargs=TINY,
        backbone_checkpoint=str(path),
        feature_dim=16,
        peft_mode="frozen",
        base_epochs=0,
        steps=0,
    )
    loaded = run_trial(config).model.backbone.eval()
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), source(x))


def test_standard_timm_architecture_loads_from_a_file(tmp_path):
    settings = dict(img_size=32, patch_size=8, depth=1)
    source = create_backbone("vit_tiny_patch16_224", **settings).eval()
    save(source, tmp_path / "vit.safetensors", "safetensors")
    loaded = create_backbone("vit_tiny_patch16_224", checkpoint=str(tmp_path / "vit.safetensors"), **settings)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x), source(x))
    assert input_config(loaded)["input_size"] == (3, 32, 32)  # the size it was built for, not 224


def test_missing_or_mismatched_checkpoint_and_unreachable_hub_say_what_to_do(tmp_path):
    with pytest.raises(DataError, match="backbone_checkpoint='.*nope.pth' does not exist"):
        create_backbone("vit_tiny_convstem", checkpoint=str(tmp_path / "nope.pth"))
    save(create_backbone("vit_tiny_convstem", depth=2), tmp_path / "deeper.pth", "pth")
    with pytest.raises(DataError, match="(?s)not be loaded into vit_tiny_convstem .* same backbone_kwargs"):
        create_backbone("vit_tiny_convstem", checkpoint=str(tmp_path / "deeper.pth"), depth=1)
    with pytest.raises(DataError, match="(?s)not be fetched from timm.s hub .* set backbone_checkpoint"):
        create_backbone("vit_tiny_patch16_224", pretrained=True, depth=1)
    with pytest.raises(ConfigError, match="vit_tiny_convstem has no published weights"):
        create_backbone("vit_tiny_convstem", pretrained=True)


def test_weight_settings_are_validated_and_part_of_the_base_key():
    base = TrialConfig()
    assert base.pretrained is False and base.backbone_checkpoint is None
    keys = {
        base.base_session_key(),
        base.replace(pretrained=True).base_session_key(),
        base.replace(backbone_checkpoint="/w.pth").base_session_key(),
    }
    assert len(keys) == 3
    with pytest.raises(ConfigError, match="pretrained='yes'"):
        TrialConfig(pretrained="yes")
    with pytest.raises(ConfigError, match="backbone_checkpoint=''"):
        TrialConfig(backbone_checkpoint="")
    with pytest.raises(ConfigError, match="backbone_kwargs.pretrained: choose weights with"):
        TrialConfig(backbone_kwargs={"pretrained": True})
