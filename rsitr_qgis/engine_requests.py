"""The request bodies sent to the engine (docs/contracts.md section 3), one frozen dataclass per endpoint.

The panel, the describe tool and the Processing algorithms build these; ``EngineClient`` sends
``request.to_json()`` to ``request.PATH``. Construction validates: bad input is an ``EngineError`` (one line)
before anything goes over the network.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import ClassVar

from .errors import EngineError

MAX_QUERY_CHARS = 1000
MAX_K = 1000
MIN_TILE_PX = 16
MAX_CATALOG_SOURCES = 10_000
CATALOG_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # as engine/catalog.py


@dataclass(frozen=True)
class SearchRequest:
    """``POST /search``: the ``k`` best tiles for ``query`` in the given rasters or stores, or in one ``catalog``
    (its rasters ranked together; ``aoi`` limits any search to tiles intersecting it)."""

    PATH: ClassVar[str] = "/search"

    query: str
    k: int = 20
    rasters: tuple[str, ...] = ()
    stores: tuple[str, ...] = ()
    threshold: float | None = None  # None or <= 0: no minimum score
    model: str | None = None  # None: the engine's default model
    aoi: dict | None = field(default=None, hash=False)  # GeoJSON geometry in EPSG:4326 (lon/lat)
    catalog: str | None = None  # a catalog name (GET /catalogs) instead of rasters/stores

    def __post_init__(self) -> None:
        if self.catalog and (self.rasters or self.stores):
            raise EngineError("Search either a catalog or rasters, not both")
        query = (self.query or "").strip()
        if not query:
            raise EngineError("Type a query first")
        if len(query) > MAX_QUERY_CHARS:
            raise EngineError(f"Query too long ({len(query)} characters, at most {MAX_QUERY_CHARS})")
        k = int(self.k)
        if not 1 <= k <= MAX_K:
            raise EngineError(f"k must be between 1 and {MAX_K}, got {k}")
        threshold = float(self.threshold) if self.threshold is not None and float(self.threshold) > 0 else None
        object.__setattr__(self, "query", query)
        object.__setattr__(self, "k", k)
        object.__setattr__(self, "rasters", tuple(str(r) for r in self.rasters))
        object.__setattr__(self, "stores", tuple(str(s) for s in self.stores))
        object.__setattr__(self, "threshold", threshold)
        object.__setattr__(self, "model", self.model or None)
        object.__setattr__(self, "catalog", self.catalog or None)

    def to_json(self) -> dict:
        body: dict = {"query": self.query, "k": self.k}
        if self.catalog:
            body["catalog"] = self.catalog
        if self.rasters:
            body["rasters"] = list(self.rasters)
        if self.stores:
            body["stores"] = list(self.stores)
        if self.threshold is not None:
            body["threshold"] = self.threshold
        if self.model:
            body["model"] = self.model
        if self.aoi:
            body["aoi"] = self.aoi
        return body


@dataclass(frozen=True)
class IndexRequest:
    """``POST /index``: cut ``raster`` into ``tile`` px tiles every ``stride`` px and embed them (a job)."""

    PATH: ClassVar[str] = "/index"

    raster: str
    tile: int = 256
    stride: int = 256
    model: str | None = None
    bands: tuple[int, ...] = ()  # 1-based band numbers; empty: the engine's choice
    gsd: float | None = None  # metres per pixel override

    def __post_init__(self) -> None:
        object.__setattr__(self, "raster", str(self.raster))
        _check_grid(self)

    def to_json(self) -> dict:
        return {"raster": self.raster, **_grid_json(self)}


@dataclass(frozen=True)
class CatalogRequest:
    """``POST /catalogs``: index every raster of ``sources`` (rasters, folders, list files, STAC ItemCollection
    JSON; paths on the engine's machine) and make them catalog ``name`` (a job; ``GET /catalogs`` lists it)."""

    PATH: ClassVar[str] = "/catalogs"

    name: str
    sources: tuple[str, ...]
    tile: int = 256
    stride: int = 256
    model: str | None = None
    bands: tuple[int, ...] = ()
    gsd: float | None = None

    def __post_init__(self) -> None:
        name = (self.name or "").strip()
        if not CATALOG_NAME.match(name):
            raise EngineError(f"Catalog names are 1-64 letters, digits, '_', '.' or '-', got {name!r}")
        sources = tuple(str(s) for s in self.sources if str(s).strip())
        if not sources:
            raise EngineError("No rasters to index: choose raster layers or a folder, list file or STAC JSON")
        if len(sources) > MAX_CATALOG_SOURCES:
            raise EngineError(f"Too many sources ({len(sources)}, at most {MAX_CATALOG_SOURCES}): use a list file")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "sources", sources)
        _check_grid(self)

    def to_json(self) -> dict:
        return {"name": self.name, "sources": list(self.sources), **_grid_json(self)}


