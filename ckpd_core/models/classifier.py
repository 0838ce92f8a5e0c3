"""Backbone + neck + fixed ETF head: the classifier every session trains and evaluates."""

from __future__ import annotations

import torch
from torch import nn

from .backbone import create_backbone
from .etf_head import ETFHead
from .neck import create_neck


class FSCILClassifier(nn.Module):
    """Scores images against the ETF vectors of the classes seen so far."""

    def __init__(self, backbone: nn.Module, neck: nn.Module, head: ETFHead) -> None:
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.head = head

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.neck(self.backbone(images))

    def forward(self, images: torch.Tensor, num_seen: int | None = None) -> torch.Tensor:
        return self.head(self.features(images), num_seen)


def build_classifier(
    backbone: str, backbone_kwargs: dict, neck: str, feature_dim: int, num_classes: int, seed: int
) -> FSCILClassifier:
    """Create the classifier; the ETF vectors depend only on ``seed`` so they are reproducible."""
    body = create_backbone(backbone, **backbone_kwargs)
    return FSCILClassifier(
        body, create_neck(neck, body.num_features, feature_dim), ETFHead(feature_dim, num_classes, seed)
    )
