"""What an incremental session trains on, batch by batch.

Two recipes of batches (``TrialConfig`` says which):

- half replay (``replay_base_copies`` unset, the embedded recipe): every step draws half of the batch
  from the new shots and half from the replay memory, with replacement, augmented on the fly;
- an image pool (the official recipe): the new shots (``shot_views`` augmented views of each, drawn
  once for the session, or none) plus ``replay_base_copies`` copies of every base exemplar and
  ``replay_novel_copies`` of every earlier-novel one, walked in shuffled passes of ``batch_size``
  (the last incomplete batch of a pass dropped, as the official loaders do).

``feature_replay`` adds a second pool of class-mean backbone feature maps, recomputed with the current
model every session: every base class's over its training images and every earlier-novel class's
over its shots, ``feature_base_copies`` / ``feature_novel_copies`` copies each. Each step then draws
``batch_size`` maps, which go straight into the neck beside the images' (``FSCILClassifier.training_loss``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch

from .config import TrialConfig
from .data.benchmark import BaseImageSet, Benchmark
from .models.classifier import FSCILClassifier
from .replay import ReplayMemory

FEATURE_BATCH = 256  # images per forward pass when computing class-mean feature maps


@dataclass
class Batch:
    """Images and labels for the backbone, and optionally feature maps and labels for the neck alone."""

    images: torch.Tensor
    labels: torch.Tensor
    maps: torch.Tensor | None = None
    map_labels: torch.Tensor | None = None


class RandomDraws:
    """``share`` items per draw from an image set, with replacement, augmented on the fly if ``augment``."""

    def __init__(self, data: BaseImageSet, share: int, augment: bool, device: torch.device) -> None:
        self.data, self.share, self.augment, self.device = data, share, augment, device
        self.labels = data.labels.to(device)  # moved once, indexed on the device

    def draw(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(len(self.data), (self.share,), generator=generator)
        images = self.data.load(idx, augment=self.augment, generator=generator, device=self.device)
        return images, self.labels[idx.to(self.device, non_blocking=True)]


class ShuffledPool:
    """Ready tensors walked in shuffled passes, ``batch`` at a time; a pass restarts when fewer than a
    batch remain (``drop_last``), or is the whole pool when that is smaller than a batch."""

    def __init__(self, items: torch.Tensor, labels: torch.Tensor, batch: int) -> None:
        self.items, self.labels, self.batch = items, labels, batch
        self._order: torch.Tensor = torch.empty(0, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.labels)

    def draw(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        size = min(self.batch, len(self))
        if len(self._order) < size:
            self._order = torch.randperm(len(self), generator=generator)
        idx, self._order = self._order[:size], self._order[size:]
        idx = idx.to(self.items.device)
        return self.items[idx], self.labels[idx]


def session_batches(
    config: TrialConfig,
    model: FSCILClassifier,
    benchmark: Benchmark,
    session: int,
    replay: ReplayMemory,
    generator: torch.Generator,
    device: torch.device,
) -> Callable[[], Batch]:
    """A function that returns the session's next training batch (see the module's docstring)."""
    new = benchmark.train_set(session)
    memory = replay.image_set() if len(replay) else None
    if config.replay_base_copies is None:
        draws = _half_replay(config, new, memory, device)
        images = lambda: _cat([d.draw(generator) for d in draws])  # noqa: E731 - one line of glue
    else:
        pool = _image_pool(config, benchmark, new, memory, generator, device)
        images = lambda: pool.draw(generator)  # noqa: E731
    maps = (
        _feature_pool(config, model, benchmark, session, generator, device) if config.feature_replay else None
    )

    def next_batch() -> Batch:
        batch_images, labels = images()
        if maps is None or not len(maps):
            return Batch(batch_images, labels)
        feature_maps, map_labels = maps.draw(generator)
        return Batch(batch_images, labels, feature_maps, map_labels)

    return next_batch


def _cat(parts: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.cat([images for images, _ in parts]), torch.cat([labels for _, labels in parts])


def _half_replay(
    config: TrialConfig, new: BaseImageSet, memory: BaseImageSet | None, device: torch.device
) -> list[RandomDraws]:
    sources = [(new, config.shot_views == 0)]
    if memory is not None:
        sources.append((memory, config.replay_augment))
    shares = [
        config.batch_size // len(sources) + (i < config.batch_size % len(sources))
        for i in range(len(sources))
    ]
    return [
        RandomDraws(data, share, augment, device)
        for (data, augment), share in zip(sources, shares, strict=True)
    ]


def shot_images(
    config: TrialConfig, shots: BaseImageSet, generator: torch.Generator, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """The shots as a session uses them: ``shot_views`` augmented views of each, or each once as it is."""
    views = max(1, config.shot_views)
    augment = config.shot_views > 0
    images = torch.cat(
        [shots.load(augment=augment, generator=generator, device=device) for _ in range(views)]
    )
    return images, shots.labels.to(device).repeat(views)


def _image_pool(
    config: TrialConfig,
    benchmark: Benchmark,
    new: BaseImageSet,
    memory: BaseImageSet | None,
    generator: torch.Generator,
    device: torch.device,
) -> ShuffledPool:
    parts = [shot_images(config, new, generator, device)]
    if memory is not None:
        is_base = torch.isin(memory.labels, torch.tensor(benchmark.base_classes))
        for rows, copies in ((is_base, config.replay_base_copies), (~is_base, config.replay_novel_copies)):
            rows = rows.nonzero().flatten()
            if copies and len(rows):
                subset = memory.subset(rows)
                loaded = [subset.load(augment=config.replay_augment, generator=generator, device=device)]
                parts.append((torch.cat(loaded * copies), subset.labels.to(device).repeat(copies)))
    return ShuffledPool(*_cat(parts), batch=config.batch_size)


@torch.no_grad()
def class_mean_maps(
    model: FSCILClassifier, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean backbone output (the neck's input) of each class over ``batches`` of (images, labels),
    computed in eval mode; returns the means and their classes, in class order."""
    training = model.training
    model.eval()
    sums: dict[int, torch.Tensor] = {}
    counts: dict[int, int] = {}
    for images, labels in batches:
        out = model.neck_input(images).float()
        classes, position = labels.unique(sorted=True, return_inverse=True)
        batch_sums = out.new_zeros((len(classes), *out.shape[1:])).index_add_(0, position, out)
        for label, total, count in zip(
            classes.tolist(), batch_sums, torch.bincount(position).tolist(), strict=True
        ):
            sums[label] = sums[label] + total if label in sums else total
            counts[label] = counts.get(label, 0) + count
    model.train(training)
    order = sorted(sums)
    maps = torch.stack([sums[label] / counts[label] for label in order])
    return maps, torch.tensor(order, device=maps.device)


def _chunks(images: torch.Tensor, labels: torch.Tensor) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for start in range(0, len(images), FEATURE_BATCH):
        yield images[start : start + FEATURE_BATCH], labels[start : start + FEATURE_BATCH]


def _feature_pool(
    config: TrialConfig,
    model: FSCILClassifier,
    benchmark: Benchmark,
    session: int,
    generator: torch.Generator,
    device: torch.device,
) -> ShuffledPool:
    means = []
    if config.feature_base_copies:  # every base training image, as it is, a batch at a time
        base = benchmark.train_set(0)
        means.append(
            (class_mean_maps(model, base.batches(FEATURE_BATCH, device)), config.feature_base_copies)
        )
    if config.feature_novel_copies:
        for earlier in range(1, session):
            shots = shot_images(config, benchmark.train_set(earlier), generator, device)
            means.append((class_mean_maps(model, _chunks(*shots)), config.feature_novel_copies))
    if not means:
        return ShuffledPool(torch.empty(0, device=device), torch.empty(0, dtype=torch.long, device=device), 1)
    parts = [
        (maps.repeat_interleave(copies, 0), classes.repeat_interleave(copies))
        for (maps, classes), copies in means
    ]
    return ShuffledPool(*_cat(parts), batch=config.batch_size)
