"""A scene whose answer is known: a georeferenced mosaic of rsicd_aid150 *test* images, one class placed among
others, generated at test time (never committed). One 150 px image per cell, so with ``tile=150`` each tile is
one image and its class is known."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

CELL = 150
PIXEL_M = 2.0  # the shipped model's gsd_m: the engine keeps the pixels as they are


def split_images(root: Path) -> dict[str, list[Path]]:
    """Test-split image files of rsicd_aid150 by class (sorted)."""
    data = json.loads((root / "dataset_rsicd_aid150.json").read_text(encoding="utf-8"))
    out: dict[str, list[Path]] = {}
    for im in data["images"]:
        if im["split"] == "test":
            out.setdefault(im["class"], []).append(root / "images" / im["filename"])
    return {k: sorted(v) for k, v in out.items()}


def build_scene(
    path: Path, root: Path, target: str, others: list[str], n_target: int = 12, side: int = 8, seed: int = 0
) -> tuple[Path, np.ndarray]:
    """Write a ``side`` x ``side`` cell mosaic with ``n_target`` images of ``target`` at random cells and test
    images of ``others`` elsewhere; returns the path and the class of each cell ``[side, side]`` (row-major)."""
    import rasterio
    from PIL import Image

    from bench.mosaic import CRS, mosaic_transform

    by_class = split_images(root)
    rng = np.random.default_rng(seed)
    n = side * side
    classes = np.array([target] * n_target + [others[i % len(others)] for i in range(n - n_target)], dtype=object)
    rng.shuffle(classes)
    used = {c: 0 for c in set(classes)}
    img = np.zeros((3, side * CELL, side * CELL), np.uint8)
    for i, c in enumerate(classes):
        f = by_class[c][used[c] % len(by_class[c])]
        used[c] += 1
        with Image.open(f) as im:
            tile = np.asarray(im.convert("RGB").resize((CELL, CELL), Image.Resampling.BILINEAR), dtype=np.uint8)
        r, q = divmod(i, side)
        img[:, r * CELL : (r + 1) * CELL, q * CELL : (q + 1) * CELL] = tile.transpose(2, 0, 1)
    profile = {
        "driver": "GTiff",
        "width": side * CELL,
        "height": side * CELL,
        "count": 3,
        "dtype": "uint8",
        "crs": CRS,
        "transform": mosaic_transform(PIXEL_M),
        "photometric": "RGB",
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(img)
    return Path(path), classes.reshape(side, side)
