"""The paper-scale specs express CKPD-FSCIL's own setting as TrialConfigs (checked without a GPU or data)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ckpd_core.calibration import find_linear_layers
from ckpd_core.models.backbone import create_backbone, input_config
from ckpd_core.recipe import explain
from sweeps.spec import load_spec

PAPER = sorted((Path(__file__).resolve().parents[1] / "search_spaces" / "paper").glob("*.yaml"))


@pytest.mark.parametrize("path", PAPER, ids=lambda p: p.stem)
def test_paper_specs_run_the_official_recipe(path):
    spec = load_spec(path)
    point = {name: domain.extremes()[0] for name, domain in spec.space.items()}
    config = spec.trial_config(point, spec.seeds[0])
    assert config.recipe == "official" and config.device == "cuda"
    assert config.backbone == "vit_base_patch16_clip_224.openai" and config.pretrained
    assert config.benchmark in ("cub200", "mini_imagenet") and config.data_root.startswith("/data/")
    assert (config.steps, config.precision, config.optimizer, config.feature_replay) == (
        1000,
        "fp32",
        "sgd",
        True,
    )
    assert config.rank == 128 or "rank" in spec.space
    differing = [row.setting for row in explain(config.to_dict(), config.benchmark) if row.differs]
    swept = set(spec.space)
    # the threshold sweep ablates the official top-6 selection; nothing else differs anywhere
    assert set(differing) - swept == ({"top_n"} if path.stem == "threshold" else set())
    if config.benchmark == "cub200":
        assert config.top_n == 6 or path.stem == "threshold"
    else:
        assert (config.top_n, config.fixed_last_blocks, config.length_aware_targets) == (None, 2, True)


def test_paper_backbone_has_36_candidate_layers_at_224_px():
    spec = load_spec(PAPER[0])
    with torch.device("meta"):  # only the structure matters here: no weights are allocated
        backbone = create_backbone(spec.trial_config({"rank": 128}, 0).backbone)
    layers = find_linear_layers(backbone, spec.trial_config({"rank": 128}, 0).layer_patterns)
    assert spec.trial_config({"rank": 128}, 0).backbone == "vit_base_patch16_clip_224.openai"
    assert len(layers) == 36 and all(min(layer.weight.shape) >= 768 for layer in layers.values())
    assert input_config(backbone)["input_size"] == (3, 224, 224)
