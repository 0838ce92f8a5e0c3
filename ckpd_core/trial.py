"""The session loop: a base session, then incremental sessions that calibrate, decompose, train, merge."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from .atomic import atomic_path
from .calibration import collect_statistics, find_linear_layers
from .config import TrialConfig
from .data import build_benchmark
from .decomposition import (
    DecomposedLinear,
    check_rank,
    decompose_linear,
    layers_of_last_blocks,
    select_layers,
)
from .errors import ConfigError, DataError
from .metrics import accuracy_breakdown, trial_summary
from .models.backbone import input_config, train_only_last_blocks
from .models.classifier import FSCILClassifier, build_classifier
from .models.mamba_neck import MambaNeck
from .replay import ReplayMemory
from .session_data import session_batches
from .training import calibration_batches, predict, train_base, train_incremental

log = logging.getLogger(__name__)
CHECKPOINT_FORMAT = 1
STATE_FILE = "trial_state.pt"
# Modes whose layers are compared by the covariance-weighted spectrum (so they select the same layers).
_COVARIANCE_MODES = ("ckpd", "pissa", "lora", "full")


@dataclass
class TrialResult:
    """Per-session rows (session 0 = base), the per-trial summary metrics and the final merged model."""

    config: TrialConfig
    sessions: list[dict[str, Any]]
    summary: dict[str, float]
    base_key: str
    model: nn.Module | None = field(default=None, repr=False)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.sessions)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r} but CUDA is not available here: use device='cpu' or 'auto'")
    return torch.device(name)


def save_base_checkpoint(model: nn.Module, path: Path, key: str) -> None:
    """Write published whole, so a reader never sees half a checkpoint."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save({"format": CHECKPOINT_FORMAT, "key": key, "state_dict": state}, tmp)


