"""Training recipes: named presets that fill in every recipe element a trial leaves unset.

- ``embedded``: the CPU-sized recipe of the ``icons`` benchmark (AdamW, the whole backbone trained in
  the base session, batches of half new shots and half replay, no mixup), with the official
  class-mean feature-map replay, which helps there too.
- ``official``: the official CKPD-FSCIL code (xiaojieli0903/CKPD-FSCIL, commit 6a390a3) element by
  element, for ``cub200`` and ``mini_imagenet`` from their configs. ``cifar100`` (no official CKPD
  config) and ``icons`` take the miniImageNet values: the same protocol (60 base classes, 5-way
  5-shot sessions) and the same low-resolution images upsampled. The official model (CLIP ViT-B/16,
  Mamba neck) is part of the recipe only where it can run: not for ``icons``, whose tiny conv-stem
  ViT stays.

Every element is its own ``TrialConfig`` setting, so a sweep can ablate one element with everything
else official; what a spec or a caller sets wins over the recipe. ``explain`` lists, element by
element, the official value and the one a trial uses (``ckpd-sweep recipe SPEC``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rich.markup import escape
from rich.table import Table

RECIPES = ("embedded", "official")
OFFICIAL_BENCHMARKS = ("cub200", "mini_imagenet")  # the ones the official code has configs for
CLIP_VIT_B16 = "vit_base_patch16_clip_224.openai"


@dataclass(frozen=True)
class Element:
    """One recipe element: the setting, what it controls, its values, and where the official one is set."""

    setting: str
    what: str
    embedded: Any
    official: Any  # the value for every benchmark, unless ``per_benchmark`` names it
    source: str
    per_benchmark: Mapping[str, Any] = field(default_factory=dict)
    model: bool = False  # a model element: not filled in for the embedded benchmark's tiny model

    def official_for(self, benchmark: str) -> Any:
        """The official value for ``benchmark``: CUB-200's, or miniImageNet's for the benchmarks of its
        protocol (every other one); the embedded model for ``icons``."""
        if self.model and benchmark == "icons":
            return self.embedded
        family = "cub200" if benchmark == "cub200" else _MINI
        return self.per_benchmark.get(family, self.official)


_MINI = "mini_imagenet"
# Short names of the official files: cubB / miniB the base-session configs, cubE / miniE the CKPD session
# configs (configs/{cub,miniimagenet}/*_ckpd_fscil*.py), fscil = mmfscil/apis/fscil.py,
# head = mmfscil/models/ETFHead.py, clsf = mmfscil/models/classifier_mmpretrain.py.
ELEMENTS: tuple[Element, ...] = (
    # the model
    Element(
        "backbone",
        "backbone (timm name)",
        "vit_tiny_convstem",
        CLIP_VIT_B16,
        "cubB/miniB backbone VisionTransformer arch b, patch 16, 224 px, CLIP weights",
        model=True,
    ),
    Element(
        "pretrained",
        "pretrained backbone weights",
        False,
        True,
        "cubB/miniB init_cfg clip-vit-base-p16_openai.pth",
        model=True,
    ),
    Element("neck", "neck", "mlp", "mamba", "cubB/miniB neck MambaNeck version ss2d", model=True),
    Element("neck_d_state", "Mamba neck state size", 16, 256, "MambaNeck default d_state", model=True),
    Element(
        "neck_kwargs",
        "Mamba neck sizes",
        {},
        {"num_layers": 3, "dt_rank": 256},
        "cubB/miniB neck num_layers 3; MambaNeck default dt_rank",
        model=True,
    ),
    Element(
        "feature_dim", "feature (ETF) dimension", 128, 1024, "cubB/miniB neck out_channels 1024", model=True
    ),
    Element(
        "drop_path_rate",
        "stochastic depth of the backbone blocks",
        0.0,
        0.1,
        "cubB/miniB/cubE/miniE backbone drop_path_rate 0.1",
    ),
    # the base session
    Element(
        "base_trainable_blocks",
        "last backbone blocks trained in the base session (null: all)",
        None,
        1,
        "cubB/miniB backbone frozen_stages 11 of 12 blocks",
    ),
    Element("base_optimizer", "base-session optimizer", "adamw", "sgd", "cubB/miniB optimizer type SGD"),
    Element("base_lr", "base-session learning rate", 1e-3, 0.005, "cubB/miniB optimizer lr"),
    Element(
        "base_weight_decay", "base-session weight decay", 0.05, 5e-4, "cubB/miniB optimizer weight_decay"
    ),
    Element("momentum", "SGD momentum (both sessions)", 0.9, 0.9, "cubB/miniB optimizer; fscil SGD momentum"),
    Element(
        "base_schedule",
        "base-session learning-rate schedule",
        "cosine",
        "ckpd_base",
        "cubB/miniB lr_config CosineAnnealingCooldown: warm-up 100 its from 0.1x, cosine to 0.1x, "
        "last 10 its at 0.01x",
    ),
    Element(
        "base_epochs",
        "passes over the base training images",
        16,
        200,
        "cubB max_epochs 50 x RepeatDataset times 4; miniB 20 x 10",
    ),
    Element(
        "base_batch_size",
        "base-session batch",
        64,
        128,
        "cubB samples_per_gpu 128 x 1 GPU; miniB 64 x 8",
        per_benchmark={_MINI: 512},
    ),
    Element(
        "loss_weight",
        "weight of the dot-regression loss",
        1.0,
        10.0,
        "_base_/models/resnet_etf.py DRLoss loss_weight 10",
    ),
    Element(
        "length_aware_targets",
        "class-balanced ETF targets (with_len)",
        False,
        False,
        "cubB/cubE head with_len False; miniB/miniE True",
        per_benchmark={_MINI: True},
    ),
    # the incremental sessions: what adapts
    Element("rank", "adapter rank", 16, 128, "default_runtime ckpd_rank 128"),
    Element(
        "top_n",
        "lowest-ASR layers adapted (null: see fixed_last_blocks or asr_threshold)",
        4,
        6,
        "cubE adaptive_chosen True, top_n 6",
        per_benchmark={_MINI: None},
    ),
    Element(
        "fixed_last_blocks",
        "adapt every candidate layer of the last N blocks, no ASR selection",
        None,
        None,
        "miniE sets no ckpd_keys: default_runtime's 6 layers of blocks 10-11",
        per_benchmark={_MINI: 2},
    ),
    Element("replay_per_class", "replay exemplars per class", 2, 1, "default_runtime ckpd_mode 'random'"),
    Element(
        "replay_selection",
        "which exemplars",
        "random",
        "first",
        "fscil get_training_memory: the smallest img_id of each class",
    ),
    # the incremental sessions: the batches
    Element(
        "replay_base_copies",
        "copies of each base exemplar in the image pool (null: half-replay batches)",
        None,
        2,
        "cubE/miniE replay_base_copy 2",
    ),
    Element(
        "replay_novel_copies",
        "copies of each earlier-novel exemplar in the image pool",
        None,
        5,
        "cubE/miniE replay_copy 5",
    ),
    Element(
        "shot_views",
        "augmented views of each shot drawn once per session (0: augment every step, -1: none)",
        0,
        10,
        "cubE data.train repeat True, times 10; miniE none (test pipeline)",
        per_benchmark={_MINI: -1},
    ),
    Element("replay_augment", "augment replayed images", True, False, "fscil replay memory: test pipeline"),
    Element(
        "feature_replay",
        "second batch of class-mean backbone feature maps fed to the neck",
        True,  # on icons too: +3.5 points of ckpd's last-session accuracy, 3 seeds (bench/sanity_check.py)
        True,
        "cubE/miniE finetune_backbone True with mean_copy / mean_base_copy; fscil 985-1099",
    ),
    Element("feature_base_copies", "copies of each base class-mean map", 2, 2, "cubE/miniE mean_base_copy 2"),
    Element(
        "feature_novel_copies", "copies of each earlier-novel class-mean map", 5, 5, "cubE/miniE mean_copy 5"
    ),
    Element(
        "batch_size", "images per step (and as many feature maps)", 64, 32, "fscil: 32 per GPU, hard-coded"
    ),
    # the incremental sessions: the optimisation
    Element("optimizer", "session optimizer", "adamw", "sgd", "fscil 1108-1116: SGD"),
    Element(
        "lr",
        "session learning rate",
        1e-3,
        0.05,
        "cubE finetune_lr 0.05; miniE 0.01",
        per_benchmark={_MINI: 0.01},
    ),
    Element("weight_decay", "session weight decay", 0.0, 5e-4, "fscil 1112: weight_decay 5e-4"),
    Element(
        "adapter_lr_mult",
        "learning-rate multiplier of the adapters",
        1.0,
        0.01,
        "cubE paramwise 'backbone.' lr_mult 0.01; miniE 0.1",
        per_benchmark={_MINI: 0.1},
    ),
    Element(
        "neck_lr_mult", "multiplier of the neck's base branch and projection", 0.1, 0.1, "cubE/miniE mult 0.1"
    ),
    Element(
        "new_branch_lr_mult",
        "multiplier of the neck's new branch",
        1.0,
        1.0,
        "cubE 'neck.block_new.' / 'neck.pos_embed_new' lr_mult 1",
    ),
    Element(
        "schedule",
        "session learning-rate schedule",
        "cosine",
        "ckpd_session",
        "fscil 1125-1135: warm-up 5 its from 0.1x, cosine to 0.01x, last 5 its at 0.001x",
    ),
    Element("steps", "steps per incremental session", 40, 1000, "cubE/miniE num_step 1000"),
    Element(
        "train_mode",
        "model in train mode during sessions (drop-path active)",
        False,
        False,
        "fscil 899 sets train(), but get_inc_memory (fscil 992, with mean_copy > 0) sets eval() again "
        "(fscil 335) before the step loop (fscil 1146): the official sessions train in eval mode",
    ),
    Element(
        "detach_new_branch",
        "the neck's new branch sees the backbone map detached",
        True,
        False,
        "cubE/miniE neck detach_residual False",
    ),
    Element(
        "mixup_prob",
        "probability of feature mixup per step",
        0.0,
        0.75,
        "cubE mixup_prob 0.75; miniE 0.3",
        per_benchmark={_MINI: 0.3},
    ),
    Element("mixup_lambda", "fixed mixup weight", 0.5, 0.5, "cubE/miniE mixup 0.5; clsf mixup_feat"),
    Element("precision", "arithmetic of forward passes", "fp32", "fp32", "the official code runs in float32"),
)
ELEMENTS_BY_SETTING = {element.setting: element for element in ELEMENTS}
# Where the official code still differs and no setting exists yet (effect on results in brackets).
UNSET_DIFFERENCES = (
    (
        "calibration scaling",
        "each calibration image divided by its own max, sum x^T x / 256, float32",
        "plain mean over all rows, float64 [low]",
    ),
    (
        "damping",
        "doubled until the float32 inverse error is below 0.05",
        "raised only when the Cholesky factorisation fails [medium: it moves the ASR]",
    ),
    (
        "base checkpoint",
        "the epoch with the best base-class test accuracy",
        "the last epoch; 10% of each base class held out for validation, none selected on test [medium]",
    ),
    (
        "novel replay exemplar",
        "the first training image of the class in file order, outside the 5 shots",
        "the first of the 5 shots: no labelled image beyond the shots [low]",
    ),
    (
        "CUB training crops",
        "random-resized crop from the full image",
        "from the stored 256x256 centre square [low]",
    ),
    ("LoRA scale (the lora variant only)", "alpha / rank, alpha 1", "1 [the lora row only]"),
)


def recipe_values(recipe: str, benchmark: str) -> dict[str, Any]:
    """Every element's value under ``recipe`` for ``benchmark``."""
    if recipe not in RECIPES:
        raise ValueError(f"recipe={recipe!r} is unknown; choose one of {', '.join(RECIPES)}")
    if recipe == "embedded":
        return {e.setting: e.embedded for e in ELEMENTS}
    return {e.setting: e.official_for(benchmark) for e in ELEMENTS}


