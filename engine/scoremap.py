"""Score maps: the score of every tile of a store as a single-band float32 GeoTIFF at tile-grid resolution.

One pixel per grid cell (column, row of the store's tiling grid) in the raster's CRS: pixel size = the grid
stride, pixel centres on the tile centres of the regular grid (the last row/column of a grid is shifted to end
at the raster edge, so its tiles sit up to one stride closer than their pixel). Skipped tiles (too many
invalid pixels) are ``NODATA``. Values are exactly the scores the search returns for the same query.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import BadInput, NotFound
from engine.grid import GridParams, axis_offsets

NODATA = -9999.0


@dataclass(frozen=True)
class ScoreGrid:
    """Scores laid out on the tiling grid: ``values`` ``[rows, cols]`` float32, ``transform`` (affine 6-tuple)."""

    values: np.ndarray
    transform: tuple[float, ...]
    crs_wkt: str

    @property
    def valid(self) -> np.ndarray:
        return self.values != NODATA


def grid_cells(manifest: dict, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, int, float, float]:
    """(col ``[n]``, row ``[n]``, n_cols, n_rows, source tile px, source step px) of a store's tiles."""
    r, g = manifest["raster"], manifest["grid"]
    gp = GridParams(tile=int(g["tile"]), stride=g.get("stride"), scale=float(g.get("scale", 1.0)))
    xs = axis_offsets(int(r["width"]), gp.source_tile, gp.source_step)
    ys = axis_offsets(int(r["height"]), gp.source_tile, gp.source_step)
    cols = np.searchsorted(np.asarray(xs), windows[:, 0])
    rows = np.searchsorted(np.asarray(ys), windows[:, 1])
    if len(windows) and (
        cols.max() >= len(xs) or rows.max() >= len(ys) or np.any(np.asarray(xs)[cols] != windows[:, 0])
    ):
        raise BadInput("the store's tiles do not match its grid parameters")
    return cols, rows, len(xs), len(ys), float(gp.source_tile), float(gp.source_step)


def score_grid(manifest: dict, windows: np.ndarray, scores: np.ndarray) -> ScoreGrid:
    """Place ``scores`` (one per tile) on the store's grid; cells without a tile are ``NODATA``."""
    from affine import Affine

    cols, rows, n_cols, n_rows, tile, step = grid_cells(manifest, windows)
    values = np.full((n_rows, n_cols), NODATA, dtype=np.float32)
    values[rows, cols] = np.asarray(scores, dtype=np.float32)
    r = manifest["raster"]
    w, h = int(r["width"]), int(r["height"])
    sx = min(step, w) if n_cols == 1 else step  # a raster smaller than one tile: one pixel over all of it
    sy = min(step, h) if n_rows == 1 else step
    ox = (min(tile, w) - sx) / 2
    oy = (min(tile, h) - sy) / 2
    t = Affine(*r["transform"][:6]) @ Affine.translation(ox, oy) @ Affine.scale(sx, sy)
    return ScoreGrid(values, tuple(t)[:6], r.get("crs_wkt", ""))


def write_scoremap(grid: ScoreGrid, path: str | Path) -> Path:
    """Write a tiled, DEFLATE-compressed float32 GeoTIFF (nodata ``NODATA``) atomically."""
    import rasterio
    from affine import Affine
    from rasterio.crs import CRS

    from engine.store import atomic_write

    p = Path(path).expanduser()
    if p.suffix.lower() not in (".tif", ".tiff"):
        raise BadInput(f"a score map must end with .tif, got {p.name}")
    if not p.parent.is_dir():
        raise NotFound(f"folder not found: {p.parent}")
    rows, cols = grid.values.shape
    profile = {
        "driver": "GTiff",
        "width": cols,
        "height": rows,
        "count": 1,
        "dtype": "float32",
        "nodata": NODATA,
        "transform": Affine(*grid.transform),
        "compress": "DEFLATE",
    }
    if grid.crs_wkt:
        profile["crs"] = CRS.from_wkt(grid.crs_wkt)

    def _write(tmp: Path) -> None:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(grid.values, 1)
            dst.set_band_description(1, "score")

    atomic_write(p, _write)
    return p
