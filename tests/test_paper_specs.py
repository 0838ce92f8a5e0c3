"""The paper-scale specs express CKPD-FSCIL's own setting as TrialConfigs (checked without a GPU or data)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ckpd_core.calibration import find_linear_layers
from ckpd_core.models.backbone import create_backbone, input_config
from sweeps.spec import load_spec

PAPER = sorted((Path(__file__).resolve().parents[1] / "search_spaces" / "paper").glob("*.yaml"))


@pytest.mark.parametrize("path", PAPER, ids=lambda p: p.stem)
def test_paper_specs_use_the_paper_setting(path):
    spec = load_spec(path)
    point = {name: domain.extremes()[0] for name, domain in spec.space.items()}
    config = spec.trial_config(point, spec.seeds[0])
    assert config.backbone == "vit_base_patch16_clip_224.openai" and config.pretrained
    assert config.benchmark in ("cub200", "mini_imagenet") and config.data_root.startswith("/data/")
    assert (config.steps, config.precision, config.device) == (1000, "bf16", "cuda")
    assert config.rank == 128 or "rank" in spec.space
    assert config.top_n == 6 or (path.stem == "threshold" and config.top_n is None)


def test_paper_backbone_has_36_candidate_layers_at_224_px():
    spec = load_spec(PAPER[0])
    with torch.device("meta"):  # only the structure matters here: no weights are allocated
        backbone = create_backbone(spec.trial["backbone"])
    layers = find_linear_layers(backbone, spec.trial_config({"rank": 128}, 0).layer_patterns)
    assert len(layers) == 36 and all(min(layer.weight.shape) >= 768 for layer in layers.values())
    assert input_config(backbone)["input_size"] == (3, 224, 224)