def load_base_checkpoint(model: nn.Module, path: Path, key: str) -> None:
    """Load a base-session checkpoint, refusing one trained for different base settings."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DataError(f"base checkpoint {path} is unreadable ({exc}); delete it to retrain") from exc
    if not isinstance(blob, dict) or blob.get("format") != CHECKPOINT_FORMAT or blob.get("key") != key:
        raise DataError(
            f"base checkpoint {path} was trained for other base-session settings "
            f"(key {blob.get('key') if isinstance(blob, dict) else '?'} != {key}); delete it or fix the path"
        )
    model.load_state_dict(blob["state_dict"])


def _replace_module(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, child, module)


class SessionLoop:
    """One trial's sessions in order, and the state carried between them: model, replay memory, adapters."""

    def __init__(self, config: TrialConfig) -> None:
        self.config = config
        self.device = resolve_device(config.device)
        self.benchmark = build_benchmark(config.benchmark, config.data_root, **config.benchmark_kwargs)
        torch.manual_seed(config.effective_base_seed)
        weights = dict(pretrained=config.pretrained, checkpoint=config.backbone_checkpoint)
        if config.drop_path_rate:
            weights["drop_path_rate"] = config.drop_path_rate
        self.model: FSCILClassifier = build_classifier(
            config.backbone,
            dict(config.backbone_kwargs, **weights),
            config.neck,
            config.feature_dim,
            self.benchmark.num_classes,
            config.effective_base_seed,
            _neck_options(config, len(self.benchmark.base_classes)),
        ).to(self.device)
        self.benchmark.use_input_config(input_config(self.model.backbone))
        candidates = find_linear_layers(self.model.backbone, config.layer_patterns)
        check_rank(config.rank, candidates)
        self.candidate_names = list(candidates)
        if config.fixed_last_blocks is not None:  # only these are decomposed, and all of them adapt
            self.candidate_names = layers_of_last_blocks(self.candidate_names, config.fixed_last_blocks)
        self.replay = ReplayMemory(
            config.replay_per_class, seed=config.seed, selection=config.replay_selection
        )
        self.adapted: dict[str, DecomposedLinear] = {}
        self.base_key = config.base_session_key()

    # -- base session -------------------------------------------------------------------------
    def prepare_base(self, checkpoint: Path | None) -> tuple[float, int]:
        """Load the base model from ``checkpoint`` if present, else train it (and save it there)."""
        if checkpoint is not None and Path(checkpoint).exists():
            load_base_checkpoint(self.model, Path(checkpoint), self.base_key)
            log.info("base session loaded from %s", checkpoint)
            return float("nan"), 0
        cfg = self.config
        self.model.requires_grad_(True)
        if cfg.base_trainable_blocks is not None:
            train_only_last_blocks(self.model.backbone, cfg.base_trainable_blocks)
        trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        loss = train_base(
            self.model,
            self.benchmark.train_set(0),
            cfg,
            generator=torch.Generator().manual_seed(cfg.effective_base_seed),
            device=self.device,
        )
        if checkpoint is not None:
            save_base_checkpoint(self.model, Path(checkpoint), self.base_key)
        return loss, trainable

    # -- incremental sessions -------------------------------------------------------------------
    def _statistics(self, kind: str | None) -> dict[str, torch.Tensor] | None:
        if kind is None or len(self.replay) == 0:
            return None
        layers = find_linear_layers(self.model.backbone, self.candidate_names)
        batches = calibration_batches(self.replay.image_set(), self.device)
        return collect_statistics(self.model, layers, batches, kind=kind)

    def decompose(self) -> None:
        """Calibrate on the replay memory, decompose every candidate, keep the selected adapters."""
        cfg = self.config
        kind = "covariance" if cfg.peft_mode in _COVARIANCE_MODES else None
        kind = "act_scale" if cfg.peft_mode == "asvd" else kind
        stats = self._statistics(kind)
        layers = find_linear_layers(self.model.backbone, self.candidate_names)
        decomposed = {
            name: decompose_linear(
                layer,
                rank=cfg.rank,
                mode=cfg.peft_mode,
                covariance=stats[name] if kind == "covariance" and stats else None,
                act_scale=stats[name] if kind == "act_scale" else None,
                damping=cfg.damping,
            )
            for name, layer in layers.items()
        }
        chosen = select_layers(
            {name: d.asr for name, d in decomposed.items()}, threshold=cfg.asr_threshold, top_n=cfg.top_n
        )  # every candidate when neither is set: with fixed_last_blocks, the fixed layers
        self.adapted = {name: decomposed[name] for name in chosen}
        for name, module in self.adapted.items():
            _replace_module(self.model.backbone, name, module)

    def merge(self) -> None:
        """Fold every adapter back into a plain ``nn.Linear``."""
        for name, module in self.adapted.items():
            _replace_module(self.model.backbone, name, module.merge())
        self.adapted = {}

    def save_state(self, directory: Path, rows: list[dict[str, Any]]) -> None:
        """Everything needed to continue after the last finished session, written atomically."""
        adapters = {
            name: {
                "mode": m.mode,
                "rank": m.rank,
                "scale": m.scale,
                "singular_values": m.singular_values.cpu(),
                **{k: v.detach().cpu() for k, v in m.named_parameters()},
            }
            for name, m in self.adapted.items()
        }
        replay = [{"images": p.images, "labels": p.labels} for p in self.replay.parts]
        blob = {
            "format": CHECKPOINT_FORMAT,
            "config": self.config.to_dict(),
            "rows": rows,
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "adapters": adapters,
            "replay": replay,
            "replay_rng": self.replay.generator.get_state(),
        }
        with atomic_path(directory / STATE_FILE) as tmp:
            torch.save(blob, tmp)

    def load_state(self, directory: Path) -> list[dict[str, Any]]:
        """Restore a state written by ``save_state``; returns the rows of the finished sessions."""
        path = directory / STATE_FILE
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise DataError(f"trial state {path} is unreadable ({exc}); delete it to restart") from exc
        if blob.get("config") != self.config.to_dict():
            raise DataError(f"trial state {path} belongs to another trial configuration; delete it")
        for name, saved in blob["adapters"].items():
            module = DecomposedLinear(
                saved["weight_res"],
                saved.get("bias"),
                saved.get("adapter_a"),
                saved.get("adapter_b"),
                mode=saved["mode"],
                rank=saved["rank"],
                singular_values=saved["singular_values"],
                scale=saved["scale"],
            ).to(self.device)
            _replace_module(self.model.backbone, name, module)
            self.adapted[name] = module
        neck = self.model.neck
        saved_new_branch = any(k.startswith("neck.new.") for k in blob["model"])
        if isinstance(neck, MambaNeck) and neck.new is None and saved_new_branch:
            neck.add_new_branch()  # rebuilt before loading, so its saved weights have a place to go
        self.model.load_state_dict(blob["model"])
        template = self.benchmark.train_set(0)
        self.replay.parts = [template.with_tensors(p["images"], p["labels"]) for p in blob["replay"]]
        self.replay.generator.set_state(blob["replay_rng"])
        return blob["rows"]

    def incremental(self, session: int) -> tuple[float, int, dict[str, float]]:
        cfg = self.config
        torch.manual_seed(cfg.seed * 1000 + session)
        neck = self.model.neck
        if isinstance(neck, MambaNeck) and neck.new is None:
            neck.add_new_branch()  # before the first incremental session; zero output until it trains
        if cfg.peft_mode != "frozen" and (cfg.continuous or not self.adapted):
            self.decompose()
        asr = {name: module.asr for name, module in self.adapted.items()}
        self.model.requires_grad_(False)
        for module in self.adapted.values():
            module.unfreeze_adapter()
        neck.requires_grad_(True)
        adapter_params = [p for m in self.adapted.values() for p in m.parameters() if p.requires_grad]
        new_branch = neck.new_branch_parameters() if isinstance(neck, MambaNeck) else []
        fresh = {id(p) for p in new_branch}
        neck_params = [p for p in neck.parameters() if p.requires_grad and id(p) not in fresh]
        trainable = sum(p.numel() for p in adapter_params + new_branch + neck_params)
        generator = torch.Generator().manual_seed(cfg.seed * 1000 + session)
        batches = session_batches(
            cfg, self.model, self.benchmark, session, self.replay, generator, self.device
        )
        loss = train_incremental(
            self.model,
            [
                {"params": adapter_params, "lr": cfg.lr * cfg.adapter_lr_mult},
                {"params": new_branch, "lr": cfg.lr * cfg.new_branch_lr_mult},
                {"params": neck_params, "lr": cfg.lr * cfg.neck_lr_mult},
            ],
            batches,
            cfg,
            generator=generator,
            device=self.device,
        )
        if cfg.continuous:
            self.merge()
        return loss, trainable, asr

    def evaluate(self, session: int) -> dict[str, float]:
        bench = self.benchmark
        seen = bench.seen_classes(session)
        metrics: dict[str, float] = {}
        for split, prefix in (("test", ""), ("val", "val_")):
            data = bench.eval_set(session, split)
            preds = predict(self.model, data, len(seen), self.device, self.config.precision)
            metrics.update(
                accuracy_breakdown(
                    preds, data.labels, bench.base_classes, bench.session_classes[session], prefix
                )
            )
        return metrics

    def run_session(self, session: int, base_checkpoint: Path | None) -> dict[str, Any]:
        start = time.perf_counter()
        if session == 0:
            loss, trainable = self.prepare_base(base_checkpoint)
            asr: dict[str, float] = {}
        else:
            loss, trainable, asr = self.incremental(session)
        self.replay.add(self.benchmark.train_set(session))
        row: dict[str, Any] = {
            "session": session,
            "n_classes": len(self.benchmark.seen_classes(session)),
            **self.evaluate(session),
            "n_adapted": len(asr),
            "adapted_layers": list(asr),
            "adapted_asr": list(asr.values()),
            "trainable_params": trainable,
            "train_loss": loss,
        }
        row["seconds"] = time.perf_counter() - start
        log.info(
            "session %d: acc_all %.4f (base %.4f, novel %.4f) val %.4f, %d layers adapted, %.1fs",
            session,
            row["acc_all"],
            row["acc_base"],
            row["acc_novel"],
            row["val_acc_all"],
            row["n_adapted"],
            row["seconds"],
        )
        return row


