"""The FSCIL protocol: classes per session, the training samples of each session, val/test of seen classes."""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import ConfigError
from .transforms import ShiftTransform, Transform

SPLITS = ("val", "test")


class BaseImageSet(ABC):
    """Labelled images, stored as uint8 somewhere (memory, files); ``load`` returns model-ready floats.

    This is all the session loop, the replay memory and trial checkpoints use, so every storage
    (in-memory tensors, image files, dataset arrays) implements it.
    """

    labels: torch.Tensor
    transform: Transform

    def __len__(self) -> int:
        return self.labels.shape[0]

    @abstractmethod
    def subset(self, indices: torch.Tensor) -> BaseImageSet:
        """The images at ``indices``, same storage and pipeline."""

    @abstractmethod
    def raw(self, indices: torch.Tensor | None = None) -> torch.Tensor:
        """Decoded uint8 ``(N, 3, H, W)`` images at ``indices`` (all when None), on the CPU."""

    @property
    def images(self) -> torch.Tensor:
        """Every image as one uint8 tensor (decodes them all: meant for small sets such as replay)."""
        return self.raw()

    def with_tensors(self, images: torch.Tensor, labels: torch.Tensor) -> ImageSet:
        """Another set of in-memory images with this set's pipeline."""
        return ImageSet(images, labels, transform=self.transform)

    def with_transform(self, transform: Transform) -> BaseImageSet:
        """The same images through another pipeline."""
        clone = copy.copy(self)
        clone.transform = transform
        return clone

    def in_memory(self) -> ImageSet:
        """These images decoded into memory (no file access afterwards)."""
        return self.with_tensors(self.raw(), self.labels)

    def concat(self, others: list[BaseImageSet]) -> BaseImageSet:
        """This set followed by ``others``, with this set's pipeline."""
        sets = [self, *others]
        return self.with_tensors(torch.cat([s.raw() for s in sets]), torch.cat([s.labels for s in sets]))

    def load(
        self,
        indices: torch.Tensor | None = None,
        *,
        augment: bool = False,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
    ) -> torch.Tensor:
        """Float images for ``indices`` (all when None), augmented when ``augment``, on ``device``."""
        raw = self.raw(indices)
        device = torch.device(device)
        if device.type == "cuda":
            raw = raw.pin_memory().to(device, non_blocking=True)
        return self.transform(raw, augment=augment, generator=generator)

    def batches(self, batch_size: int, device: torch.device | str = "cpu"):
        """Yield ``(images, labels)`` in order, for evaluation and calibration."""
        labels = self.labels.to(device)
        for start in range(0, len(self), batch_size):
            idx = torch.arange(start, min(start + batch_size, len(self)))
            yield self.load(idx, device=device), labels[start : start + batch_size]


class ImageSet(BaseImageSet):
    """Labelled images held in memory as uint8 ``(N, 3, H, W)``.

    Without a ``transform`` it uses the icons pipeline: normalise with ``mean``/``std`` and shift
    by up to ``max_shift`` pixels when augmenting.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        mean: tuple[float, float, float] = (0.5, 0.5, 0.5),
        std: tuple[float, float, float] = (0.5, 0.5, 0.5),
        max_shift: int = 2,
        *,
        transform: Transform | None = None,
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[0] != labels.shape[0]:
            raise ValueError("ImageSet needs uint8 images (N, 3, H, W) and one label per image")
        self._images = images
        self.labels = labels.long()
        self.transform = transform if transform is not None else ShiftTransform(mean, std, max_shift)

    def subset(self, indices: torch.Tensor) -> ImageSet:
        return self.with_tensors(self._images[indices], self.labels[indices])

    def raw(self, indices: torch.Tensor | None = None) -> torch.Tensor:
        return self._images if indices is None else self._images[indices]

    def in_memory(self) -> ImageSet:
        return self


@dataclass
class Benchmark:
    """A class-incremental benchmark: session 0 holds the base classes, later sessions N-way K-shot.

    Labels are numbered in session order (base classes first). ``train_indices[t]`` selects the
    training images of session t from ``train``; val and test hold every class. ``input_transform``
    (None for fixed-size benchmarks such as icons) builds the pipeline from the backbone's timm data
    config, see ``use_input_config``.
    """

    name: str
    class_names: list[str]
    session_classes: list[list[int]]
    train: BaseImageSet
    val: BaseImageSet
    test: BaseImageSet
    train_indices: list[torch.Tensor]
    input_transform: Callable[[dict[str, Any]], Transform] | None = None

    def use_input_config(self, data_config: dict[str, Any]) -> None:
        """Feed the backbone its own input size and normalisation (timm's ``resolve_data_config`` dict)."""
        if self.input_transform is None:
            return
        transform = self.input_transform(data_config)
        self.train, self.val, self.test = (
            s.with_transform(transform) for s in (self.train, self.val, self.test)
        )

    @property
    def num_sessions(self) -> int:
        return len(self.session_classes)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def base_classes(self) -> list[int]:
        return self.session_classes[0]

    def seen_classes(self, session: int) -> list[int]:
        self._check_session(session)
        return [c for classes in self.session_classes[: session + 1] for c in classes]

    def train_set(self, session: int) -> BaseImageSet:
        """Training images of ``session``: every base image for session 0, the K shots afterwards."""
        self._check_session(session)
        return self.train.subset(self.train_indices[session])

    def eval_set(self, session: int, split: str = "test") -> BaseImageSet:
        """Val or test images of every class seen up to and including ``session``."""
        if split not in SPLITS:
            raise ConfigError(f"split={split!r} is unknown; choose val or test")
        images = self.val if split == "val" else self.test
        seen = torch.tensor(self.seen_classes(session))
        return images.subset(torch.isin(images.labels, seen).nonzero().flatten())

    def _check_session(self, session: int) -> None:
        if not 0 <= session < self.num_sessions:
            raise ConfigError(f"session {session} does not exist: {self.name} has 0..{self.num_sessions - 1}")
