"""HTTP routes for "find more like this" (docs/contracts.md section 3): search by example tiles, relevance
feedback rounds, score maps and labels files. Same rules as engine/api.py: bearer token, allowed roots, strict
bodies, one-line 4xx errors; the work is done by the facade (engine/similar.py)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import FastAPI
from pydantic import BaseModel, Field, field_validator

from engine.api import PathStr, SearchResult, StoreId, Strict, check_raster_path
from engine.errors import BadInput, Forbidden, NotFound
from engine.examples import ExampleRef
from engine.feedback import MAX_LABELS, FeedbackParams
from engine.ranking import QuerySpec
from engine.service import Engine

MAX_REFS = 1000
ModelName = Annotated[str, Field(max_length=200)]


class ExampleTile(Strict):
    """A store's tile (``store`` + ``tile_id``), a point (``raster`` + ``x``, ``y``) or a polygon on a raster
    (``raster`` + ``polygon``, GeoJSON); coordinates in ``crs``, default the raster's CRS."""

    store: StoreId | None = None
    tile_id: int | None = Field(None, ge=0)
    raster: PathStr | None = None
    x: float | None = Field(None, allow_inf_nan=False)
    y: float | None = Field(None, allow_inf_nan=False)
    crs: Annotated[str, Field(max_length=5000)] | None = None
    polygon: dict[str, Any] | None = None


Refs = Annotated[list[ExampleTile], Field(max_length=MAX_REFS)]


class _Where(Strict):
    rasters: list[PathStr] | None = Field(None, max_length=100)
    stores: list[StoreId] | None = Field(None, max_length=100)
    k: int = Field(20, ge=1, le=1000)
    threshold: float | None = Field(None, ge=-1, le=1)
    aoi: dict[str, Any] | None = None
    model: ModelName | None = None


class _Fit(Strict):
    prior_scale: float | None = Field(None, ge=0, le=1000)
    l2: float | None = Field(None, ge=1e-6, le=1e6)

    def params(self) -> FeedbackParams | None:
        given = {k: v for k, v in (("prior_scale", self.prior_scale), ("l2", self.l2)) if v is not None}
        return FeedbackParams(**given) if given else None


class _Text(Strict):
    query: str | None = Field(None, max_length=1000)

    @field_validator("query")
    @classmethod
    def blank_is_none(cls, v: str | None) -> str | None:
        return v if v is None or v.strip() else None


class LikeRequest(_Where):
    examples: list[ExampleTile] = Field(min_length=1, max_length=MAX_REFS)
    mode: Literal["mean", "each"] = "mean"


class FeedbackRequest(_Where, _Fit, _Text):
    positives: Refs = []
    negatives: Refs = []


class ScoreMapRequest(_Fit, _Text):
    raster: PathStr | None = None
    store: StoreId | None = None
    model: ModelName | None = None
    positives: Refs = []
    negatives: Refs = []
    mode: Literal["mean", "each"] = "mean"
    classifier: bool = False
    out: PathStr | None = None


class LabelsSaveRequest(_Text):
    path: PathStr
    positives: Refs = []
    negatives: Refs = []


class LabelsLoadRequest(Strict):
    path: PathStr
    model: ModelName | None = None


class RankResponse(BaseModel):
    query: str
    kind: str
    took_ms: float
    results: list[SearchResult]
    n_positive: int | None = None
    n_negative: int | None = None
    n_background: int | None = None
    fit_ms: float | None = None
    iterations: int | None = None
    converged: bool | None = None
    train_accuracy: float | None = None


class ScoreMapResponse(BaseModel):
    path: str
    store_id: str
    raster: str
    query: str
    kind: str
    width: int
    height: int
    transform: list[float]
    crs: str
    authid: str
    nodata: float
    min: float | None
    max: float | None
    n_tiles: int
    took_ms: float
    n_positive: int | None = None
    n_negative: int | None = None
    fit_ms: float | None = None


class TileRef(BaseModel):
    store: str
    tile_id: int


