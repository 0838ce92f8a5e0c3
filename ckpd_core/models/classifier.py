"""Backbone + neck + fixed ETF head: the classifier every session trains and evaluates."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from .backbone import create_backbone
from .etf_head import ETFHead, dot_regression_loss
from .mamba_neck import MambaNeck
from .neck import create_neck


class FSCILClassifier(nn.Module):
    """Scores images against the ETF vectors of the classes seen so far."""

    def __init__(self, backbone: nn.Module, neck: nn.Module, head: ETFHead) -> None:
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.head = head

    def neck_input(self, images: torch.Tensor) -> torch.Tensor:
        """The backbone's token map for necks that take one, its pooled features otherwise."""
        if getattr(self.neck, "takes_feature_map", False):
            return token_map(self.backbone, images)
        return self.backbone(images)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.neck(self.neck_input(images))

    def training_loss(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        maps: torch.Tensor | None = None,
        map_labels: torch.Tensor | None = None,
        loss_weight: float = 1.0,
        length_aware: bool = False,
        mixup: tuple[torch.Tensor, float] | None = None,
    ) -> torch.Tensor:
        """``loss_weight`` x the dot-regression loss towards the ETF vectors, plus the Mamba neck's
        class-sensitive losses.

        ``maps`` (feature replay): backbone outputs (class-mean feature maps) appended to the images'
        before the neck, with their ``map_labels``. ``mixup = (permutation, lam)`` mixes the neck's
        features with those of the permuted batch, the loss weighted ``lam`` towards the own labels and
        ``1 - lam`` towards the partner's (the official fixed-lambda feature mixup).
        """
        inputs = self.neck_input(images)
        if maps is not None:
            inputs, labels = torch.cat([inputs, maps.to(inputs.dtype)]), torch.cat([labels, map_labels])
        extra = inputs.new_zeros(())
        if isinstance(self.neck, MambaNeck):
            out = self.neck.forward_with_aux(inputs)
            features, extra = out.features, self.neck.class_sensitive_loss(out, labels)
        else:
            features = self.neck(inputs)
        etf = self.head.etf
        if mixup is None:
            loss = dot_regression_loss(features, labels, etf, length_aware=length_aware)
        else:
            order, lam = mixup
            mixed = lam * features + (1 - lam) * features[order]
            own = dot_regression_loss(mixed, labels, etf, length_aware=length_aware)
            partner = dot_regression_loss(mixed, labels[order], etf, length_aware=length_aware)
            loss = lam * own + (1 - lam) * partner
        return loss_weight * loss + extra

    def forward(self, images: torch.Tensor, num_seen: int | None = None) -> torch.Tensor:
        return self.head(self.features(images), num_seen)


def token_grid(backbone: nn.Module) -> tuple[int, int]:
    """(H, W) of a timm ViT's patch-token grid."""
    grid = getattr(getattr(backbone, "patch_embed", None), "grid_size", None)
    if grid is None:
        raise ConfigError(
            f"neck='mamba' needs a ViT backbone with a patch grid; {type(backbone).__name__} has none"
        )
    return int(grid[0]), int(grid[1])


def token_map(backbone: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) map of the patch tokens of ``forward_features`` (class/register tokens dropped)."""
    tokens = backbone.forward_features(images)[:, getattr(backbone, "num_prefix_tokens", 0) :]
    return tokens.transpose(1, 2).unflatten(2, token_grid(backbone))


def build_classifier(
    backbone: str,
    backbone_kwargs: dict,
    neck: str,
    feature_dim: int,
    num_classes: int,
    seed: int,
    neck_options: dict[str, Any] | None = None,
) -> FSCILClassifier:
    """Create the classifier; the ETF vectors depend only on ``seed`` so they are reproducible.

    ``neck_options`` go to ``create_neck``; the Mamba neck also gets the backbone's token grid.
    """
    body = create_backbone(backbone, **backbone_kwargs)
    options = dict(neck_options or {})
    if neck == "mamba":
        options["grid_size"] = token_grid(body)
    return FSCILClassifier(
        body,
        create_neck(neck, body.num_features, feature_dim, **options),
        ETFHead(feature_dim, num_classes, seed),
    )
