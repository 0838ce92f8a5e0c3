"""The embedded ``icons`` benchmark: 100 icon concepts rendered from the fonts inside the qtawesome wheel.

Each concept exists in Phosphor (5 weights), Font Awesome 6 and Material Design Icons 6; every image
is one of those styles with a seeded shift, rotation, scale and colour. The font files are read
directly (qtawesome itself needs Qt to import). The rendered arrays are cached on disk.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import math
import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from pydantic import NonNegativeInt, PositiveInt
from pydantic.dataclasses import dataclass as pydantic_dataclass

from ..atomic import atomic_path
from ..errors import ConfigError, DataError
from ..validation import STRICT, config_errors
from .benchmark import Benchmark, ImageSet

log = logging.getLogger(__name__)

ICONS_FORMAT = 1
PHOSPHOR_WEIGHTS = ("", "-bold", "-fill", "-light", "-thin")
# Concepts that differ from another one only by rotation or are the same glyph in some fonts.
EXCLUDED_CONCEPTS = frozenset({"arrow-down", "arrow-left", "arrow-up", "stop"})
_MASK_SIZE = 64


@config_errors("benchmark_kwargs for icons: ")
@pydantic_dataclass(frozen=True, config=STRICT)
class IconsSettings:
    """Size of the benchmark; the defaults are the standard 60 base + 8 x 5-way 5-shot protocol."""

    num_classes: PositiveInt = 100
    base_classes: PositiveInt = 60
    ways: PositiveInt = 5
    shots: PositiveInt = 5
    train_per_class: PositiveInt = 100
    val_per_class: PositiveInt = 20
    test_per_class: PositiveInt = 40
    image_size: PositiveInt = 32
    seed: NonNegativeInt = 0

    def __post_init__(self) -> None:
        incremental = self.num_classes - self.base_classes
        if incremental < self.ways or incremental % self.ways:
            raise ConfigError(
                f"num_classes - base_classes = {incremental} must be a positive multiple of ways={self.ways}"
            )
        if self.shots > self.train_per_class:
            raise ConfigError(f"shots={self.shots} exceeds train_per_class={self.train_per_class}")


def font_dir() -> Path:
    """The ``fonts`` folder of the installed qtawesome package, found without importing it."""
    spec = importlib.util.find_spec("qtawesome")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the icons benchmark needs the qtawesome package: pip install qtawesome")
    return Path(next(iter(spec.submodule_search_locations))) / "fonts"


def _font(folder: Path, stem: str) -> tuple[Path, dict[str, int]]:
    ttf = sorted(folder.glob(f"{stem}-[0-9]*.ttf"))
    charmap = sorted(folder.glob(f"{stem}-charmap-[0-9]*.json"))
    if not ttf or not charmap:
        raise DataError(f"qtawesome font {stem!r} not found in {folder}: reinstall qtawesome")
    codes = {name: int(code, 16) for name, code in json.loads(charmap[-1].read_text()).items()}
    return ttf[-1], codes


def icon_styles(folder: Path | None = None) -> dict[str, list[tuple[Path, int]]]:
    """Every concept present in all three font families, with its (font file, code point) styles."""
    folder = folder or font_dir()
    phosphor = _font(folder, "phosphor")
    fa_solid = _font(folder, "fontawesome6-solid-webfont")
    fa_regular = _font(folder, "fontawesome6-regular-webfont")
    mdi = _font(folder, "materialdesignicons6-webfont")
    styles: dict[str, list[tuple[Path, int]]] = {}
    for name in sorted(phosphor[1]):
        weights = [name + suffix for suffix in PHOSPHOR_WEIGHTS]
        if name in EXCLUDED_CONCEPTS or not all(w in phosphor[1] for w in weights):
            continue
        if name not in fa_solid[1] or name not in mdi[1]:
            continue
        found = [(phosphor[0], phosphor[1][w]) for w in weights]
        found.append((fa_solid[0], fa_solid[1][name]))
        if name in fa_regular[1]:
            found.append((fa_regular[0], fa_regular[1][name]))
        found.append((mdi[0], mdi[1][name]))
        if f"{name}-outline" in mdi[1]:
            found.append((mdi[0], mdi[1][f"{name}-outline"]))
        styles[name] = found
    return styles


def _glyph_mask(font: ImageFont.FreeTypeFont, code: int) -> np.ndarray:
    """The glyph centred in a square mask, its longer side filling the mask."""
    char = chr(code)
    left, top, right, bottom = font.getbbox(char)
    if right <= left or bottom <= top:
        raise DataError(f"glyph U+{code:X} of {font.path} is empty")
    canvas = Image.new("L", (right - left, bottom - top), 0)
    ImageDraw.Draw(canvas).text((-left, -top), char, fill=255, font=font)
    side = max(canvas.size)
    square = Image.new("L", (side, side), 0)
    square.paste(canvas, ((side - canvas.width) // 2, (side - canvas.height) // 2))
    return np.asarray(square.resize((_MASK_SIZE, _MASK_SIZE), Image.BILINEAR), dtype=np.uint8)


def _luminance(rgb: np.ndarray) -> float:
    return float(rgb @ np.array([0.299, 0.587, 0.114]))


def _render(mask: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """One image: the mask rotated, scaled and shifted, in a random foreground/background colour."""
    angle = math.radians(rng.uniform(-20, 20))
    scale = rng.uniform(0.6, 0.95)
    shift = rng.uniform(-0.1, 0.1, size=2) * size
    factor = _MASK_SIZE / (size * scale)
    cos, sin = math.cos(angle) * factor, math.sin(angle) * factor
    cx, cy = size / 2 + shift[0], size / 2 + shift[1]
    centre = _MASK_SIZE / 2
    coeffs = (cos, sin, centre - cos * cx - sin * cy, -sin, cos, centre + sin * cx - cos * cy)
    warped = Image.fromarray(mask).transform((size, size), Image.AFFINE, coeffs, resample=Image.BILINEAR)
    alpha = np.asarray(warped, dtype=np.float32)[..., None] / 255.0
    background = rng.uniform(0, 1, 3)
    foreground = rng.uniform(0, 1, 3)
    while abs(_luminance(foreground) - _luminance(background)) < 0.35:
        foreground = rng.uniform(0, 1, 3)
    image = background * (1 - alpha) + foreground * alpha + rng.normal(0, 0.03, (size, size, 3))
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8).transpose(2, 0, 1)


def render_icons(settings: IconsSettings) -> dict[str, np.ndarray]:
    """Render train/val/test arrays for ``settings``; classes in a fixed seeded order."""
    styles = icon_styles()
    if len(styles) < settings.num_classes:
        raise ConfigError(f"icons: only {len(styles)} concepts available, num_classes={settings.num_classes}")
    rng = np.random.default_rng(settings.seed)
    names = sorted(styles)
    chosen = [names[i] for i in rng.permutation(len(names))[: settings.num_classes]]
    fonts: dict[Path, ImageFont.FreeTypeFont] = {}
    arrays: dict[str, list] = {split: [] for split in ("train", "val", "test")}
    counts = {
        "train": settings.train_per_class,
        "val": settings.val_per_class,
        "test": settings.test_per_class,
    }
    for _label, name in enumerate(chosen):
        masks = []
        for path, code in styles[name]:
            if path not in fonts:
                fonts[path] = ImageFont.truetype(str(path), 48)
            masks.append(_glyph_mask(fonts[path], code))
        for split, count in counts.items():
            for _ in range(count):
                arrays[split].append(_render(masks[rng.integers(len(masks))], rng, settings.image_size))
    out = {f"{split}_images": np.stack(images) for split, images in arrays.items()}
    for split, count in counts.items():
        out[f"{split}_labels"] = np.repeat(np.arange(settings.num_classes), count)
    out["class_names"] = np.array(chosen)
    return out


def default_cache_dir() -> Path:
    return Path(os.environ.get("CKPD_CACHE_DIR", Path.home() / ".cache" / "ckpd_sweep"))


def load_icons(settings: IconsSettings, cache_dir: Path | None = None) -> dict[str, np.ndarray]:
    """Rendered arrays for ``settings``, from the on-disk cache when present (written atomically)."""
    key = hashlib.sha256(json.dumps({**asdict(settings), "format": ICONS_FORMAT}).encode()).hexdigest()[:12]
    path = Path(cache_dir or default_cache_dir()) / f"icons-{key}.npz"
    if path.exists():
        try:
            with np.load(path) as data:
                return {k: data[k] for k in data.files}
        except (OSError, ValueError) as exc:
            log.warning("icons cache %s is unreadable (%s); rendering it again", path, exc)
    start = time.perf_counter()
    arrays = render_icons(settings)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)
    log.info("rendered the icons benchmark in %.1fs, cached at %s", time.perf_counter() - start, path)
    return arrays


def icons_benchmark(data_root: str | None = None, **kwargs) -> Benchmark:
    """The embedded benchmark; ``data_root`` is where its cache lives, kwargs override IconsSettings."""
    settings = IconsSettings(**kwargs)
    arrays = load_icons(settings, Path(data_root) if data_root else None)

    def image_set(split: str) -> ImageSet:
        return ImageSet(
            torch.from_numpy(arrays[f"{split}_images"]), torch.from_numpy(arrays[f"{split}_labels"])
        )

    train = image_set("train")
    base = list(range(settings.base_classes))
    sessions = [base] + [
        list(range(start, start + settings.ways))
        for start in range(settings.base_classes, settings.num_classes, settings.ways)
    ]
    per_class = settings.train_per_class
    indices = [torch.isin(train.labels, torch.tensor(base)).nonzero().flatten()]
    for classes in sessions[1:]:
        indices.append(
            torch.cat([torch.arange(c * per_class, c * per_class + settings.shots) for c in classes])
        )
    return Benchmark(
        name="icons",
        class_names=[str(n) for n in arrays["class_names"]],
        session_classes=sessions,
        train=train,
        val=image_set("val"),
        test=image_set("test"),
        train_indices=indices,
    )
