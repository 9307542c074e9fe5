"""Generate small test rasters with rasterio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import ColorInterp
from rasterio.transform import from_origin


def write_raster(
    path: Path,
    data: np.ndarray,
    *,
    crs: str | None = "EPSG:32633",
    res: float = 1.0,
    origin: tuple[float, float] = (500_000.0, 5_000_000.0),
    nodata=None,
    colorinterp: list[ColorInterp] | None = None,
    tiled: bool = False,
    **profile,
) -> Path:
    """Write ``data`` ``[bands, h, w]`` as a GeoTIFF."""
    count, h, w = data.shape
    prof = {
        "driver": "GTiff",
        "width": w,
        "height": h,
        "count": count,
        "dtype": data.dtype.name,
        "transform": from_origin(origin[0], origin[1], res, res),
        "nodata": nodata,
    }
    if crs:
        prof["crs"] = crs
    if tiled:
        prof.update(tiled=True, blockxsize=256, blockysize=256)
    prof.update(profile)
    with rasterio.open(path, "w", **prof) as dst:
        dst.write(data)
        if colorinterp:
            dst.colorinterp = colorinterp
    return Path(path)


def rgb_pattern(h: int, w: int, seed: int = 0) -> np.ndarray:
    """uint8 RGB with blocky colour regions and noise (so tiles differ)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    data = np.stack([(xx * 255 // max(w - 1, 1)), (yy * 255 // max(h - 1, 1)), ((xx + yy) % 256)]).astype(np.int32)
    data += rng.integers(-20, 20, size=data.shape)
    return np.clip(data, 0, 255).astype(np.uint8)


def colour_quadrants(tile: int = 64) -> np.ndarray:
    """2x2 tiles: red, green / blue, dark grey."""
    cols = [(230, 20, 20), (20, 230, 20), (20, 20, 230), (60, 60, 60)]
    data = np.zeros((3, 2 * tile, 2 * tile), np.uint8)
    for i, c in enumerate(cols):
        r, q = divmod(i, 2)
        for b in range(3):
            data[b, r * tile : (r + 1) * tile, q * tile : (q + 1) * tile] = c[b]
    return data
