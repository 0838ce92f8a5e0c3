"""Model parts: timm backbones, necks (MLP, Mamba SS2D), the selective scan, the fixed ETF head."""

from .backbone import ConvStemPatchEmbed, create_backbone, vit_tiny_convstem
from .classifier import FSCILClassifier, build_classifier
from .etf_head import ETFHead, dot_regression_loss, simplex_etf
from .mamba_neck import SS2D, MambaNeck
from .neck import MLPNeck, create_neck
from .selective_scan import scan_backend  # not the function selective_scan: it would hide its module

__all__ = [
    "ConvStemPatchEmbed",
    "ETFHead",
    "FSCILClassifier",
    "MLPNeck",
    "MambaNeck",
    "SS2D",
    "build_classifier",
    "create_backbone",
    "create_neck",
    "dot_regression_loss",
    "scan_backend",
    "simplex_etf",
    "vit_tiny_convstem",
]
