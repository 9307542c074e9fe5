"""Index pipeline: grid -> windowed reads (prefetch thread) -> preprocess -> ONNX batches -> tile store.

``plan_index``, ``read_chunk`` and ``embed_chunk`` are shared with distributed indexing (engine/ray_index.py), so
both paths give bit-identical rows."""

from __future__ import annotations

import queue
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine import __version__
from engine.config import cache_max_bytes, stores_dir
from engine.encoder import Encoder
from engine.errors import BadInput, Cancelled, EngineError
from engine.eviction import enforce_cap
from engine.grid import Grid, GridParams
from engine.preprocess import prepare
from engine.raster import (
    compute_stretch,
    fingerprint,
    open_raster,
    raster_info,
    resample_scale,
    select_bands,
)
from engine.store import StoreWriter, ensure_index, make_store_id, read_manifest, store_lock

Progress = Callable[[int, int], None]


@dataclass
class IndexParams:
    """User-facing index parameters (``gsd=None``: the model's ``gsd_m``, only ever downsampling)."""

    tile: int = 256
    stride: int | None = None
    bands: list[int] | None = None
    gsd: float | None = None
    max_invalid: float = 0.5
    batch_size: int = 32
    chunk_tiles: int = 256

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_invalid <= 1.0:
            raise BadInput(f"max_invalid must be between 0 and 1, got {self.max_invalid}")
        if not 1 <= self.batch_size <= 1024:
            raise BadInput(f"batch_size must be 1..1024, got {self.batch_size}")
        if self.chunk_tiles < 1:
            raise BadInput("chunk_tiles must be positive")


@dataclass
class IndexPlan:
    """Everything fixed before reading pixels: store id, grid, bands, stretch, manifest."""

    store_id: str
    grid: Grid
    bands: list[int]
    stretch: object
    manifest: dict
    info: object


@dataclass
class IndexResult:
    store_id: str
    path: Path
    n_tiles: int
    n_skipped: int
    n_windows: int
    seconds: float
    tiles_per_s: float
    provider: str
    reused: bool = False
    resumed_chunks: int = 0
    skipped_windows: list[int] = field(default_factory=list)
    index: str = "flat"  # the store's search index: "flat" (exact), or the FAISS IVF kind built for a large store


def _index(path: Path) -> str:
    """Build the store's FAISS IVF index when it is large enough; a failure only warns (search stays exact)."""
    try:
        vi = ensure_index(path)
    except (EngineError, OSError, ValueError, RuntimeError) as exc:
        warnings.warn(f"vector index of {path.name} not built ({exc}); search stays exact", stacklevel=2)
        return "flat"
    return vi.meta["kind"] if vi is not None else "flat"


