"""What the panel searches ("Search in"): the current layer, a catalog, or a catalog limited to the map extent.

GUI-free helpers: the scopes, a catalog's picker text, the model check before a catalog search, and the map
extent as the AOI the engine expects (a GeoJSON polygon in EPSG:4326, docs/contracts.md section 2).
"""

from __future__ import annotations

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsCsException,
    QgsGeometry,
    QgsProject,
    QgsRectangle,
)

from .errors import EngineError

SCOPE_LAYER = "layer"
SCOPE_CATALOG = "catalog"
SCOPE_CATALOG_EXTENT = "catalog_extent"
SCOPES = (
    (SCOPE_LAYER, "Current layer"),
    (SCOPE_CATALOG, "Catalog: all its rasters"),
    (SCOPE_CATALOG_EXTENT, "Catalog: rasters in the map extent"),
)
NO_CATALOG = (
    "No catalog in the engine: build one with Processing 'Index rasters into a catalog' or "
    "`python -m engine index-many RASTERS... --catalog NAME`, then refresh the catalog list"
)
LONLAT = "EPSG:4326"
EXTENT_DENSIFY = 16  # points per extent edge: a projected extent's edges curve in lon/lat


def catalog_label(catalog: dict) -> str:
    """Picker text of one ``GET /catalogs`` entry: 'name (3 rasters, 1,234 tiles, model@version)'."""
    n_r, n_t = int(catalog.get("n_rasters", 0)), int(catalog.get("n_tiles", 0))
    raster_word = "raster" if n_r == 1 else "rasters"
    return f"{catalog.get('name')} ({n_r} {raster_word}, {n_t:,} tiles, {catalog.get('model', '?')})"


def catalog_model_problem(catalog: dict, model: str | None, models: list[dict]) -> str:
    """One line when ``catalog`` cannot be searched with the chosen ``model`` ("" = engine default) or its model
    is not installed in the engine (``models``: ``GET /models``; empty when unknown), else ""."""
    name, _, version = str(catalog.get("model", "")).partition("@")
    if model and model != name:
        return f"Catalog '{catalog.get('name')}' was indexed with model {name}, not {model}: choose that model"
    if models and name not in {m.get("name") for m in models}:
        return f"Catalog '{catalog.get('name')}' needs model {name} {version}, which the engine does not have"
    return ""


def extent_aoi(extent: QgsRectangle, crs: QgsCoordinateReferenceSystem, project: QgsProject | None = None) -> dict:
    """The map extent (in ``crs``) as a GeoJSON polygon in EPSG:4326, edges densified and clamped to the globe."""
    if extent.isNull() or extent.isEmpty():
        raise EngineError("The map extent is empty: zoom to an area first")
    geom = QgsGeometry.fromRect(extent).densifyByCount(EXTENT_DENSIFY)
    lonlat = QgsCoordinateReferenceSystem(LONLAT)
    if crs.isValid() and crs != lonlat:
        try:
            geom.transform(QgsCoordinateTransform(crs, lonlat, project or QgsProject.instance()))
        except QgsCsException as exc:
            raise EngineError(f"Cannot express the map extent in longitude/latitude: {exc}") from None
    ring = [[min(180.0, max(-180.0, p.x())), min(90.0, max(-90.0, p.y()))] for p in geom.asPolygon()[0]]
    if len(ring) < 4 or not all(v == v for pt in ring for v in pt):  # NaN from an out-of-domain projection
        raise EngineError("Cannot express the map extent in longitude/latitude: zoom in")
    return {"type": "Polygon", "coordinates": [ring]}
