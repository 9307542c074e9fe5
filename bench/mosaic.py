"""Georeferenced RGB mosaics of real aerial images for the indexing benchmarks (built at run time, never committed).

The mosaic is a grid of ``cell`` x ``cell`` px images (the 150 px rsicd_aid150 images from ``$RSITR_SHARED``,
spread over all classes) written as a tiled (256 px blocks), DEFLATE-compressed, 3-band uint8 GeoTIFF in
UTM zone 33N (EPSG:32633) with square pixels of ``pixel_size`` metres and origin ``ORIGIN`` (upper left).
Cell (r, c) holds pool image ``(r * 37 + c) % len(pool)`` so neighbouring cells differ. Without the shared
images a deterministic textured pattern is used instead (reported as ``source: synthetic``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

ORIGIN = (400_000.0, 5_100_000.0)
CRS = "EPSG:32633"
CELL = 150
ROW_STEP = 37


def image_pool(n: int = 600, cell: int = CELL, root: Path | None = None) -> tuple[np.ndarray, str]:
    """``[n, cell, cell, 3]`` uint8 images: every k-th of the sorted shared image files (all classes)."""
    from PIL import Image

    from engine.shared_data import rsicd_aid150_images

    root = Path(root) if root else rsicd_aid150_images()
    files = sorted(root.glob("*/*.jpg")) if root.is_dir() else []
    if not files:
        return synthetic_pool(n, cell), "synthetic"
    step = max(1, len(files) // n)
    picked = files[::step][:n]
    imgs = []
    for f in picked:
        with Image.open(f) as im:
            im = im.convert("RGB")
            if im.size != (cell, cell):
                im = im.resize((cell, cell), Image.Resampling.BILINEAR)
            imgs.append(np.asarray(im, dtype=np.uint8))
    return np.stack(imgs), f"rsicd_aid150 ({len(imgs)} images)"


def synthetic_pool(n: int, cell: int = CELL, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:cell, 0:cell]
    out = np.empty((n, cell, cell, 3), np.uint8)
    for i in range(n):
        f = rng.uniform(0.02, 0.2, 3)
        ph = rng.uniform(0, 6.3, 3)
        for ch in range(3):
            out[i, :, :, ch] = (127 + 100 * np.sin(f[ch] * (xx + i) + ph[ch]) * np.cos(f[ch] * yy)).astype(np.uint8)
    return out


def cell_index(r: int, c: int, n_pool: int) -> int:
    """Which pool image fills mosaic cell (row ``r``, column ``c``)."""
    return (r * ROW_STEP + c) % n_pool


def mosaic_transform(pixel_size: float):
    from affine import Affine

    return Affine(pixel_size, 0.0, ORIGIN[0], 0.0, -pixel_size, ORIGIN[1])


def build_mosaic(
    path: Path,
    side: int,
    pool: np.ndarray,
    pixel_size: float = 0.5,
    compress: str | None = "DEFLATE",
    strip_cells: int = 4,
) -> Path:
    """Write a ``side`` x ``side`` px mosaic of ``pool`` images to ``path`` (written in strips: bounded memory)."""
    import rasterio
    from rasterio.windows import Window

    cell = pool.shape[1]
    n_pool = len(pool)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    profile = {
        "driver": "GTiff",
        "width": side,
        "height": side,
        "count": 3,
        "dtype": "uint8",
        "crs": CRS,
        "transform": mosaic_transform(pixel_size),
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "photometric": "RGB",
        "interleave": "pixel",
        "BIGTIFF": "IF_SAFER",
    }
    if compress:
        profile.update(compress=compress, predictor=2, zlevel=1)
    n_cells = -(-side // cell)
    with rasterio.open(tmp, "w", **profile) as dst:
        for r0 in range(0, n_cells, strip_cells):
            rows = range(r0, min(n_cells, r0 + strip_cells))
            y0 = r0 * cell
            h = min(side, (rows[-1] + 1) * cell) - y0
            strip = np.empty((len(rows) * cell, n_cells * cell, 3), np.uint8)
            for i, r in enumerate(rows):
                for c in range(n_cells):
                    strip[i * cell : (i + 1) * cell, c * cell : (c + 1) * cell] = pool[cell_index(r, c, n_pool)]
            dst.write(np.ascontiguousarray(strip[:h, :side].transpose(2, 0, 1)), window=Window(0, y0, side, h))
    tmp.replace(path)
    return path


def cached_mosaic(folder: Path, side: int, pool: np.ndarray, pool_source: str, pixel_size: float) -> Path:
    """Build (or reuse, when built with the same parameters) the mosaic of ``side`` px under ``folder``."""
    tag = "aid" if pool_source.startswith("rsicd") else "syn"
    path = Path(folder) / f"mosaic_{side}px_{pixel_size:g}m_{tag}{len(pool)}.tif"
    if not path.is_file():
        build_mosaic(path, side, pool, pixel_size)
    return path