class LabelsSaved(BaseModel):
    path: str
    n_positive: int
    n_negative: int
    query: str


class LabelsLoaded(BaseModel):
    query: str
    positives: list[TileRef]
    negatives: list[TileRef]
    missing: int


def check_out_path(path: str, roots: list[Path], suffixes: tuple[str, ...]) -> Path:
    """A file to write: its folder must exist under an allowed root; the name must end with ``suffixes``."""
    if "\x00" in path:
        raise BadInput("invalid path")
    p = Path(os.path.expanduser(path))
    if p.suffix.lower() not in suffixes:
        raise BadInput(f"the output must end with {' or '.join(suffixes)}, got {p.name}")
    folder = Path(os.path.realpath(p.parent))
    if not any(folder == r or folder.is_relative_to(r) for r in roots):
        raise Forbidden(f"path is outside the allowed roots: {path}")
    if not folder.is_dir():
        raise NotFound(f"folder not found: {p.parent}")
    return folder / p.name


def add_similar_routes(app: FastAPI, engine: Engine, roots: list[Path]) -> None:
    """Register ``/search/like``, ``/feedback``, ``/scoremap``, ``/labels/save`` and ``/labels/load``."""

    def refs(items: list[ExampleTile]) -> tuple[ExampleRef, ...]:
        out = []
        for t in items:
            d = t.model_dump(exclude_none=True)
            if t.raster:
                d["raster"] = str(check_raster_path(t.raster, roots))
            out.append(ExampleRef.from_dict(d))
        return tuple(out)

    def labels(req) -> tuple[tuple[ExampleRef, ...], tuple[ExampleRef, ...]]:
        if len(req.positives) + len(req.negatives) > MAX_LABELS:
            raise BadInput(f"at most {MAX_LABELS} labelled tiles")
        return refs(req.positives), refs(req.negatives)

    def where(req: _Where) -> dict:
        rasters = [check_raster_path(r, roots) for r in req.rasters or []]
        return {
            "rasters": rasters,
            "store_ids": req.stores or [],
            "k": req.k,
            "threshold": req.threshold,
            "aoi": req.aoi,
            "model": req.model,
        }

    @app.post("/search/like", response_model=RankResponse)
    def search_like(req: LikeRequest) -> dict:
        spec = QuerySpec(positives=refs(req.examples), mode=req.mode)
        return engine.rank(spec, **where(req))

    @app.post("/feedback", response_model=RankResponse)
    def feedback(req: FeedbackRequest) -> dict:
        pos, neg = labels(req)
        if not pos and not req.query:
            raise BadInput("give at least one 'yes' tile or a text query")
        spec = QuerySpec(text=req.query, positives=pos, negatives=neg, classifier=True)
        return engine.rank(spec, params=req.params(), **where(req))

    @app.post("/scoremap", response_model=ScoreMapResponse)
    def scoremap(req: ScoreMapRequest) -> dict:
        if bool(req.raster) == bool(req.store):
            raise BadInput("give a raster or a store (one of them)")
        pos, neg = labels(req)
        raster = check_raster_path(req.raster, roots) if req.raster else None
        out = check_out_path(req.out, roots, (".tif", ".tiff")) if req.out else None
        spec = QuerySpec(text=req.query, positives=pos, negatives=neg, mode=req.mode, classifier=req.classifier)
        return engine.scoremap(spec, raster, req.store, out, req.model, req.params())

    @app.post("/labels/save", response_model=LabelsSaved)
    def labels_save(req: LabelsSaveRequest) -> dict:
        pos, neg = labels(req)
        return engine.save_labels(check_out_path(req.path, roots, (".gpkg",)), pos, neg, req.query)

    @app.post("/labels/load", response_model=LabelsLoaded)
    def labels_load(req: LabelsLoadRequest) -> dict:
        try:
            path = check_raster_path(req.path, roots)
        except NotFound:
            raise NotFound(f"labels file not found: {req.path}") from None
        return engine.load_labels(path, req.model)
