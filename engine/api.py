"""FastAPI app factory (docs/contracts.md section 3): bearer token, limits, allowed roots, jobs."""

from __future__ import annotations

import hmac
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from engine import __version__
from engine.errors import BadInput, EngineError, Forbidden, NotFound, one_line
from engine.indexer import IndexParams
from engine.jobs import JobManager
from engine.service import Engine

MAX_BODY = 1 << 20
PathStr = Annotated[str, Field(min_length=1, max_length=4096)]
StoreId = Annotated[str, Field(min_length=1, max_length=64)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GridRequest(Strict):
    """Model and tile-grid parameters shared by every indexing request."""

    model: Annotated[str, Field(max_length=200)] | None = None
    tile: int = Field(256, ge=16, le=4096)
    stride: int | None = Field(None, ge=1, le=4096)
    bands: list[Annotated[int, Field(ge=1, le=65535)]] | None = Field(None, min_length=1, max_length=3)
    gsd: float | None = Field(None, gt=0, le=100_000)
    max_invalid: float = Field(0.5, ge=0, le=1)


class IndexRequest(GridRequest):
    raster: PathStr


class JobAccepted(BaseModel):
    job_id: str


class JobInfo(BaseModel):
    job_id: str
    raster: str
    state: Literal["queued", "running", "done", "failed", "cancelled"]
    progress: float
    done: int
    total: int
    store_id: str | None
    error: str | None


class SearchRequest(Strict):
    query: str = Field(min_length=1, max_length=1000)
    rasters: list[PathStr] | None = Field(None, max_length=100)
    stores: list[StoreId] | None = Field(None, max_length=100)
    k: int = Field(20, ge=1, le=1000)
    threshold: float | None = Field(None, ge=-1, le=1)
    aoi: dict[str, Any] | None = None
    bbox: list[Annotated[float, Field(allow_inf_nan=False)]] | None = Field(None, min_length=4, max_length=4)
    model: Annotated[str, Field(max_length=200)] | None = None
    nprobe: int | None = Field(None, ge=1, le=65536)
    catalog: Annotated[str, Field(max_length=64)] | None = None

    @field_validator("query")
    @classmethod
    def not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("query is blank")
        return v


class SearchResult(BaseModel):
    rank: int
    score: float
    tile_id: int
    store_id: str
    raster: str
    window: list[int]
    crs: str
    authid: str
    geometry: dict[str, Any]
    bbox_lonlat: list[float] | None


class SearchResponse(BaseModel):
    query: str
    took_ms: float
    results: list[SearchResult]
    catalog: str | None = None


class CatalogRequest(GridRequest):
    name: Annotated[str, Field(min_length=1, max_length=64)]
    sources: list[PathStr] = Field(min_length=1, max_length=10_000)


def bbox_polygon(bbox: list[float]) -> dict:
    """``[w, s, e, n]`` (EPSG:4326) as a GeoJSON polygon."""
    w, s, e, n = bbox
    if not (w < e and s < n):
        raise BadInput("bbox must be [west, south, east, north] with west < east and south < north")
    return {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}


class DescribeRequest(Strict):
    raster: PathStr | None = None
    store: StoreId | None = None
    x: float | None = Field(None, allow_inf_nan=False)
    y: float | None = Field(None, allow_inf_nan=False)
    crs: Annotated[str, Field(max_length=5000)] | None = None
    tile_id: int | None = Field(None, ge=0)
    top: int = Field(5, ge=1, le=50)
    model: Annotated[str, Field(max_length=200)] | None = None
    caption_bank: PathStr | None = None


class Scored(BaseModel):
    text: str
    score: float


class ClassProb(BaseModel):
    name: str
    probability: float


class DescribeResponse(BaseModel):
    tile_id: int | None
    store_id: str | None
    geometry: dict[str, Any]
    authid: str
    classes: list[ClassProb]
    other: float
    uncertain: bool
    scene: str | None
    descriptions: list[Scored]
    captions: list[Scored]


def check_raster_path(path: str, roots: list[Path]) -> Path:
    """Resolve symlinks and ``..``; 403 outside the allowed roots, 404 when missing."""
    if "\x00" in path:
        raise BadInput("invalid path")
    real = Path(os.path.realpath(os.path.expanduser(path)))
    if not any(real == r or real.is_relative_to(r) for r in roots):
        raise Forbidden(f"path is outside the allowed roots: {path}")
    if not real.exists():
        raise NotFound(f"raster not found: {path}")
    if not real.is_file():
        raise BadInput(f"not a file: {path}")
    return real


def check_bank_path(path: str, roots: list[Path]) -> Path:
    """A caption bank path: the same rules as a raster path, with its own 404 message."""
    try:
        return check_raster_path(path, roots)
    except NotFound:
        raise NotFound(f"caption bank not found: {path}") from None


def create_app(engine: Engine, token: str, allowed_roots: list[Path]) -> FastAPI:
    """Build the app. Every route (including ``/openapi.json``) requires ``Authorization: Bearer <token>``."""
    if not token or len(token) < 16:
        raise BadInput("the API token must be at least 16 characters")
    roots = [Path(os.path.realpath(r)) for r in allowed_roots]
    jobs = JobManager()
    bearer = HTTPBearer(auto_error=False)

    def auth(cred: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        given = cred.credentials if cred is not None and cred.scheme.lower() == "bearer" else ""
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise StarletteHTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    app = FastAPI(
        title="RSITR engine",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        dependencies=[Depends(auth)],
    )
    app.state.engine, app.state.jobs = engine, jobs

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            return JSONResponse({"detail": f"request body larger than {MAX_BODY} bytes"}, status_code=413)
        if request.method in ("POST", "PUT", "PATCH") and length is None:
            body = b""
            async for chunk in request.stream():
                body += chunk
                if len(body) > MAX_BODY:
                    return JSONResponse({"detail": f"request body larger than {MAX_BODY} bytes"}, status_code=413)
            request._body = body  # noqa: SLF001 - starlette caches the body here
        return await call_next(request)

    @app.exception_handler(EngineError)
    async def engine_error(_: Request, exc: EngineError):
        return JSONResponse({"detail": exc.message}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError):
        errs = exc.errors()
        msgs = []
        for e in errs[:3]:
            loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
            msgs.append(f"{loc or 'body'}: {e.get('msg', 'invalid')}")
        return JSONResponse({"detail": "; ".join(" ".join(m.split()) for m in msgs)[:500]}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException):
        return JSONResponse(
            {"detail": " ".join(str(exc.detail).split())},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def internal_error(_: Request, exc: Exception):
        return JSONResponse({"detail": f"internal error: {one_line(exc)}"[:500]}, status_code=500)

    @app.get("/openapi.json", include_in_schema=False)
    def openapi() -> dict:
        return app.openapi()

    @app.get("/health")
    def health() -> dict:
        enc = engine.encoder() if engine.default else None
        return {
            "status": "ok",
            "version": __version__,
            "provider": enc.provider if enc else None,
            "model": {"name": enc.meta.name, "version": enc.meta.version} if enc else None,
        }

    @app.get("/models")
    def models() -> dict:
        return {"models": engine.models()}

    @app.get("/stores")
    def stores() -> dict:
        return {
            "stores": [
                {k: s[k] for k in ("store_id", "raster", "model", "n_tiles", "state", "bytes")}
                for s in engine.list_stores()
            ]
        }

    @app.get("/catalogs")
    def catalogs() -> dict:
        return {"catalogs": engine.catalogs()}

    @app.post("/catalogs", status_code=202, response_model=JobAccepted)
    def index_catalog(req: CatalogRequest) -> dict:
        from engine.catalog import check_name, resolve_sources

        check_name(req.name)
        sources = [check_raster_path(s, roots) if not Path(s).is_dir() else _check_dir(s) for s in req.sources]
        for r in resolve_sources(sources):  # every local raster a list or STAC file names must be allowed too
            if isinstance(r, Path):  # http(s) hrefs are read remotely (engine/remote.py), other schemes refused
                check_raster_path(str(r), roots)
        engine.encoder(req.model)
        params = IndexParams(
            tile=req.tile, stride=req.stride, bands=req.bands, gsd=req.gsd, max_invalid=req.max_invalid
        )

        def run(job) -> str:
            def progress(done: int, total: int) -> None:
                job.done, job.total = done, total

            engine.index_many(sources, req.name, params, req.model, progress, job.cancel)
            return None

        return {"job_id": jobs.submit(f"catalog:{req.name}", run).job_id}

    def _check_dir(path: str) -> Path:
        real = Path(os.path.realpath(os.path.expanduser(path)))
        if not any(real == r or real.is_relative_to(r) for r in roots):
            raise Forbidden(f"path is outside the allowed roots: {path}")
        return real

    @app.post("/index", status_code=202, response_model=JobAccepted)
    def index(req: IndexRequest) -> dict:
        path = check_raster_path(req.raster, roots)
        engine.encoder(req.model)  # unknown model -> 404 now, not in the job
        params = IndexParams(
            tile=req.tile, stride=req.stride, bands=req.bands, gsd=req.gsd, max_invalid=req.max_invalid
        )

        def run(job) -> str:
            def progress(done: int, total: int) -> None:
                job.done, job.total = done, total

            return engine.index(path, params, req.model, progress, job.cancel).store_id

        return {"job_id": jobs.submit(str(path), run).job_id}

    @app.get("/jobs/{job_id}", response_model=JobInfo)
    def get_job(job_id: str) -> dict:
        return jobs.get(job_id).as_dict()

    @app.delete("/jobs/{job_id}", response_model=JobInfo)
    def cancel_job(job_id: str) -> dict:
        return jobs.cancel(job_id).as_dict()

    @app.post("/search", response_model=SearchResponse)
    def search(req: SearchRequest) -> dict:
        rasters = [check_raster_path(r, roots) for r in req.rasters or []]
        aoi = req.aoi
        if req.bbox is not None:
            if aoi is not None:
                raise BadInput("give aoi or bbox, not both")
            aoi = bbox_polygon(req.bbox)
        return engine.search(
            req.query, rasters, req.stores or [], req.k, req.threshold, aoi, req.model, req.nprobe, req.catalog
        )

    @app.post("/describe", response_model=DescribeResponse)
    def describe(req: DescribeRequest) -> dict:
        raster = check_raster_path(req.raster, roots) if req.raster else None
        if raster is None and not req.store:
            raise BadInput("give a raster or a store")
        if req.tile_id is None and (req.x is None or req.y is None):
            raise BadInput("give x and y, or a store and tile_id")
        bank = check_bank_path(req.caption_bank, roots) if req.caption_bank else None
        return engine.describe(raster, req.store, req.x, req.y, req.crs, req.tile_id, req.top, req.model, bank)

    from engine.api_similar import add_similar_routes  # imported here: it builds on this module's models

    add_similar_routes(app, engine, roots)  # /search/like, /feedback, /scoremap, /labels/save, /labels/load
    return app
