"""Query by example: example tiles (a store's tile id, a point or a polygon on a raster) -> one query.

The engine facade resolves each ``ExampleRef`` to tile embeddings (engine/service.py); this module holds the
reference type, its command-line forms and the pure parts: which tiles a point or polygon picks and how the
example embeddings become a scorer (their normalised mean, or each example its own query, a tile scoring its
best match).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import shapely

from engine.errors import BadInput
from engine.ranking import LinearScorer

MODES = ("mean", "each")
MIN_POLYGON_COVER = 0.5  # a polygon picks the tiles it covers by at least half (else the tiles it touches)


@dataclass(frozen=True)
class ExampleRef:
    """One example: ``store`` + ``tile_id``; or ``raster`` + ``x``, ``y``; or ``raster`` + ``polygon`` (GeoJSON).

    Coordinates are in ``crs`` (any CRS string rasterio accepts), default the raster's CRS."""

    store: str | None = None
    tile_id: int | None = None
    raster: str | None = None
    x: float | None = None
    y: float | None = None
    crs: str | None = None
    polygon: dict | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        if self.store is not None and self.tile_id is not None:
            return
        if self.raster and ((self.x is not None and self.y is not None) or self.polygon):
            return
        raise BadInput("an example is a store + tile_id, or a raster + x, y, or a raster + polygon")

    @classmethod
    def from_dict(cls, d: dict) -> ExampleRef:
        keys = ("store", "tile_id", "raster", "x", "y", "crs", "polygon")
        return cls(**{k: d.get(k) for k in keys})

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def parse_like(value: str) -> ExampleRef:
    """``RASTER:X,Y`` (raster CRS coordinates; the last colon splits, so ``C:\\a.tif:1,2`` works)."""
    raster, sep, xy = value.rpartition(":")
    try:
        x, y = (float(v) for v in xy.split(","))
    except ValueError:
        raise BadInput(f"--like must be RASTER:X,Y, got {value!r}") from None
    if not sep or not raster:
        raise BadInput(f"--like must be RASTER:X,Y, got {value!r}")
    return ExampleRef(raster=raster, x=x, y=y)


def parse_tile(value: str) -> ExampleRef:
    """``STORE:TILE_ID``."""
    store, sep, tid = value.partition(":")
    if not sep or not store or not tid.strip().isdigit():
        raise BadInput(f"a tile must be STORE:TILE_ID, got {value!r}")
    return ExampleRef(store=store, tile_id=int(tid))


def tile_at_pixel(windows: np.ndarray, px: float, py: float) -> int | None:
    """The tile (row of ``windows`` ``[n, 4]`` x_off, y_off, w, h) containing the pixel, nearest centre first."""
    w = windows
    inside = (w[:, 0] <= px) & (px < w[:, 0] + w[:, 2]) & (w[:, 1] <= py) & (py < w[:, 1] + w[:, 3])
    ids = np.flatnonzero(inside)
    if len(ids) == 0:
        return None
    cx, cy = w[ids, 0] + w[ids, 2] / 2, w[ids, 1] + w[ids, 3] / 2
    return int(ids[np.argmin((cx - px) ** 2 + (cy - py) ** 2)])


def tiles_in_polygon(polygons: np.ndarray, geom) -> np.ndarray:
    """Tiles covered by ``geom`` by at least ``MIN_POLYGON_COVER`` of their area, else every tile it touches."""
    if geom.is_empty or not geom.is_valid:
        raise BadInput("the example polygon is empty or invalid")
    touching = np.flatnonzero(shapely.intersects(polygons, geom))
    if len(touching) == 0:
        return touching
    cover = shapely.area(shapely.intersection(polygons[touching], geom)) / np.maximum(
        shapely.area(polygons[touching]), 1e-12
    )
    covered = touching[cover >= MIN_POLYGON_COVER]
    return covered if len(covered) else touching


def example_scorer(vectors: np.ndarray, mode: str = "mean") -> LinearScorer:
    """``mean``: cosine with the normalised mean of the examples; ``each``: the best cosine over the examples."""
    if mode not in MODES:
        raise BadInput(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    v = np.asarray(vectors, dtype=np.float32).reshape(len(vectors), -1)
    if len(v) == 0:
        raise BadInput("no example tiles")
    if mode == "mean" or len(v) == 1:
        m = v.mean(axis=0)
        n = float(np.linalg.norm(m))
        if n < 1e-6:
            raise BadInput("the examples cancel out (their mean is zero); use mode 'each'")
        return LinearScorer((m / n)[:, None], kind="examples")
    return LinearScorer((v / np.linalg.norm(v, axis=1, keepdims=True)).T, kind="examples")
