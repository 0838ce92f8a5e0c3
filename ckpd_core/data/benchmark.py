"""The FSCIL protocol: classes per session, the training samples of each session, val/test of seen classes."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import ConfigError

SPLITS = ("val", "test")


class ImageSet:
    """Labelled images held as uint8 ``(N, 3, H, W)``; ``load`` returns normalised float batches."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        mean: tuple[float, float, float] = (0.5, 0.5, 0.5),
        std: tuple[float, float, float] = (0.5, 0.5, 0.5),
        max_shift: int = 2,
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[0] != labels.shape[0]:
            raise ValueError("ImageSet needs uint8 images (N, 3, H, W) and one label per image")
        self.images = images
        self.labels = labels.long()
        self.mean = mean
        self.std = std
        self.max_shift = max_shift

    def __len__(self) -> int:
        return self.labels.shape[0]

    def subset(self, indices: torch.Tensor) -> ImageSet:
        return self.with_tensors(self.images[indices], self.labels[indices])

    def with_tensors(self, images: torch.Tensor, labels: torch.Tensor) -> ImageSet:
        """Another set of images with this set's normalisation and augmentation."""
        return ImageSet(images, labels, self.mean, self.std, self.max_shift)

    def concat(self, others: list[ImageSet]) -> ImageSet:
        """This set followed by ``others`` (same normalisation)."""
        sets = [self, *others]
        return self.with_tensors(torch.cat([s.images for s in sets]), torch.cat([s.labels for s in sets]))

    def load(
        self,
        indices: torch.Tensor | None = None,
        *,
        augment: bool = False,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
    ) -> torch.Tensor:
        """Float images for ``indices`` (all when None), randomly shifted a few pixels when ``augment``."""
        raw = self.images if indices is None else self.images[indices]
        x = raw.to(device=device, dtype=torch.float32).div_(255.0)
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        x = (x - mean) / std
        if augment and self.max_shift > 0:
            x = random_shift(x, self.max_shift, generator)
        return x

    def batches(self, batch_size: int, device: torch.device | str = "cpu"):
        """Yield ``(images, labels)`` in order, for evaluation and calibration."""
        for start in range(0, len(self), batch_size):
            idx = torch.arange(start, min(start + batch_size, len(self)))
            yield self.load(idx, device=device), self.labels[idx].to(device)


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator | None) -> torch.Tensor:
    """Translate each image by a random whole number of pixels, repeating the border."""
    n, _, h, w = x.shape
    shifts = torch.randint(-max_shift, max_shift + 1, (n, 2), generator=generator)
    padded = F.pad(x, (max_shift,) * 4, mode="replicate")
    rows = (torch.arange(h).view(1, h) + max_shift - shifts[:, :1]).to(x.device)
    cols = (torch.arange(w).view(1, w) + max_shift - shifts[:, 1:]).to(x.device)
    batch = torch.arange(n, device=x.device).view(n, 1, 1)
    out = padded.permute(0, 2, 3, 1)[batch, rows.view(n, h, 1), cols.view(n, 1, w)]
    return out.permute(0, 3, 1, 2).contiguous()


@dataclass
class Benchmark:
    """A class-incremental benchmark: session 0 holds the base classes, later sessions N-way K-shot.

    Labels are numbered in session order (base classes first). ``train_indices[t]`` selects the
    training images of session t from ``train``; val and test hold every class.
    """

    name: str
    class_names: list[str]
    session_classes: list[list[int]]
    train: ImageSet
    val: ImageSet
    test: ImageSet
    train_indices: list[torch.Tensor]

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

    def train_set(self, session: int) -> ImageSet:
        """Training images of ``session``: every base image for session 0, the K shots afterwards."""
        self._check_session(session)
        return self.train.subset(self.train_indices[session])

    def eval_set(self, session: int, split: str = "test") -> ImageSet:
        """Val or test images of every class seen up to and including ``session``."""
        if split not in SPLITS:
            raise ConfigError(f"split={split!r} is unknown; choose val or test")
        images = self.val if split == "val" else self.test
        seen = torch.tensor(self.seen_classes(session))
        return images.subset(torch.isin(images.labels, seen).nonzero().flatten())

    def _check_session(self, session: int) -> None:
        if not 0 <= session < self.num_sessions:
            raise ConfigError(f"session {session} does not exist: {self.name} has 0..{self.num_sessions - 1}")