def plan_index(raster: str | Path, encoder: Encoder, params: IndexParams) -> IndexPlan:
    """Open the raster, choose bands/stretch/scale and derive the store id and manifest."""
    meta = encoder.meta
    with open_raster(raster) as src:
        bands = select_bands(src, params.bands)
        explicit = params.gsd is not None
        scale = resample_scale(src, params.gsd if explicit else meta.gsd_m, explicit)
        gp = GridParams(tile=params.tile, stride=params.stride, scale=scale)
        grid = Grid(src.width, src.height, gp)
        stretch = compute_stretch(src, bands)
        info = raster_info(src, bands)
    if not info.georeferenced:
        warnings.warn(f"{info.path} has no georeference: tile footprints are in pixel coordinates", stacklevel=2)
    fp = fingerprint(info.path)
    model = {"name": meta.name, "version": meta.version, "embed_dim": meta.embed_dim}
    grid_d = {
        "tile": gp.tile,
        "stride": gp.step,
        "bands": bands,
        "scale": round(scale, 9),
        "gsd": params.gsd if explicit else (meta.gsd_m if scale != 1.0 else None),
        "max_invalid": params.max_invalid,
    }
    sid = make_store_id(fp, model, grid_d)
    manifest = {
        "format_version": 1,
        "store_id": sid,
        "state": "partial",
        "raster": {
            "path": info.path,
            "fingerprint": fp,
            "width": info.width,
            "height": info.height,
            "crs_wkt": info.crs_wkt,
            "authid": info.authid,
            "transform": list(info.transform),
            "dtype": info.dtype,
            "georeferenced": info.georeferenced,
        },
        "model": {**model, "path": str(encoder.bundle.path)},
        "grid": grid_d,
        "codes_kind": encoder.code_kind,
        "stretch": {"lo": stretch.lo, "hi": stretch.hi, "identity": stretch.identity},
        "n_windows": len(grid),
        "n_tiles": 0,
        "n_skipped": 0,
        "engine_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return IndexPlan(sid, grid, bands, stretch, manifest, info)


@dataclass
class TileBatch:
    """Preprocessed pixels of up to ``batch_size`` kept tiles of one chunk; the chunk's last batch (``last``, maybe
    without tiles) also carries the chunk's skipped windows."""

    chunk: int
    index: list[int]
    valid: list[float]
    pixels: np.ndarray | None  # float32 [n, 3, S, S], None without tiles
    skipped: list[int] = field(default_factory=list)
    last: bool = False


@dataclass
class ChunkRows:
    """The rows of one chunk: grid window index, valid fraction, float16 embedding and hash code per kept tile."""

    chunk: int
    index: np.ndarray  # int64 [n]
    valid: np.ndarray  # float32 [n]
    emb: np.ndarray  # float16 [n, D]
    codes: np.ndarray  # uint8 [n, K/8]
    skipped: np.ndarray  # int64 [m]


def chunk_range(plan: IndexPlan, params: IndexParams, chunk: int) -> range:
    """Grid window indices of chunk ``chunk``."""
    return range(chunk * params.chunk_tiles, min(len(plan.grid), (chunk + 1) * params.chunk_tiles))


def n_chunks(plan: IndexPlan, params: IndexParams) -> int:
    return (len(plan.grid) + params.chunk_tiles - 1) // params.chunk_tiles


def read_chunk(src, plan: IndexPlan, meta, params: IndexParams, chunk: int) -> Iterator[TileBatch]:
    """Read, mask, stretch and preprocess the windows of one chunk of the open raster ``src``; yields batches of
    ``params.batch_size`` kept tiles, the last one marked ``last`` with the skipped windows."""
    from engine.raster import read_tile

    r = chunk_range(plan, params, chunk)
    idx, valid, tiles, skipped = [], [], [], []
    for w in plan.grid.windows(r.start, r.stop):
        rgb, vf = read_tile(src, plan.grid, w, plan.bands, plan.stretch)
        if vf <= 0.0 or (1.0 - vf) > params.max_invalid:
            skipped.append(w.index)
            continue
        idx.append(w.index)
        valid.append(vf)
        tiles.append(rgb)
        if len(tiles) == params.batch_size:
            yield TileBatch(chunk, idx, valid, prepare(tiles, meta.image_size, meta.mean, meta.std, meta.interpolation))
            idx, valid, tiles = [], [], []
    pixels = prepare(tiles, meta.image_size, meta.mean, meta.std, meta.interpolation) if tiles else None
    yield TileBatch(chunk, idx, valid, pixels, skipped, last=True)


def embed_chunk(encoder: Encoder, chunk: int, batches: Iterable[TileBatch]) -> ChunkRows:
    """Embed the batches of one chunk (in the order and sizes ``read_chunk`` made them) into its rows."""
    idx: list[int] = []
    valid: list[float] = []
    embs, codes, skipped = [], [], []
    for b in batches:
        if b.pixels is not None and len(b.index):
            emb = encoder.embed_images(b.pixels)
            embs.append(emb)
            codes.append(encoder.image_codes(emb))
            idx.extend(b.index)
            valid.extend(b.valid)
        if b.last:
            skipped = b.skipped
            break
    d = encoder.meta.embed_dim
    emb = np.concatenate(embs) if embs else np.zeros((0, d), np.float32)
    cod = np.concatenate(codes) if codes else encoder.image_codes(emb)
    return ChunkRows(
        chunk,
        np.asarray(idx, np.int64),
        np.asarray(valid, np.float32),
        np.asarray(emb, np.float16).reshape(len(idx), d),
        np.asarray(cod, np.uint8),
        np.asarray(skipped, np.int64),
    )


def _producer(
    raster,
    plan: IndexPlan,
    encoder: Encoder,
    params: IndexParams,
    chunks: list[int],
    out: queue.Queue,
    stop: threading.Event,
) -> None:
    """Read the given chunks (``read_chunk``) into ``out``: their batches, then ``None`` (or the exception)."""
    try:
        with open_raster(raster) as src:
            for c in chunks:
                for batch in read_chunk(src, plan, encoder.meta, params, c):
                    if stop.is_set():
                        return
                    out.put(batch)
    except BaseException as exc:  # noqa: BLE001 - forwarded to the consumer
        out.put(exc)
    finally:
        out.put(None)


def index_raster(
    raster: str | Path,
    encoder: Encoder,
    params: IndexParams | None = None,
    root: Path | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> IndexResult:
    """Index a raster into a store (reusing a complete one, resuming a partial one)."""
    params = params or IndexParams()
    root = Path(root) if root else stores_dir()
    plan = plan_index(raster, encoder, params)
    path = root / plan.store_id
    t0 = time.perf_counter()
    n = len(plan.grid)
    with store_lock(root, plan.store_id):
        if path.is_dir():
            try:
                m = read_manifest(path)
            except EngineError:
                m = {}
            if m.get("state") == "complete" and (path / "embeddings.npy").is_file():
                kind = _index(path)  # stores indexed before FAISS indexes existed get one now
                if progress:
                    progress(n, n)
                return IndexResult(
                    plan.store_id, path, m["n_tiles"], m["n_skipped"], n, 0.0, 0.0, encoder.provider, True, index=kind
                )
        writer = StoreWriter(path, plan.manifest, params.chunk_tiles)
        total_chunks = n_chunks(plan, params)
        done = writer.done_chunks()
        todo = [c for c in range(total_chunks) if c not in done]
        done_windows = sum(len(chunk_range(plan, params, c)) for c in done)
        if progress:
            progress(done_windows, n)
        q: queue.Queue = queue.Queue(maxsize=4)
        stop = threading.Event()
        th = threading.Thread(
            target=_producer, args=(raster, plan, encoder, params, todo, q, stop), name="rsitr-prefetch", daemon=True
        )
        th.start()
        embedded = 0

        def batches():
            """The producer's batches of one chunk (up to its last), checking cancel and errors."""
            while True:
                if cancel is not None and cancel.is_set():
                    raise Cancelled(f"indexing of {plan.info.path} cancelled; re-run to resume")
                item = q.get()
                if isinstance(item, BaseException):
                    raise item
                if item is None:
                    raise EngineError(f"reading {plan.info.path} stopped early")
                yield item
                if item.last:
                    return

        try:
            for c in todo:
                rows = embed_chunk(encoder, c, batches())
                writer.write_chunk(c, rows.index, rows.valid, rows.emb, rows.skipped, rows.codes)
                embedded += len(rows.index)
                done_windows += len(chunk_range(plan, params, c))
                if progress:
                    progress(done_windows, n)
        finally:
            stop.set()
            while th.is_alive():
                try:
                    q.get(timeout=0.1)
                except queue.Empty:
                    pass
        manifest = writer.finalize(
            total_chunks, plan.grid, plan.info.transform, plan.info.crs_wkt, plan.info.authid, encoder.meta.embed_dim
        )
        kind = _index(path)
    enforce_cap(cache_max_bytes(), keep=plan.store_id, root=root)
    secs = time.perf_counter() - t0
    return IndexResult(
        plan.store_id,
        path,
        manifest["n_tiles"],
        manifest["n_skipped"],
        n,
        secs,
        embedded / secs if secs > 0 else 0.0,
        encoder.provider,
        resumed_chunks=len(done),
        index=kind,
    )
