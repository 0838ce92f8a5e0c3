"""The settings of one CKPD-FSCIL trial, with defaults that run on a laptop CPU."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

from .decomposition import PEFT_MODES
from .errors import ConfigError
from .precision import PRECISIONS
from .recipe import RECIPES, recipe_values
from .schedules import SCHEDULES

NECKS = ("none", "mlp", "mamba")
# Sizes of the Mamba neck a user may set through ``neck_kwargs`` (each an integer >= 1).
MAMBA_NECK_KWARGS = ("mid_channels", "num_layers", "dt_rank")
MAX_D_STATE = 256  # the largest state mamba-ssm's CUDA kernel supports
DEVICES = ("cpu", "cuda", "auto")
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


@dataclass
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
    """

    recipe: str = "embedded"
    benchmark: str = "icons"
    benchmark_kwargs: dict[str, Any] = field(default_factory=dict)
    data_root: str | None = None
    backbone: str = FROM_RECIPE
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    pretrained: bool = FROM_RECIPE
    backbone_checkpoint: str | None = None
    drop_path_rate: float = FROM_RECIPE
    neck: str = FROM_RECIPE
    neck_d_state: int = FROM_RECIPE
    neck_kwargs: dict[str, Any] = FROM_RECIPE
    neck_supp_weight: float = 0.0
    neck_sep_weight: float = 0.0
    feature_dim: int = FROM_RECIPE
    layer_patterns: tuple[str, ...] = DEFAULT_LAYER_PATTERNS
    peft_mode: str = "ckpd"
    rank: int = FROM_RECIPE
    asr_threshold: float | None = None
    top_n: int | None = FROM_RECIPE
    fixed_last_blocks: int | None = FROM_RECIPE
    continuous: bool = True
    damping: float = 0.01
    replay_per_class: int = FROM_RECIPE
    replay_selection: str = FROM_RECIPE
    base_trainable_blocks: int | None = FROM_RECIPE
    base_optimizer: str = FROM_RECIPE
    base_epochs: int = FROM_RECIPE
    base_lr: float = FROM_RECIPE
    base_batch_size: int = FROM_RECIPE
    base_weight_decay: float = FROM_RECIPE
    base_schedule: str = FROM_RECIPE
    momentum: float = FROM_RECIPE
    loss_weight: float = FROM_RECIPE
    length_aware_targets: bool = FROM_RECIPE
    optimizer: str = FROM_RECIPE
    steps: int = FROM_RECIPE
    lr: float = FROM_RECIPE
    weight_decay: float = FROM_RECIPE
    schedule: str = FROM_RECIPE
    adapter_lr_mult: float = FROM_RECIPE
    neck_lr_mult: float = FROM_RECIPE
    new_branch_lr_mult: float = FROM_RECIPE
    batch_size: int = FROM_RECIPE
    replay_base_copies: int | None = FROM_RECIPE
    replay_novel_copies: int | None = FROM_RECIPE
    shot_views: int = FROM_RECIPE
    replay_augment: bool = FROM_RECIPE
    feature_replay: bool = FROM_RECIPE
    feature_base_copies: int = FROM_RECIPE
    feature_novel_copies: int = FROM_RECIPE
    train_mode: bool = FROM_RECIPE
    detach_new_branch: bool = FROM_RECIPE
    mixup_prob: float = FROM_RECIPE
    mixup_lambda: float = FROM_RECIPE
    seed: int = 0
    base_seed: int | None = None
    device: str = "cpu"
    precision: str = FROM_RECIPE

    def __post_init__(self) -> None:
        _choice("recipe", self.recipe, RECIPES)
        benchmark = self.benchmark if isinstance(self.benchmark, str) else ""
        for name, value in recipe_values(self.recipe, benchmark).items():
            if isinstance(getattr(self, name), _FromRecipe):
                setattr(self, name, copy.deepcopy(value))
        self.layer_patterns = tuple(self.layer_patterns)
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError naming the first impossible setting."""
        _choice("peft_mode", self.peft_mode, PEFT_MODES)
        _choice("neck", self.neck, NECKS)
        _choice("device", self.device.split(":")[0], DEVICES)
        _choice("precision", self.precision, PRECISIONS)
        for name, example in (("benchmark_kwargs", "{num_sessions: 3}"), ("backbone_kwargs", "{depth: 2}")):
            if not isinstance(getattr(self, name), dict):
                raise ConfigError(
                    f"{name}={getattr(self, name)!r} must be a mapping of settings, e.g. {example}"
                )
        self._validate_weights()
        _at_least("seed", self.seed, 0)
        if self.base_seed is not None:
            _at_least("base_seed", self.base_seed, 0)
        _at_least("rank", self.rank, 1)
        self._validate_neck()
        _at_least("feature_dim", self.feature_dim, 2)
        _at_least("replay_per_class", self.replay_per_class, 0)
        _at_least("base_epochs", self.base_epochs, 0)
        _at_least("base_batch_size", self.base_batch_size, 1)
        _at_least("steps", self.steps, 0)
        _at_least("batch_size", self.batch_size, 1)
        for name in ("lr", "base_lr", "damping", "neck_lr_mult", "loss_weight"):
            _positive(name, getattr(self, name))
        for name in ("adapter_lr_mult", "new_branch_lr_mult", "weight_decay", "base_weight_decay"):
            _in_range(name, getattr(self, name), 0.0, math.inf, ">= 0")
        _in_range("momentum", self.momentum, 0.0, 1.0, "in [0, 1)", closed=False)
        _in_range("drop_path_rate", self.drop_path_rate, 0.0, 1.0, "in [0, 1)", closed=False)
        for name in ("mixup_prob", "mixup_lambda"):
            _in_range(name, getattr(self, name), 0.0, 1.0, "in [0, 1]")
        self._validate_recipe_choices()
        self._validate_selection()
        self._validate_replay()
        if self.peft_mode not in ("frozen", "svd", "lora", "full") and self.replay_per_class < 1:
            raise ConfigError(
                f"replay_per_class=0 leaves peft_mode={self.peft_mode!r} no calibration samples: use >= 1"
            )

    def _validate_recipe_choices(self) -> None:
        _choice("base_optimizer", self.base_optimizer, OPTIMIZERS)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("base_schedule", self.base_schedule, tuple(SCHEDULES))
        _choice("schedule", self.schedule, tuple(SCHEDULES))
        _choice("replay_selection", self.replay_selection, REPLAY_SELECTIONS)
        for name in (
            "length_aware_targets",
            "replay_augment",
            "feature_replay",
            "train_mode",
            "detach_new_branch",
        ):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name}={getattr(self, name)!r} must be true or false")
        if self.base_trainable_blocks is not None:
            _at_least("base_trainable_blocks", self.base_trainable_blocks, 0)

    def _validate_selection(self) -> None:
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
        if self.asr_threshold is not None and not 0 < self.asr_threshold <= 1:
            raise ConfigError(f"asr_threshold={self.asr_threshold} must lie in (0, 1]")
        if self.top_n is not None:
            _at_least("top_n", self.top_n, 1)
        if self.fixed_last_blocks is not None:
            _at_least("fixed_last_blocks", self.fixed_last_blocks, 1)
        if not self.layer_patterns or not all(isinstance(p, str) and p for p in self.layer_patterns):
            raise ConfigError("layer_patterns must be a non-empty list of module-name globs")

    def _validate_replay(self) -> None:
        copies = {
            "replay_base_copies": self.replay_base_copies,
            "replay_novel_copies": self.replay_novel_copies,
        }
        if (copies["replay_base_copies"] is None) != (copies["replay_novel_copies"] is None):
            raise ConfigError(
                "replay_base_copies and replay_novel_copies go together: set both (a shuffled pool of "
                "copies) or neither (half of every batch replayed)"
            )
        for name, value in copies.items():
            if value is not None:
                _at_least(name, value, 0)
        _at_least("feature_base_copies", self.feature_base_copies, 0)
        _at_least("feature_novel_copies", self.feature_novel_copies, 0)
        if isinstance(self.shot_views, bool) or not isinstance(self.shot_views, int) or self.shot_views < -1:
            raise ConfigError(
                f"shot_views={self.shot_views!r} must be an integer >= -1 (-1: no augmentation, "
                "0: augmented every step, n: n views drawn once per session)"
            )

    def _validate_weights(self) -> None:
        if not isinstance(self.pretrained, bool):
            raise ConfigError(f"pretrained={self.pretrained!r} must be true or false")
        checkpoint = self.backbone_checkpoint
        if checkpoint is not None and not (isinstance(checkpoint, str) and checkpoint):
            raise ConfigError(f"backbone_checkpoint={checkpoint!r} must be a file path or null")
        reserved = sorted({"pretrained", "checkpoint", "pretrained_cfg_overlay"} & set(self.backbone_kwargs))
        if reserved:
            raise ConfigError(
                f"backbone_kwargs.{reserved[0]}: choose weights with the pretrained / backbone_checkpoint "
                "settings"
            )
        if "drop_path_rate" in self.backbone_kwargs:
            raise ConfigError("backbone_kwargs.drop_path_rate: set it as the drop_path_rate setting")

    def _validate_neck(self) -> None:
        _at_least("neck_d_state", self.neck_d_state, 1)
        if self.neck_d_state > MAX_D_STATE:
            raise ConfigError(
                f"neck_d_state={self.neck_d_state} exceeds {MAX_D_STATE}, the most mamba-ssm's kernel allows"
            )
        if not isinstance(self.neck_kwargs, dict):
            raise ConfigError(f"neck_kwargs={self.neck_kwargs!r} must be a mapping of Mamba neck sizes")
        for name, value in self.neck_kwargs.items():
            if name not in MAMBA_NECK_KWARGS:
                raise ConfigError(f"neck_kwargs.{name} is unknown; known: {', '.join(MAMBA_NECK_KWARGS)}")
            _at_least(f"neck_kwargs.{name}", value, 1)
        for name in ("neck_supp_weight", "neck_sep_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ConfigError(f"{name}={value!r} must be a number >= 0")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrialConfig:
        """Build from plain values (YAML, a sweep sample), rejecting unknown names."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"unknown trial setting(s) {', '.join(unknown)}; known settings: {', '.join(sorted(known))}"
            )
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


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is unknown; choose one of {', '.join(allowed)}")


def _at_least(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{name}={value!r} must be an integer >= {low}")


def _positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"{name}={value!r} must be a positive number")


def _in_range(name: str, value: Any, low: float, high: float, allowed: str, closed: bool = True) -> None:
    number = not isinstance(value, bool) and isinstance(value, (int, float))
    if not number or not low <= value <= high or (not closed and value == high):
        raise ConfigError(f"{name}={value!r} must be a number {allowed}")
