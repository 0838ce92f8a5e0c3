"""Optimisation and evaluation steps shared by the base and the incremental sessions."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from .config import TrialConfig
from .data.benchmark import BaseImageSet
from .models.classifier import FSCILClassifier
from .models.etf_head import dot_regression_loss
from .precision import autocast, grad_scaler
from .schedules import schedule
from .session_data import Batch

log = logging.getLogger(__name__)
EVAL_BATCH = 512


def make_optimizer(
    kind: str, groups: list[dict], *, weight_decay: float, momentum: float
) -> torch.optim.Optimizer:
    """AdamW, or SGD with ``momentum``, over parameter groups that each carry their own ``lr``."""
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=groups[0]["lr"], momentum=momentum, weight_decay=weight_decay)
    return torch.optim.AdamW(groups, weight_decay=weight_decay)


def _step(loss: torch.Tensor, optimizer, scaler, scheduler) -> None:
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()


def train_base(
    model: FSCILClassifier,
    data: BaseImageSet,
    config: TrialConfig,
    *,
    generator: torch.Generator,
    device: torch.device,
) -> float:
    """Train the parameters that require grad on the base classes with the dot-regression loss, for
    ``base_epochs`` passes in batches of ``base_batch_size``; returns the last epoch's mean loss."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(
        config.base_optimizer,
        [{"params": params, "lr": config.base_lr}],
        weight_decay=config.base_weight_decay,
        momentum=config.momentum,
    )
    batch_size = config.base_batch_size
    steps_per_epoch = math.ceil(len(data) / batch_size)
    total = config.base_epochs * steps_per_epoch
    multiplier = schedule(config.base_schedule, total, warmup=min(steps_per_epoch, total // 10 + 1))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier)
    labels = data.labels.to(device)
    scaler = grad_scaler(device, config.precision)
    model.train()
    epoch_loss = math.nan
    for epoch in range(config.base_epochs):
        order = torch.randperm(len(data), generator=generator)
        running, seen = torch.zeros((), device=device), 0
        for start in range(0, len(data), batch_size):
            idx = order[start : start + batch_size]
            images = data.load(idx, augment=True, generator=generator, device=device)
            with autocast(device, config.precision):
                features = model.features(images)
                loss = config.loss_weight * dot_regression_loss(
                    features, labels[idx.to(device)], model.head.etf, length_aware=config.length_aware_targets
                )
            _step(loss, optimizer, scaler, scheduler)
            running += loss.detach() * idx.numel()
            seen += idx.numel()
        epoch_loss = float(running) / seen  # one device sync per epoch
        log.info("base epoch %d/%d: loss %.4f", epoch + 1, config.base_epochs, epoch_loss)
    model.eval()
    return epoch_loss


def train_incremental(
    model: FSCILClassifier,
    param_groups: list[dict],
    next_batch: Callable[[], Batch],
    config: TrialConfig,
    *,
    generator: torch.Generator,
    device: torch.device,
) -> float:
    """``steps`` steps of the session's optimizer on ``next_batch()``; returns the mean loss.

    The model is in eval mode unless ``train_mode``: the frozen backbone's normalisation statistics
    must not drift, and the official sessions train in eval mode too. With probability ``mixup_prob``
    a step mixes the neck's features with a permutation of the batch (weight ``mixup_lambda``).
    """
    param_groups = [g for g in param_groups if g["params"]]
    if config.steps == 0 or not param_groups:
        return math.nan
    optimizer = make_optimizer(
        config.optimizer, param_groups, weight_decay=config.weight_decay, momentum=config.momentum
    )
    multiplier = schedule(config.schedule, config.steps, warmup=max(1, config.steps // 10))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier)
    scaler = grad_scaler(device, config.precision)
    model.train(config.train_mode)
    total = torch.zeros((), device=device)
    for _ in range(config.steps):
        batch = next_batch()
        mixup = None
        if config.mixup_prob > 0 and float(torch.rand((), generator=generator)) < config.mixup_prob:
            size = len(batch.labels) + (0 if batch.map_labels is None else len(batch.map_labels))
            mixup = (torch.randperm(size, generator=generator).to(device), config.mixup_lambda)
        with autocast(device, config.precision):
            loss = model.training_loss(
                batch.images,
                batch.labels,
                maps=batch.maps,
                map_labels=batch.map_labels,
                loss_weight=config.loss_weight,
                length_aware=config.length_aware_targets,
                mixup=mixup,
            )
        _step(loss, optimizer, scaler, scheduler)
        total += loss.detach()
    model.eval()
    return float(total) / config.steps


@torch.no_grad()
def predict(
    model: nn.Module, data: BaseImageSet, num_seen: int, device: torch.device, precision: str = "fp32"
) -> torch.Tensor:
    """Predicted class of every image among the first ``num_seen`` classes (copied back once)."""
    model.eval()
    with autocast(device, precision):
        out = [model(images, num_seen).argmax(dim=-1) for images, _ in data.batches(EVAL_BATCH, device)]
    return torch.cat(out).cpu() if out else torch.empty(0, dtype=torch.long)


def calibration_batches(
    data: BaseImageSet, device: torch.device, batch_size: int = 256
) -> Sequence[torch.Tensor]:
    return [images for images, _ in data.batches(batch_size, device)]
