"""Model parts: timm backbones, necks, the fixed ETF head."""

from .backbone import ConvStemPatchEmbed, create_backbone, vit_tiny_convstem
from .classifier import FSCILClassifier, build_classifier
from .etf_head import ETFHead, dot_regression_loss, simplex_etf
from .neck import MLPNeck, create_neck

__all__ = [
    "ConvStemPatchEmbed",
    "ETFHead",
    "FSCILClassifier",
    "MLPNeck",
    "build_classifier",
    "create_backbone",
    "create_neck",
    "dot_regression_loss",
    "simplex_etf",
    "vit_tiny_convstem",
]
