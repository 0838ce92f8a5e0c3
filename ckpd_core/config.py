"""The settings of one CKPD-FSCIL trial, with defaults that run on a laptop CPU."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from .decomposition import PEFT_MODES
from .errors import ConfigError
from .precision import PRECISIONS

NECKS = ("none", "mlp", "mamba")
# Sizes of the Mamba neck a user may set through ``neck_kwargs`` (each an integer >= 1).
MAMBA_NECK_KWARGS = ("mid_channels", "num_layers", "dt_rank")
MAX_D_STATE = 256  # the largest state mamba-ssm's CUDA kernel supports
DEVICES = ("cpu", "cuda", "auto")
DEFAULT_LAYER_PATTERNS = ("blocks.*.attn.qkv", "blocks.*.attn.proj", "blocks.*.mlp.fc2")
# Bumped whenever base-session training changes, so stale cached checkpoints are not reused.
BASE_SESSION_FORMAT = 1
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
    "base_epochs",
    "base_lr",
    "base_batch_size",
    "base_weight_decay",
    "base_seed",
)
# Base-session settings that only matter for the Mamba neck (left out of the key for other necks).
MAMBA_ONLY_FIELDS = ("neck_d_state", "neck_kwargs")


@dataclass
class TrialConfig:
    """One trial: a base session, then every incremental session of the benchmark.

    Layer selection: ``asr_threshold`` adapts layers with ASR <= threshold, ``top_n`` the n lowest;
    set at most one (neither: every candidate layer). ``replay_per_class`` is the number of
    exemplars kept per seen class, used for calibration and replayed during training.

    Weights: ``backbone_checkpoint`` (a local .pth / .safetensors file) when set, else timm's hub
    when ``pretrained``, else random. ``precision`` (fp32 / bf16 / fp16) autocasts CUDA forward
    passes; calibration statistics and decompositions stay float64.

    ``neck="mamba"``: the SS2D projector of Mamba-FSCIL with state size ``neck_d_state`` and
    ``neck_kwargs`` (``mid_channels``, ``num_layers``, ``dt_rank``); its new branch trains at ``lr``,
    the rest of the neck at ``lr * neck_lr_mult``. ``neck_supp_weight`` / ``neck_sep_weight`` weigh
    its class-sensitive losses in incremental sessions (0 = off, as in CKPD).

    Seeds: ``seed`` drives the incremental sessions (replay draw, training order, new neck branch);
    ``base_seed`` (default: ``seed``) drives the base session (initialisation, ETF head, base
    training), so trials with different seeds and one ``base_seed`` share one base session.
    """

    benchmark: str = "icons"
    benchmark_kwargs: dict[str, Any] = field(default_factory=dict)
    data_root: str | None = None
    backbone: str = "vit_tiny_convstem"
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    pretrained: bool = False
    backbone_checkpoint: str | None = None
    neck: str = "mlp"
    neck_d_state: int = 16
    neck_kwargs: dict[str, Any] = field(default_factory=dict)
    neck_supp_weight: float = 0.0
    neck_sep_weight: float = 0.0
    feature_dim: int = 128
    layer_patterns: tuple[str, ...] = DEFAULT_LAYER_PATTERNS
    peft_mode: str = "ckpd"
    rank: int = 16
    asr_threshold: float | None = None
    top_n: int | None = 4
    continuous: bool = True
    damping: float = 0.01
    replay_per_class: int = 2
    base_epochs: int = 16
    base_lr: float = 1e-3
    base_batch_size: int = 64
    base_weight_decay: float = 0.05
    steps: int = 40
    lr: float = 1e-3
    neck_lr_mult: float = 0.1
    batch_size: int = 64
    seed: int = 0
    base_seed: int | None = None
    device: str = "cpu"
    precision: str = "fp32"

    def __post_init__(self) -> None:
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
        for name in ("lr", "base_lr", "damping", "neck_lr_mult"):
            if not isinstance(getattr(self, name), (int, float)) or getattr(self, name) <= 0:
                raise ConfigError(f"{name}={getattr(self, name)!r} must be a positive number")
        if self.asr_threshold is not None and self.top_n is not None:
            raise ConfigError(
                f"asr_threshold={self.asr_threshold} and top_n={self.top_n} are both set: "
                "select layers by one of them (set the other to null)"
            )
        if self.asr_threshold is not None and not 0 < self.asr_threshold <= 1:
            raise ConfigError(f"asr_threshold={self.asr_threshold} must lie in (0, 1]")
        if self.top_n is not None:
            _at_least("top_n", self.top_n, 1)
        if not self.layer_patterns or not all(isinstance(p, str) and p for p in self.layer_patterns):
            raise ConfigError("layer_patterns must be a non-empty list of module-name globs")
        if self.peft_mode not in ("frozen", "svd", "lora", "full") and self.replay_per_class < 1:
            raise ConfigError(
                f"replay_per_class=0 leaves peft_mode={self.peft_mode!r} no calibration samples: use >= 1"
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
