"""Image-level augmentation views for the frozen-trunk caches (issue 17, step 3).

A view is the source image after a random-resized crop, a coarser ground resolution (the crop shrunk by a factor,
then brought back to the model's size by the contract preprocessing, as a sensor with larger pixels would see it)
and colour jitter (Pillow ``ImageEnhance``). Each view is a deterministic function of (file name, view number,
seed, parameters), so a cache of view ``v`` can be rebuilt bit for bit and its key names all of them. Flips and
90-degree rotations are not done here: training applies them to the cached feature maps (``d4_augment``).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, fields

import numpy as np
from PIL import Image, ImageEnhance


@dataclass
class ImageAugParams:
    """Ranges drawn uniformly per image and view (``--set image_aug.crop_scale_min=0.6`` etc.)."""

    crop_scale_min: float = 0.5  # crop area as a fraction of the image: [min, 1]
    crop_ratio_max: float = 4 / 3  # crop aspect ratio in [1/max, max], drawn log-uniformly
    gsd_factor_max: float = 2.0  # ground sample distance multiplied by [1, max] (1: native resolution)
    brightness: float = 0.2  # enhance factors in [1 - x, 1 + x]
    contrast: float = 0.2
    saturation: float = 0.2

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise ValueError(f"image_aug.{f.name}: expected a number, got {v!r}")
            setattr(self, f.name, float(v))
        if not 0 < self.crop_scale_min <= 1:
            raise ValueError(f"image_aug.crop_scale_min must be in (0, 1], got {self.crop_scale_min}")
        if self.crop_ratio_max < 1 or self.gsd_factor_max < 1:
            raise ValueError("image_aug.crop_ratio_max and image_aug.gsd_factor_max must be >= 1")
        if not all(0 <= x < 1 for x in (self.brightness, self.contrast, self.saturation)):
            raise ValueError("image_aug.brightness/contrast/saturation must be in [0, 1)")

    def key(self) -> dict:
        return asdict(self)


def view_rng(filename: str, view: int, seed: int) -> np.random.Generator:
    """The random stream of one (file, view, seed): independent of the order files are processed in."""
    digest = hashlib.sha1(f"{seed}:{view}:{filename}".encode(), usedforsecurity=False).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def crop_box(width: int, height: int, rng: np.random.Generator, p: ImageAugParams) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of a random-resized crop inside a ``width`` x ``height`` image."""
    area = width * height * rng.uniform(p.crop_scale_min, 1.0)
    ratio = math.exp(rng.uniform(-math.log(p.crop_ratio_max), math.log(p.crop_ratio_max)))
    w = min(width, max(1, round(math.sqrt(area * ratio))))
    h = min(height, max(1, round(math.sqrt(area / ratio))))
    left = int(rng.integers(0, width - w + 1))
    top = int(rng.integers(0, height - h + 1))
    return left, top, left + w, top + h


def augment_view(img: Image.Image, rng: np.random.Generator, p: ImageAugParams) -> Image.Image:
    """One augmented RGB view of ``img`` (crop, coarser resolution, colour jitter), before preprocessing."""
    img = img.convert("RGB").crop(crop_box(img.width, img.height, rng, p))
    factor = rng.uniform(1.0, p.gsd_factor_max)
    if factor > 1.0:
        size = (max(8, round(img.width / factor)), max(8, round(img.height / factor)))
        img = img.resize(size, Image.Resampling.BILINEAR, reducing_gap=None)
    for enhance, amount in (
        (ImageEnhance.Brightness, p.brightness),
        (ImageEnhance.Contrast, p.contrast),
        (ImageEnhance.Color, p.saturation),
    ):
        img = enhance(img).enhance(float(rng.uniform(1.0 - amount, 1.0 + amount)))
    return img
