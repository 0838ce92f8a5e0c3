"""Optimisation and evaluation steps shared by the base and the incremental sessions."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch
from torch import nn

from .data.benchmark import BaseImageSet
from .models.classifier import FSCILClassifier
from .models.etf_head import dot_regression_loss
from .precision import autocast, grad_scaler

log = logging.getLogger(__name__)
EVAL_BATCH = 512


def cosine_lr(step: int, total: int, warmup: int) -> float:
    """Multiplier: linear warm-up over ``warmup`` steps, then cosine decay to 1% at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress))


def train_base(
    model: FSCILClassifier,
    data: BaseImageSet,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    generator: torch.Generator,
    device: torch.device,
    precision: str = "fp32",
) -> float:
    """Train every parameter on the base classes with the dot-regression loss; returns the last epoch loss."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(len(data) / batch_size)
    total = epochs * steps_per_epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: cosine_lr(s, total, min(steps_per_epoch, total // 10 + 1))
    )
    labels = data.labels.to(device)
    scaler = grad_scaler(device, precision)
    model.train()
    epoch_loss = math.nan
    for epoch in range(epochs):
        order = torch.randperm(len(data), generator=generator)
        running, seen = torch.zeros((), device=device), 0
        for start in range(0, len(data), batch_size):
            idx = order[start : start + batch_size]
            images = data.load(idx, augment=True, generator=generator, device=device)
            with autocast(device, precision):
                loss = dot_regression_loss(model.features(images), labels[idx.to(device)], model.head.etf)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            schedule.step()
            running += loss.detach() * idx.numel()
            seen += idx.numel()
        epoch_loss = float(running) / seen  # one device sync per epoch
        log.info("base epoch %d/%d: loss %.4f", epoch + 1, epochs, epoch_loss)
    model.eval()
    return epoch_loss


def train_incremental(
    model: FSCILClassifier,
    param_groups: list[dict],
    new_data: BaseImageSet,
    replay: BaseImageSet | None,
    *,
    steps: int,
    batch_size: int,
    generator: torch.Generator,
    device: torch.device,
    precision: str = "fp32",
) -> float:
    """``steps`` AdamW steps on batches of half new shots, half replay exemplars; returns the mean loss.

    The model stays in eval mode: the frozen backbone's normalisation statistics must not drift.
    """
    param_groups = [g for g in param_groups if g["params"]]
    if steps == 0 or not param_groups:
        return math.nan
    optimizer = torch.optim.AdamW(param_groups, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: cosine_lr(s, steps, max(1, steps // 10))
    )
    sources = [new_data] if replay is None or len(replay) == 0 else [new_data, replay]
    shares = [batch_size // len(sources) + (i < batch_size % len(sources)) for i in range(len(sources))]
    source_labels = [source.labels.to(device) for source in sources]  # moved once, indexed on the device
    scaler = grad_scaler(device, precision)
    model.eval()
    total = torch.zeros((), device=device)
    for _ in range(steps):
        images, labels = [], []
        for source, on_device, share in zip(sources, source_labels, shares, strict=True):
            idx = torch.randint(len(source), (share,), generator=generator)
            images.append(source.load(idx, augment=True, generator=generator, device=device))
            labels.append(on_device[idx.to(device, non_blocking=True)])
        with autocast(device, precision):
            loss = model.training_loss(torch.cat(images), torch.cat(labels))
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        schedule.step()
        total += loss.detach()
    return float(total) / steps


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
