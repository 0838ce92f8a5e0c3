"""Covariance collection by forward hooks on name-matched layers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ckpd_core import CalibrationError, ConfigError, collect_statistics, find_linear_layers


class TwoBlocks(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            nn.ModuleDict({"qkv": nn.Linear(6, 18), "fc2": nn.Linear(18, 6)}) for _ in range(2)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = x + block["fc2"](torch.tanh(block["qkv"](x)))
        return x


def test_patterns_select_layers_and_reject_typos():
    model = TwoBlocks()
    assert list(find_linear_layers(model, ["blocks.*.qkv"])) == ["blocks.0.qkv", "blocks.1.qkv"]
    assert list(find_linear_layers(model, ["blocks.1.*", "blocks.0.fc2"])) == [
        "blocks.0.fc2",
        "blocks.1.qkv",
        "blocks.1.fc2",
    ]
    with pytest.raises(ConfigError, match="blocks.*.attn.qkv"):
        find_linear_layers(model, ["blocks.*.qkv", "blocks.*.attn.qkv"])


def test_covariance_equals_direct_float64_computation_over_batches():
    torch.manual_seed(0)
    model = TwoBlocks()
    batches = [torch.randn(5, 3, 6) for _ in range(4)]  # (batch, tokens, features) like a ViT
    layers = find_linear_layers(model, ["blocks.*.qkv", "blocks.1.fc2"])
    inputs: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    hooks = [
        layer.register_forward_hook(
            lambda m, i, o, name=name: inputs[name].append(i[0].reshape(-1, i[0].shape[-1]))
        )
        for name, layer in layers.items()
    ]
    with torch.no_grad():
        for batch in batches:
            model(batch)
    for hook in hooks:
        hook.remove()
    stats = collect_statistics(model, layers, batches)
    scales = collect_statistics(model, layers, batches, kind="act_scale")
    for name in layers:
        x = torch.cat(inputs[name]).to(torch.float64)
        assert x.shape[0] == 4 * 5 * 3
        assert stats[name].dtype == torch.float64
        assert torch.allclose(stats[name], x.T @ x / x.shape[0], rtol=1e-6, atol=1e-7)
        assert torch.allclose(scales[name], x.abs().mean(0), rtol=1e-6)
    assert not any(layer._forward_hooks for layer in layers.values())  # hooks removed


def test_nan_activations_raise_a_calibration_error():
    model = TwoBlocks()
    layers = find_linear_layers(model, ["blocks.0.qkv"])
    with pytest.raises(CalibrationError, match="blocks.0.qkv"):
        collect_statistics(model, layers, [torch.full((2, 6), float("nan"))])
    assert not layers["blocks.0.qkv"]._forward_hooks
