"""Image preprocessing exactly as in docs/contracts.md: resize (Pillow) -> /255 -> mean/std -> CHW."""

from __future__ import annotations

import numpy as np
from PIL import Image

_RESAMPLE = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
}


def resize_rgb(tile: np.ndarray, size: int, interpolation: str = "bicubic") -> np.ndarray:
    """Resize an RGB uint8 ``[H, W, 3]`` tile to ``[size, size, 3]``."""
    if tile.shape[0] == size and tile.shape[1] == size:
        return tile
    img = Image.fromarray(np.ascontiguousarray(tile), mode="RGB")
    return np.asarray(img.resize((size, size), _RESAMPLE[interpolation]))


def normalise(tiles: np.ndarray, mean, std) -> np.ndarray:
    """uint8 ``[N, S, S, 3]`` -> float32 ``[N, 3, S, S]`` normalised by ``mean``/``std``."""
    x = tiles.astype(np.float32) / 255.0
    x -= np.asarray(mean, dtype=np.float32)
    x /= np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def prepare(tiles: list[np.ndarray], size: int, mean, std, interpolation: str = "bicubic") -> np.ndarray:
    """Resize and normalise a list of RGB tiles into a model batch."""
    return normalise(np.stack([resize_rgb(t, size, interpolation) for t in tiles]), mean, std)