def _neck_options(config: TrialConfig, num_base_classes: int) -> dict[str, Any]:
    """Keyword arguments of the neck named by ``config`` (only the Mamba neck takes any)."""
    if config.neck != "mamba":
        return {}
    return dict(
        d_state=config.neck_d_state,
        **config.neck_kwargs,
        supp_weight=config.neck_supp_weight,
        sep_weight=config.neck_sep_weight,
        num_base_classes=num_base_classes,
        detach_new_branch=config.detach_new_branch,
    )


def train_base_session(config: TrialConfig, checkpoint: Path) -> Path:
    """Train the base session of ``config`` and save it to ``checkpoint`` (for sharing between trials)."""
    loop = SessionLoop(config)
    loop.prepare_base(Path(checkpoint))
    return Path(checkpoint)


def run_trial(
    config: TrialConfig,
    on_session: Callable[[dict[str, Any]], None] | None = None,
    *,
    base_checkpoint: str | Path | None = None,
    state_dir: str | Path | None = None,
) -> TrialResult:
    """Run the base session and every incremental session, calling ``on_session(row)`` after each.

    ``base_checkpoint``: a file holding the trained base session (loaded when it exists, written
    after training when it does not), so trials that share base settings train it once.
    ``state_dir``: where the trial state is saved after every session (before ``on_session``); a
    trial started again with the same folder continues after its last finished session.
    """
    config.validate()
    loop = SessionLoop(config)
    checkpoint = Path(base_checkpoint) if base_checkpoint is not None else None
    state = Path(state_dir) if state_dir is not None else None
    rows = loop.load_state(state) if state is not None and (state / STATE_FILE).exists() else []
    if rows:
        log.info("resuming after session %d from %s", rows[-1]["session"], state)
    for session in range(len(rows), loop.benchmark.num_sessions):
        row = loop.run_session(session, checkpoint)
        rows.append(row)
        if state is not None:
            loop.save_state(state, rows)
        if on_session is not None:
            on_session(dict(row))
    loop.merge()
    return TrialResult(
        config=config, sessions=rows, summary=trial_summary(rows), base_key=loop.base_key, model=loop.model
    )
