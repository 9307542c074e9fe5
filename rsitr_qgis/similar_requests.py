"""Request bodies for "find more like this" (docs/contracts.md section 3), in the pattern of ``engine_requests``:
one frozen dataclass per endpoint with ``PATH`` and ``to_json()``; construction validates, so bad input is an
``EngineError`` (one line) before anything goes over the network.

Tiles are referred to as ``TileRef`` (a store's tile), ``PointRef`` (the tile under a point of a raster file) or
``PolygonRef`` (the tiles an area covers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from .engine_requests import MAX_K, MAX_QUERY_CHARS
from .errors import EngineError

MAX_LABELS = 1000


@dataclass(frozen=True)
class TileRef:
    """A tile of a tile store."""

    store: str
    tile_id: int

    def to_json(self) -> dict:
        return {"store": self.store, "tile_id": int(self.tile_id)}


@dataclass(frozen=True)
class PointRef:
    """The tile under the point ``x``, ``y`` (in ``crs``, default the raster's CRS) of a raster file."""

    raster: str
    x: float
    y: float
    crs: str | None = None

    def to_json(self) -> dict:
        body = {"raster": self.raster, "x": float(self.x), "y": float(self.y)}
        if self.crs:
            body["crs"] = self.crs
        return body


@dataclass(frozen=True)
class PolygonRef:
    """The tiles of ``raster`` that a polygon (GeoJSON geometry in ``crs``, default the raster's CRS) covers."""

    raster: str
    polygon: dict = field(hash=False)
    crs: str | None = None

    def to_json(self) -> dict:
        body = {"raster": self.raster, "polygon": self.polygon}
        if self.crs:
            body["crs"] = self.crs
        return body


def _query(text: str | None) -> str | None:
    text = (text or "").strip()
    if len(text) > MAX_QUERY_CHARS:
        raise EngineError(f"Query too long ({len(text)} characters, at most {MAX_QUERY_CHARS})")
    return text or None


def _k(k: int) -> int:
    k = int(k)
    if not 1 <= k <= MAX_K:
        raise EngineError(f"k must be between 1 and {MAX_K}, got {k}")
    return k


def _where(body: dict, rasters: tuple, stores: tuple, model: str | None) -> dict:
    if rasters:
        body["rasters"] = list(rasters)
    if stores:
        body["stores"] = list(stores)
    if model:
        body["model"] = model
    return body


@dataclass(frozen=True)
class LikeRequest:
    """``POST /search/like``: the ``k`` tiles most similar to the example tiles (their mean, or ``each``)."""

    PATH: ClassVar[str] = "/search/like"

    examples: tuple = ()  # TileRef / PointRef
    k: int = 20
    rasters: tuple[str, ...] = ()
    stores: tuple[str, ...] = ()
    mode: str = "mean"
    model: str | None = None

    def __post_init__(self) -> None:
        if not self.examples:
            raise EngineError("Choose at least one tile to find similar ones")
        if self.mode not in ("mean", "each"):
            raise EngineError(f"mode must be 'mean' or 'each', got {self.mode!r}")
        object.__setattr__(self, "examples", tuple(self.examples))
        object.__setattr__(self, "k", _k(self.k))
        object.__setattr__(self, "rasters", tuple(str(r) for r in self.rasters))
        object.__setattr__(self, "stores", tuple(str(s) for s in self.stores))

    def label(self) -> str:
        """The result layer's name."""
        if len(self.examples) == 1 and isinstance(self.examples[0], TileRef):
            return f"similar to tile {self.examples[0].tile_id}"
        if len(self.examples) == 1 and isinstance(self.examples[0], PolygonRef):
            return "similar to the drawn area"
        n = len(self.examples)
        return f"similar to {n} tile{'s' if n != 1 else ''}"

    def to_json(self) -> dict:
        body = {"examples": [e.to_json() for e in self.examples], "k": self.k, "mode": self.mode}
        return _where(body, self.rasters, self.stores, self.model)


@dataclass(frozen=True)
class FeedbackRequest:
    """``POST /feedback``: re-rank by a classifier fitted on yes/no tiles with the text ``query`` as its prior."""

    PATH: ClassVar[str] = "/feedback"

    query: str | None = None
    positives: tuple = ()  # TileRef / PointRef
    negatives: tuple = ()
    k: int = 20
    rasters: tuple[str, ...] = ()
    stores: tuple[str, ...] = ()
    model: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "query", _query(self.query))
        object.__setattr__(self, "positives", tuple(self.positives))
        object.__setattr__(self, "negatives", tuple(self.negatives))
        if not self.positives and not self.query:
            raise EngineError("Mark at least one tile 'yes' (or type a query) before refining")
        if len(self.positives) + len(self.negatives) > MAX_LABELS:
            raise EngineError(f"At most {MAX_LABELS} marked tiles")
        object.__setattr__(self, "k", _k(self.k))
        object.__setattr__(self, "rasters", tuple(str(r) for r in self.rasters))
        object.__setattr__(self, "stores", tuple(str(s) for s in self.stores))

    def label(self) -> str:
        return f"{self.query or 'marked tiles'} (refined)"

    def to_json(self) -> dict:
        body: dict = {
            "positives": [p.to_json() for p in self.positives],
            "negatives": [n.to_json() for n in self.negatives],
            "k": self.k,
        }
        if self.query:
            body["query"] = self.query
        return _where(body, self.rasters, self.stores, self.model)


