"""Exemplars kept per seen class: replayed during training and used to calibrate the decomposition."""

from __future__ import annotations

import torch

from .data.benchmark import BaseImageSet, ImageSet

SELECTIONS = ("random", "first")


class ReplayMemory:
    """Up to ``per_class`` training images of every class seen so far: chosen at random with a seed, or
    (``selection="first"``, as the official code) the first ones in file order.

    Novel classes keep exemplars from their own K shots only, so replay never uses extra labelled data.
    Exemplars are held decoded in memory, so file-backed datasets are not read again for them.
    """

    def __init__(self, per_class: int, seed: int = 0, selection: str = "random") -> None:
        if selection not in SELECTIONS:
            raise ValueError(f"selection={selection!r} is unknown; choose one of {', '.join(SELECTIONS)}")
        self.per_class = per_class
        self.selection = selection
        self.generator = torch.Generator().manual_seed(seed)
        self.parts: list[ImageSet] = []  # one subset per add(), in order

    def add(self, images: BaseImageSet) -> None:
        """Keep ``per_class`` images of each class present in ``images`` (random, or the first ones)."""
        if self.per_class == 0 or len(images) == 0:
            return
        keep = []
        for label in images.labels.unique(sorted=True):
            rows = (images.labels == label).nonzero().flatten()
            if self.selection == "first":
                keep.append(rows[: self.per_class])
                continue
            order = torch.randperm(rows.numel(), generator=self.generator)
            keep.append(rows[order[: self.per_class]].sort().values)
        self.parts.append(images.subset(torch.cat(keep)).in_memory())

    def __len__(self) -> int:
        return sum(len(part) for part in self.parts)

    @property
    def classes(self) -> list[int]:
        return sorted({int(c) for part in self.parts for c in part.labels.unique()})

    def image_set(self) -> ImageSet:
        if not self.parts:
            raise ValueError("the replay memory is empty")
        return self.parts[0].concat(self.parts[1:])