def _check_grid(request) -> None:
    """Validate and normalise the grid fields (tile, stride, model, bands, gsd) of an indexing request."""
    tile, stride = int(request.tile), int(request.stride)
    if tile < MIN_TILE_PX:
        raise EngineError(f"Tile size must be at least {MIN_TILE_PX} px, got {tile}")
    if stride < 1:
        raise EngineError(f"Stride must be positive, got {stride}")
    object.__setattr__(request, "tile", tile)
    object.__setattr__(request, "stride", stride)
    object.__setattr__(request, "model", request.model or None)
    object.__setattr__(request, "bands", tuple(int(b) for b in request.bands))
    object.__setattr__(request, "gsd", float(request.gsd) if request.gsd else None)


def _grid_json(request) -> dict:
    """The grid fields of an indexing request as the engine's ``GridRequest`` expects them."""
    body: dict = {"tile": request.tile, "stride": request.stride}
    if request.model:
        body["model"] = request.model
    if request.bands:
        body["bands"] = list(request.bands)
    if request.gsd:
        body["gsd"] = request.gsd
    return body


@dataclass(frozen=True)
class DescribeRequest:
    """``POST /describe``: one tile, named by ``store`` + ``tile_id`` or by a point (``raster``, ``x``, ``y``)."""

    PATH: ClassVar[str] = "/describe"

    store: str | None = None
    tile_id: int | None = None
    raster: str | None = None
    x: float | None = None
    y: float | None = None
    crs: str | None = None  # CRS of x, y; None: the raster's CRS
    top: int = 5
    caption_bank: str | None = None  # a caption bank (.npz) on the engine's machine; None: the engine's own

    def __post_init__(self) -> None:
        object.__setattr__(self, "top", int(self.top))
        if self.caption_bank is not None:
            object.__setattr__(self, "caption_bank", str(self.caption_bank) or None)
        if self.store is not None and self.tile_id is not None:
            object.__setattr__(self, "tile_id", int(self.tile_id))
            return
        if self.raster is None or self.x is None or self.y is None:
            raise EngineError("describe needs a raster and a point, or a store and a tile id")
        object.__setattr__(self, "raster", str(self.raster))
        object.__setattr__(self, "x", float(self.x))
        object.__setattr__(self, "y", float(self.y))

    @classmethod
    def for_tile(cls, store: str, tile_id: int, top: int = 5, caption_bank: str | None = None) -> DescribeRequest:
        return cls(store=store, tile_id=tile_id, top=top, caption_bank=caption_bank)

    @classmethod
    def at_point(
        cls, raster: str, x: float, y: float, crs: str | None = None, top: int = 5, caption_bank: str | None = None
    ) -> DescribeRequest:
        return cls(raster=raster, x=x, y=y, crs=crs, top=top, caption_bank=caption_bank)

    def to_json(self) -> dict:
        body: dict = {"top": self.top}
        if self.caption_bank:
            body["caption_bank"] = self.caption_bank
        if self.store is not None and self.tile_id is not None:
            body.update(store=self.store, tile_id=self.tile_id)
            return body
        body.update(raster=self.raster, x=self.x, y=self.y)
        if self.crs:
            body["crs"] = self.crs
        return body