@dataclass(frozen=True)
class Row:
    """One line of the recipe table."""

    setting: str
    what: str
    official: Any
    value: Any
    source: str

    @property
    def differs(self) -> bool:
        return not _same(self.official, self.value)


def explain(values: Mapping[str, Any], benchmark: str) -> list[Row]:
    """The recipe table: for every element, the official value for ``benchmark`` and the one in
    ``values`` (a trial's settings; a swept element may hold a list of the values it takes)."""
    return [
        Row(e.setting, e.what, e.official_for(benchmark), values.get(e.setting), e.source) for e in ELEMENTS
    ]


def recipe_table(
    values: Mapping[str, Any], benchmark: str, swept: Mapping[str, str] | None = None
) -> tuple[Table, list[str]]:
    """The recipe table as a rich Table, and the settings that differ from the official recipe.

    ``swept`` maps a swept element to its description: it is shown as swept, not as a difference."""
    swept = swept or {}
    official = "official" + (
        f" ({benchmark})" if benchmark in OFFICIAL_BENCHMARKS else f" (as for {_family(benchmark)})"
    )
    table = Table(title=f"CKPD-FSCIL recipe elements on {benchmark}: the official value and this trial's")
    for column in ("element", official, "this trial", ""):
        table.add_column(column)
    differing = []
    for row in explain(values, benchmark):
        if row.setting in swept:
            mark, shown = "swept", swept[row.setting]
        else:
            mark, shown = ("differs" if row.differs else ""), format_value(row.value)
            if row.differs:
                differing.append(row.setting)
        table.add_row(row.setting, escape(format_value(row.official)), escape(shown), mark)
    for what, official_value, ours in UNSET_DIFFERENCES:
        table.add_row(escape(f"({what})"), escape(official_value), escape(ours), "differs, no setting yet")
    return table, differing


def differing_line(differing: list[str], benchmark: str) -> str:
    """One line under the table: which settings differ from the official recipe, or that none does."""
    if not differing:
        return f"no element with a setting differs from the official recipe for {benchmark}"
    return (
        f"{len(differing)} element(s) differ from the official recipe for {benchmark}: {', '.join(differing)}"
    )


def _family(benchmark: str) -> str:
    return "cub200" if benchmark == "cub200" else _MINI


def format_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _same(official: Any, value: Any) -> bool:
    if isinstance(official, float) or isinstance(value, float):
        try:
            return abs(float(official) - float(value)) <= 1e-12 * max(1.0, abs(float(official)))
        except (TypeError, ValueError):
            return False
    return official == value
