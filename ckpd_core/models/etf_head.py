"""Fixed simplex equiangular-tight-frame classifier and the dot-regression loss that trains towards it."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError


def simplex_etf(dim: int, num_classes: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``dim x num_classes`` unit columns with pairwise cosine ``-1/(num_classes-1)``."""
    if dim < num_classes - 1:
        raise ConfigError(
            f"feature_dim={dim} is too small for a simplex ETF over {num_classes} classes: "
            f"use at least {num_classes - 1}"
        )
    raw = torch.rand(dim, num_classes, generator=generator, dtype=torch.float64)
    basis, _ = torch.linalg.qr(raw)
    if basis.shape[1] < num_classes:  # dim == num_classes - 1: the simplex still fits in dim dims
        basis = torch.cat([basis, torch.zeros(dim, num_classes - basis.shape[1], dtype=basis.dtype)], 1)
    centre = torch.eye(num_classes, dtype=torch.float64) - 1.0 / num_classes
    etf = (num_classes / (num_classes - 1)) ** 0.5 * basis @ centre
    return F.normalize(etf, dim=0).float()


class ETFHead(nn.Module):
    """Cosine scores against fixed ETF class vectors; only the first ``num_seen`` classes compete."""

    def __init__(self, dim: int, num_classes: int, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("etf", simplex_etf(dim, num_classes, generator))

    def forward(self, features: torch.Tensor, num_seen: int | None = None) -> torch.Tensor:
        etf = self.etf if num_seen is None else self.etf[:, :num_seen]
        return F.normalize(features, dim=-1) @ etf


def dot_regression_loss(
    features: torch.Tensor, labels: torch.Tensor, etf: torch.Tensor, *, length_aware: bool = False
) -> torch.Tensor:
    """``0.5 * mean((cos(feature, etf[label]) - 1)^2)``: pulls features onto their class vector.

    ``length_aware`` (the official head's ``with_len``): each target is scaled to length
    ``sqrt(gamma / n_c)``, with ``n_c`` the count of its class in the batch and ``gamma`` the batch size
    over the number of classes in it, and the loss is ``0.5 * mean((<x, t> - |t|)^2)``: every class of
    the batch weighs the same, whatever its count.
    """
    cosine = (F.normalize(features, dim=-1) * etf[:, labels].T).sum(dim=-1)
    if not length_aware:
        return 0.5 * ((cosine - 1.0) ** 2).mean()
    classes, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    length = torch.sqrt(labels.numel() / classes.numel() / counts.to(cosine.dtype))[inverse]
    return 0.5 * ((length * cosine - length) ** 2).mean()
