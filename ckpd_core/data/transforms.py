"""Batched image pipelines: uint8 images already on the model's device in, normalised float batches out.

Augmentation runs on whole batches on the device (one ``grid_sample`` for every random crop), so
the CPU only gathers uint8 rows; the random parameters come from the caller's seeded CPU generator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from ..errors import ConfigError

_GREY = (0.299, 0.587, 0.114)
_CROP_TRIES = 10


class Transform(Protocol):
    """Turns uint8 ``(N, 3, H, W)`` images into the float inputs of the model."""

    def __call__(
        self, raw: torch.Tensor, *, augment: bool, generator: torch.Generator | None
    ) -> torch.Tensor: ...


@dataclass
class _Normalise:
    """Scale to [0, 1], then subtract ``mean`` and divide by ``std`` (constants kept per device)."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    _constants: dict[tuple[torch.device, str], torch.Tensor] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def constant(self, name: str, values: tuple[float, ...], device: torch.device) -> torch.Tensor:
        """A per-channel constant as a ``(1, 3, 1, 1)`` tensor on ``device``, copied there only once."""
        if (device, name) not in self._constants:
            self._constants[device, name] = torch.tensor(values, device=device).view(1, 3, 1, 1)
        return self._constants[device, name]

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.constant("mean", self.mean, x.device)) / self.constant("std", self.std, x.device)


@dataclass
class ShiftTransform(_Normalise):
    """The icons pipeline: normalise, then shift each image by up to ``max_shift`` pixels when augmenting."""

    max_shift: int = 2

    def __call__(
        self, raw: torch.Tensor, *, augment: bool, generator: torch.Generator | None
    ) -> torch.Tensor:
        x = self.normalise(raw.to(torch.float32).div_(255.0))
        if augment and self.max_shift > 0:
            x = random_shift(x, self.max_shift, generator)
        return x


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
class CropTransform(_Normalise):
    """The natural-image pipeline (timm/mmcls style) at ``size`` x ``size`` pixels.

    Train: RandomResizedCrop(scale, ratio) + horizontal flip + brightness/contrast/saturation jitter.
    Eval: resize the short side to ``size / crop_pct`` and take the centre ``size`` square.
    """

    size: int = 224
    crop_pct: float = 0.875
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True
    jitter: float = 0.4

    def __post_init__(self) -> None:
        if self.size < 1 or not 0 < self.crop_pct <= 1:
            raise ConfigError(
                f"image size {self.size} and crop_pct {self.crop_pct} must be >= 1 and in (0, 1]"
            )
        if not 0 < self.scale[0] <= self.scale[1] <= 1:
            raise ConfigError(f"crop_scale={list(self.scale)} must satisfy 0 < low <= high <= 1")
        if not 0 <= self.jitter < 1:
            raise ConfigError(f"color_jitter={self.jitter} must lie in [0, 1)")

    @classmethod
    def from_data_config(cls, config: dict[str, Any], **settings: Any) -> CropTransform:
        """From timm's ``resolve_data_config`` dict; ``settings`` (not None) override its fields."""
        height, width = config["input_size"][-2:]
        if height != width:
            raise ConfigError(
                f"the backbone expects {height}x{width} inputs; only square inputs are supported"
            )
        values = dict(
            mean=tuple(config["mean"]), std=tuple(config["std"]), size=width, crop_pct=config["crop_pct"]
        )
        values.update({k: v for k, v in settings.items() if v is not None})
        return cls(**values)

    def __call__(
        self, raw: torch.Tensor, *, augment: bool, generator: torch.Generator | None
    ) -> torch.Tensor:
        x = raw.to(torch.float32).div_(255.0)
        if augment:
            x = self._random_crop(x, generator)
            if self.jitter > 0:
                x = self._colour_jitter(x, generator)
        else:
            x = self._centre_crop(x)
        return self.normalise(x)

    def _centre_crop(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        side = max(1, round(min(h, w) * self.crop_pct))
        top, left = (h - side) // 2, (w - side) // 2
        x = x[..., top : top + side, left : left + side]
        if side == self.size:
            return x.contiguous()
        return F.interpolate(
            x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True
        )

    def _random_crop(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """One crop box per image (drawn like torchvision's RandomResizedCrop), one grid_sample for all."""
        n, _, h, w = x.shape
        tries = torch.rand(n, _CROP_TRIES, 2, generator=generator)
        area = self.scale[0] + (self.scale[1] - self.scale[0]) * tries[..., 0]
        log_low, log_high = math.log(self.ratio[0]), math.log(self.ratio[1])
        ratio = torch.exp(log_low + (log_high - log_low) * tries[..., 1])
        width = torch.sqrt(area * ratio * h / w)  # fractions of the image side
        height = torch.sqrt(area / ratio * w / h)
        fits = (width <= 1) & (height <= 1)
        first = fits.to(torch.int8).argmax(dim=1, keepdim=True)
        found = fits.any(dim=1)
        width = torch.where(found, width.gather(1, first).squeeze(1), torch.ones(n))
        height = torch.where(found, height.gather(1, first).squeeze(1), torch.ones(n))
        place = torch.rand(n, 3, generator=generator)
        centre_x = (place[:, 0] * (1 - width) + width / 2) * 2 - 1
        centre_y = (place[:, 1] * (1 - height) + height / 2) * 2 - 1
        mirror = torch.where(place[:, 2] < 0.5, -1.0, 1.0) if self.flip else torch.ones(n)
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0] = width * mirror
        theta[:, 0, 2] = centre_x
        theta[:, 1, 1] = height
        theta[:, 1, 2] = centre_y
        theta = theta.to(x.device, non_blocking=True)
        grid = F.affine_grid(theta, [n, x.shape[1], self.size, self.size], align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def _colour_jitter(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Random brightness, contrast and saturation factors in [1 - jitter, 1 + jitter] per image."""
        factors = 1 + self.jitter * (2 * torch.rand(x.shape[0], 3, generator=generator) - 1)
        brightness, contrast, saturation = (
            factors.to(x.device, non_blocking=True).view(-1, 3, 1, 1, 1).unbind(1)
        )
        grey_weights = self.constant("grey", _GREY, x.device)
        x = (x * brightness).clamp_(0, 1)
        mean = (x * grey_weights).sum(dim=1, keepdim=True).mean(dim=(2, 3), keepdim=True)
        x = ((x - mean) * contrast + mean).clamp_(0, 1)
        grey = (x * grey_weights).sum(dim=1, keepdim=True)
        return ((x - grey) * saturation + grey).clamp_(0, 1)
