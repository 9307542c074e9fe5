"""Yes/no tile labels of a relevance-feedback session as a GeoPackage (layer ``labels``), so a search can be
resumed or shared: one polygon per labelled tile (EPSG:4326; no CRS when a raster has none) with ``label``
(1 yes, 0 no), ``store_id``, ``tile_id``, ``raster``, the pixel window and the text ``query``.

On load a tile is found by ``store_id`` + ``tile_id`` when that store is here, else by its raster and pixel
window in the current store of that raster (re-indexed, or another machine: store ids include file times)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

import shapely

from engine import gpkg
from engine.errors import BadInput, NotFound

LAYER = "labels"
COLUMNS = (
    ("label", int),
    ("store_id", str),
    ("tile_id", int),
    ("raster", str),
    ("x_off", int),
    ("y_off", int),
    ("width", int),
    ("height", int),
    ("query", str),
)


@dataclass(frozen=True)
class LabelledTile:
    """A tile with its label and where to find it again."""

    label: bool
    store_id: str
    tile_id: int
    raster: str = ""
    window: tuple[int, int, int, int] = (0, 0, 0, 0)


def write_labels(path: str | Path, tiles: list[LabelledTile], polygons: list, crs_wkts: list[str], query: str) -> Path:
    """Write ``tiles`` (footprints ``polygons`` in the CRS ``crs_wkts[i]`` of their raster) to a GeoPackage."""
    from rasterio.crs import CRS
    from rasterio.warp import transform_geom

    from engine.store import atomic_write

    p = Path(path).expanduser()
    if p.suffix.lower() != ".gpkg":
        raise BadInput(f"a labels file must end with .gpkg, got {p.name}")
    if not p.parent.is_dir():
        raise NotFound(f"folder not found: {p.parent}")
    georef = all(crs_wkts)
    geoms = []
    for poly, wkt in zip(polygons, crs_wkts, strict=True):
        if georef:
            mapped = transform_geom(CRS.from_wkt(wkt), "EPSG:4326", shapely.geometry.mapping(poly))
            poly = shapely.geometry.shape(mapped)
        geoms.append(poly)
    rows = [(int(t.label), t.store_id, t.tile_id, t.raster, *t.window, query or "") for t in tiles]
    wkt, authid = (CRS.from_epsg(4326).to_wkt(), "EPSG:4326") if georef else ("", "")
    atomic_write(p, lambda t: gpkg.write_layer(t, LAYER, COLUMNS, rows, geoms, wkt, authid))
    return p


def read_labels(path: str | Path) -> tuple[list[LabelledTile], str]:
    """The labelled tiles and the text query of a labels GeoPackage; BadInput for anything else."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise NotFound(f"labels file not found: {p}")
    try:
        rows = gpkg.read_columns(p, LAYER, [c for c, _ in COLUMNS], "fid")
    except sqlite3.Error as exc:
        raise BadInput(f"{p.name} is not an RSITR labels GeoPackage (layer '{LAYER}'): {exc}") from None
    tiles = []
    query = ""
    for label, store_id, tile_id, raster, x, y, w, h, q in rows:
        if label not in (0, 1) or tile_id is None or tile_id < 0:
            raise BadInput(f"{p.name}: bad label row (label {label!r}, tile {tile_id!r})")
        tiles.append(LabelledTile(bool(label), str(store_id or ""), int(tile_id), str(raster or ""), (x, y, w, h)))
        query = query or (q or "")
    return tiles, query