@dataclass(frozen=True)
class ScoreMapRequest:
    """``POST /scoremap``: the score of every tile of ``raster`` as a GeoTIFF (text, examples or yes/no tiles)."""

    PATH: ClassVar[str] = "/scoremap"

    raster: str
    query: str | None = None
    positives: tuple = ()
    negatives: tuple = ()
    classifier: bool = False  # score by the relevance-feedback classifier (as after "Refine")
    mode: str = "mean"
    model: str | None = None
    out: str | None = None  # None: the engine's cache

    def __post_init__(self) -> None:
        object.__setattr__(self, "raster", str(self.raster))
        object.__setattr__(self, "query", _query(self.query))
        object.__setattr__(self, "positives", tuple(self.positives))
        object.__setattr__(self, "negatives", tuple(self.negatives))
        if not self.query and not self.positives:
            raise EngineError("Type a query, or find similar tiles / mark tiles first")

    def label(self) -> str:
        if self.classifier or self.negatives:
            return f"{self.query or 'marked tiles'} (refined)"
        if self.positives and not self.query:
            return f"similar to {len(self.positives)} tile{'s' if len(self.positives) != 1 else ''}"
        return self.query or ""

    def to_json(self) -> dict:
        body: dict = {"raster": self.raster, "mode": self.mode, "classifier": bool(self.classifier)}
        if self.query:
            body["query"] = self.query
        if self.positives:
            body["positives"] = [p.to_json() for p in self.positives]
        if self.negatives:
            body["negatives"] = [n.to_json() for n in self.negatives]
        if self.model:
            body["model"] = self.model
        if self.out:
            body["out"] = self.out
        return body


@dataclass(frozen=True)
class LabelsSaveRequest:
    """``POST /labels/save``: the yes/no tiles (and the query) as a GeoPackage."""

    PATH: ClassVar[str] = "/labels/save"

    path: str
    positives: tuple = ()
    negatives: tuple = ()
    query: str | None = None

    def __post_init__(self) -> None:
        if not str(self.path).lower().endswith(".gpkg"):
            raise EngineError(f"A labels file must end with .gpkg: {self.path}")
        if not self.positives and not self.negatives:
            raise EngineError("No marked tiles to save")
        object.__setattr__(self, "path", str(self.path))
        object.__setattr__(self, "query", _query(self.query))

    def to_json(self) -> dict:
        body = {
            "path": self.path,
            "positives": [p.to_json() for p in self.positives],
            "negatives": [n.to_json() for n in self.negatives],
        }
        if self.query:
            body["query"] = self.query
        return body


@dataclass(frozen=True)
class LabelsLoadRequest:
    """``POST /labels/load``: the yes/no tiles of a labels GeoPackage as tiles of the stores here."""

    PATH: ClassVar[str] = "/labels/load"

    path: str

    def to_json(self) -> dict:
        return {"path": str(self.path)}
