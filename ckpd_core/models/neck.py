"""Projection necks between the backbone and the ETF head (pooled features, or the token map for mamba)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from .mamba_neck import MambaNeck


class MLPNeck(nn.Module):
    """A linear projection plus a residual two-layer MLP: ``out = proj(x) + mlp(x)``."""

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int | None = None) -> None:
        super().__init__()
        hidden_dim = hidden_dim or 2 * out_dim
        self.proj = nn.Linear(in_dim, out_dim, bias=False)
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden_dim), nn.LayerNorm(hidden_dim), nn.GELU(), nn.Linear(hidden_dim, out_dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x) + self.mlp(x)


def create_neck(name: str, in_dim: int, out_dim: int, **options: Any) -> nn.Module:
    """``none`` passes features through (they must already have ``out_dim``), ``mlp`` projects them.

    ``mamba`` is the SS2D projector on the token map; ``options`` are MambaNeck's (``grid_size`` required).
    """
    if name == "mamba":
        return MambaNeck(in_dim, out_dim, **options)
    if name == "mlp":
        return MLPNeck(in_dim, out_dim)
    if name == "none":
        if in_dim != out_dim:
            raise ConfigError(
                f"neck='none' needs feature_dim equal to the backbone width ({in_dim}), got {out_dim}"
            )
        return nn.Identity()
    raise ConfigError(f"neck={name!r} is unknown; choose none, mlp or mamba")
