"""The settings of one CKPD-FSCIL trial, with defaults that run on a laptop CPU."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from dataclasses import field
from typing import Annotated, Any, Literal

from pydantic import Field, NonNegativeInt, PositiveInt
from pydantic.dataclasses import dataclass

from .decomposition import PEFT_MODES
from .errors import ConfigError
from .precision import PRECISIONS
from .recipe import RECIPES, recipe_values
from .schedules import SCHEDULES
from .validation import (
    STRICT,
    Fraction,
    NonNegativeNumber,
    Number,
    PositiveNumber,
    Probability,
    config_errors,
)

NECKS = ("none", "mlp", "mamba")
# Sizes of the Mamba neck a user may set through ``neck_kwargs`` (each an integer >= 1).
MAMBA_NECK_KWARGS = ("mid_channels", "num_layers", "dt_rank")
MAX_D_STATE = 256  # the largest state mamba-ssm's CUDA kernel supports
DEVICES = ("cpu", "cuda", "auto")
_DEVICE = rf"^({'|'.join(DEVICES)})(:\d+)?$"
_KWARGS = "a mapping of settings, e.g. "
_SCHEDULES = tuple(SCHEDULES)
DEFAULT_LAYER_PATTERNS = ("blocks.*.attn.qkv", "blocks.*.attn.proj", "blocks.*.mlp.fc2")
# Bumped whenever base-session training changes, so stale cached checkpoints are not reused.
BASE_SESSION_FORMAT = 2
# The settings a base session depends on; everything else only affects incremental sessions.
BASE_SESSION_FIELDS = (
    "benchmark",
    "benchmark_kwargs",
    "backbone",
    "backbone_kwargs",
    "pretrained",
    "backbone_checkpoint",
    "precision",
    "neck",
    "neck_d_state",
    "neck_kwargs",
    "feature_dim",
    "drop_path_rate",
    "base_trainable_blocks",
    "base_optimizer",
    "base_epochs",
    "base_lr",
    "base_batch_size",
    "base_weight_decay",
    "base_schedule",
    "momentum",
    "loss_weight",
    "length_aware_targets",
    "base_seed",
)
# Base-session settings that only matter for the Mamba neck (left out of the key for other necks).
MAMBA_ONLY_FIELDS = ("neck_d_state", "neck_kwargs")


class _FromRecipe:
    """The default of every recipe element: filled in from ``recipe`` when the trial is built."""

    def __repr__(self) -> str:
        return "<from recipe>"

    def __reduce__(self) -> str:
        return "FROM_RECIPE"


FROM_RECIPE: Any = _FromRecipe()
OPTIMIZERS = ("adamw", "sgd")
REPLAY_SELECTIONS = ("random", "first")


@config_errors()
@dataclass(config=STRICT)
class TrialConfig:
    """One trial: a base session, then every incremental session of the benchmark.

    ``recipe`` (``embedded``, the CPU-sized default, or ``official``, the official CKPD-FSCIL code)
    fills in every recipe element left unset; see ``ckpd_core.recipe`` for the elements, their
    official values and where those come from. A value set here wins over the recipe. The recipe fills
    in values when the config is built: ``replace(recipe=...)`` keeps the values already filled in, so
    build a new ``TrialConfig`` to switch recipes.

    Layer selection: ``asr_threshold`` adapts layers with ASR <= threshold, ``top_n`` the n lowest,
    ``fixed_last_blocks`` every candidate layer of the last n blocks; set at most one (none: every
    candidate layer). ``replay_per_class`` is the number of exemplars kept per seen class
    (``replay_selection``: at random, or the first in file order), used for calibration and replayed
    during training: in half of every batch, or, with ``replay_base_copies`` / ``replay_novel_copies``
    set, as that many copies of each base / earlier-novel exemplar in a pool shuffled with the new
    shots (``shot_views`` augmented views of each, drawn once per session; 0: augmented every step;
    -1: not augmented). ``feature_replay`` adds a second batch of class-mean backbone feature maps
    (``feature_base_copies`` / ``feature_novel_copies`` copies) fed straight into the neck.

    Optimisation: ``base_optimizer`` / ``optimizer`` (adamw or sgd with ``momentum``), learning rates,
    weight decays and ``base_schedule`` / ``schedule`` by name (``ckpd_core.schedules``); in sessions
    the adapters train at ``lr * adapter_lr_mult``, the neck's new branch at ``lr * new_branch_lr_mult``
    and the rest of the neck at ``lr * neck_lr_mult``. ``base_trainable_blocks`` trains only the last n
    backbone blocks (with the final norm and the neck) in the base session. ``train_mode`` keeps the
    model in train mode in sessions (``drop_path_rate`` active); ``mixup_prob`` mixes neck features
    with the fixed weight ``mixup_lambda``; ``loss_weight`` scales the dot-regression loss and
    ``length_aware_targets`` balances it over the classes of a batch.

    Weights: ``backbone_checkpoint`` (a local .pth / .safetensors file) when set, else timm's hub
    when ``pretrained``, else random. ``precision`` (fp32 / bf16 / fp16) autocasts CUDA forward
    passes; calibration statistics and decompositions stay float64.

    ``neck="mamba"``: the SS2D projector of Mamba-FSCIL with state size ``neck_d_state`` and
    ``neck_kwargs`` (``mid_channels``, ``num_layers``, ``dt_rank``); ``detach_new_branch`` keeps its
    new branch from training the backbone. ``neck_supp_weight`` / ``neck_sep_weight`` weigh its
    class-sensitive losses in incremental sessions (0 = off, as in CKPD).

    Seeds: ``seed`` drives the incremental sessions (replay draw, training order, new neck branch);
    ``base_seed`` (default: ``seed``) drives the base session (initialisation, ETF head, base
    training), so trials with different seeds and one ``base_seed`` share one base session.

    Each annotation below is what its setting allows; pydantic checks it (strictly: text is no number,
    ``true`` no integer) when a trial is built or replaced, and a bad value raises ConfigError.
    """

    recipe: Literal[RECIPES] = "embedded"
    benchmark: str = "icons"
    benchmark_kwargs: Annotated[dict[str, Any], Field(description=_KWARGS + "{num_sessions: 3}")] = field(
        default_factory=dict
    )
    data_root: str | None = None
    backbone: str = FROM_RECIPE
    backbone_kwargs: Annotated[dict[str, Any], Field(description=_KWARGS + "{depth: 2}")] = field(
        default_factory=dict
    )
    pretrained: bool = FROM_RECIPE
    backbone_checkpoint: Annotated[str, Field(min_length=1)] | None = None
    drop_path_rate: Fraction = FROM_RECIPE
    neck: Literal[NECKS] = FROM_RECIPE
    neck_d_state: Annotated[int, Field(ge=1, le=MAX_D_STATE)] = FROM_RECIPE
    neck_kwargs: dict[Literal[MAMBA_NECK_KWARGS], PositiveInt] = FROM_RECIPE
    neck_supp_weight: NonNegativeNumber = 0.0
    neck_sep_weight: NonNegativeNumber = 0.0
    feature_dim: Annotated[int, Field(ge=2)] = FROM_RECIPE
    layer_patterns: Annotated[
        tuple[Annotated[str, Field(min_length=1)], ...],
        Field(min_length=1, strict=False, description="a non-empty list of module-name globs"),
    ] = DEFAULT_LAYER_PATTERNS
    peft_mode: Literal[PEFT_MODES] = "ckpd"
    rank: PositiveInt = FROM_RECIPE
    asr_threshold: Annotated[Number, Field(gt=0, le=1)] | None = None
    top_n: PositiveInt | None = FROM_RECIPE
    fixed_last_blocks: PositiveInt | None = FROM_RECIPE
    continuous: bool = True
    damping: PositiveNumber = 0.01
    replay_per_class: NonNegativeInt = FROM_RECIPE
    replay_selection: Literal[REPLAY_SELECTIONS] = FROM_RECIPE
    base_trainable_blocks: NonNegativeInt | None = FROM_RECIPE
    base_optimizer: Literal[OPTIMIZERS] = FROM_RECIPE
    base_epochs: NonNegativeInt = FROM_RECIPE
    base_lr: PositiveNumber = FROM_RECIPE
    base_batch_size: PositiveInt = FROM_RECIPE
    base_weight_decay: NonNegativeNumber = FROM_RECIPE
    base_schedule: Literal[_SCHEDULES] = FROM_RECIPE
    momentum: Fraction = FROM_RECIPE
    loss_weight: PositiveNumber = FROM_RECIPE
    length_aware_targets: bool = FROM_RECIPE
    optimizer: Literal[OPTIMIZERS] = FROM_RECIPE
    steps: NonNegativeInt = FROM_RECIPE
    lr: PositiveNumber = FROM_RECIPE
    weight_decay: NonNegativeNumber = FROM_RECIPE
    schedule: Literal[_SCHEDULES] = FROM_RECIPE
    adapter_lr_mult: NonNegativeNumber = FROM_RECIPE
    neck_lr_mult: PositiveNumber = FROM_RECIPE
    new_branch_lr_mult: NonNegativeNumber = FROM_RECIPE
    batch_size: PositiveInt = FROM_RECIPE
    replay_base_copies: NonNegativeInt | None = FROM_RECIPE
    replay_novel_copies: NonNegativeInt | None = FROM_RECIPE
    shot_views: Annotated[int, Field(ge=-1)] = FROM_RECIPE
    replay_augment: bool = FROM_RECIPE
    feature_replay: bool = FROM_RECIPE
    feature_base_copies: NonNegativeInt = FROM_RECIPE
    feature_novel_copies: NonNegativeInt = FROM_RECIPE
    train_mode: bool = FROM_RECIPE
    detach_new_branch: bool = FROM_RECIPE
    mixup_prob: Probability = FROM_RECIPE
    mixup_lambda: Probability = FROM_RECIPE
    seed: NonNegativeInt = 0
    base_seed: NonNegativeInt | None = None
    device: Annotated[str, Field(pattern=_DEVICE, description="cpu, cuda, cuda:N or auto")] = "cpu"
    precision: Literal[PRECISIONS] = FROM_RECIPE

    def __post_init__(self) -> None:
        for name, value in recipe_values(self.recipe, self.benchmark).items():
            if isinstance(getattr(self, name), _FromRecipe):
                setattr(self, name, copy.deepcopy(value))
        self._check_together()

    def validate(self) -> None:
        """Check the settings again (say after setting an attribute): raise ConfigError naming the first
        impossible one."""
        self.replace()

    def _check_together(self) -> None:
        """What the types cannot say: settings that exclude or need each other, and where to set what."""
        chosen = {
            name: getattr(self, name)
            for name in ("asr_threshold", "top_n", "fixed_last_blocks")
            if getattr(self, name) is not None
        }
        if len(chosen) > 1:
            both = " and ".join(f"{name}={value}" for name, value in chosen.items())
            which = "both" if len(chosen) == 2 else "all"
            raise ConfigError(
                f"{both} are {which} set: select layers by one of them (set the others to null)"
            )
        if (self.replay_base_copies is None) != (self.replay_novel_copies is None):
            raise ConfigError(
                "replay_base_copies and replay_novel_copies go together: set both (a shuffled pool of "
                "copies) or neither (half of every batch replayed)"
            )
        if self.peft_mode not in ("frozen", "svd", "lora", "full") and self.replay_per_class < 1:
            raise ConfigError(
                f"replay_per_class=0 leaves peft_mode={self.peft_mode!r} no calibration samples: use >= 1"
            )
        reserved = sorted({"pretrained", "checkpoint", "pretrained_cfg_overlay"} & set(self.backbone_kwargs))
        if reserved:
            raise ConfigError(
                f"backbone_kwargs.{reserved[0]}: choose weights with the pretrained / backbone_checkpoint "
                "settings"
            )
        if "drop_path_rate" in self.backbone_kwargs:
            raise ConfigError("backbone_kwargs.drop_path_rate: set it as the drop_path_rate setting")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrialConfig:
        """Build from plain values (YAML, a sweep sample), rejecting unknown names."""
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["layer_patterns"] = list(self.layer_patterns)
        return values

    @property
    def effective_base_seed(self) -> int:
        """The seed of the base session: ``base_seed``, or ``seed`` when it is not set."""
        return self.seed if self.base_seed is None else self.base_seed

    def replace(self, **changes: Any) -> TrialConfig:
        return dataclasses.replace(self, **changes)

    def base_session_key(self) -> str:
        """Hash of exactly the settings the base session depends on (not the incremental knobs)."""
        relevant = {
            name: getattr(self, name)
            for name in BASE_SESSION_FIELDS
            if self.neck == "mamba" or name not in MAMBA_ONLY_FIELDS
        }
        del relevant["base_seed"]
        relevant["seed"] = self.effective_base_seed  # as keys were before base_seed existed
        relevant["format"] = BASE_SESSION_FORMAT
        blob = json.dumps(relevant, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]
