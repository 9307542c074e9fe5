"""The engine facade shared by the CLI and the HTTP API: models, index, store lookup, search, describe."""

from __future__ import annotations

import threading
import warnings
from pathlib import Path

import numpy as np

from engine.bundle import Bundle, load_bundle, model_row
from engine.config import model_dirs, stores_dir
from engine.describe import CaptionBank, Vocabulary, describe_embedding
from engine.encoder import Encoder
from engine.errors import BadInput, Conflict, EngineError, NotFound
from engine.faiss_index import INDEX_DIR
from engine.grid import Grid, GridParams, Window
from engine.indexer import IndexParams, IndexResult, index_raster
from engine.preprocess import prepare
from engine.raster import compute_stretch, open_raster, raster_info, read_tile, resample_scale, select_bands
from engine.search import run_search
from engine.settings import apply_startup_defaults
from engine.similar import SimilarSearch
from engine.store import (
    Store,
    check_store_id,
    clear_stores,
    current_fingerprint,
    ensure_index,
    list_stores,
    open_store,
    read_manifest,
    store_lock,
)


def _mtime_ns(path: Path) -> int:
    """Modification time of a file, 0 when absent (an IVF index built later reopens a cached store)."""
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0


def _file_key(path: Path) -> tuple:
    """(inode, mtime, size) of a file written by atomic rename (a new version has a new inode); () when absent."""
    try:
        st = path.stat()
    except OSError:
        return ()
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class Engine(SimilarSearch):
    """Loaded bundles (lazily), store cache and the operations (find similar, feedback, score maps: engine/similar.py);
    safe to share between threads."""

    def __init__(
        self,
        models: list[Path] | None = None,
        default_model: Path | None = None,
        root: Path | None = None,
        caption_bank: Path | None = None,
        threads: int | None = None,
    ) -> None:
        apply_startup_defaults()  # environment defaults GDAL and Hugging Face read (engine/settings.py)
        self.root = Path(root) if root else stores_dir()
        explicit = [Path(m) for m in (models or [])]
        if default_model is not None:
            explicit.insert(0, Path(default_model))
        self.bundles: dict[str, Bundle] = {}
        self.default: str | None = None
        for p in explicit:  # explicit bundles must be valid
            b = load_bundle(p)
            self.bundles.setdefault(b.meta.name, b)
            self.default = self.default or b.meta.name
        for p in model_dirs():  # shipped bundles: a broken one is reported, not fatal
            if p in explicit:
                continue
            try:
                b = load_bundle(p)
            except EngineError as exc:
                warnings.warn(f"ignoring model bundle {p}: {exc}", stacklevel=2)
                continue
            self.bundles.setdefault(b.meta.name, b)
            self.default = self.default or b.meta.name
        self._encoders: dict[str, Encoder] = {}
        self._stores: dict[tuple, Store] = {}
        self._catalogs: dict[tuple, object] = {}  # opened catalogs (their rows hold the exact index in memory)
        self._lock = threading.Lock()
        self._threads = threads
        self._caption_path = caption_bank
        self._bank: tuple[tuple, CaptionBank] | None = None
        self._vocab: Vocabulary | None = None

    # ------------------------------------------------------------ models
    def encoder(self, name: str | None = None) -> Encoder:
        name = name or self.default
        if name is None:
            raise BadInput("no model bundle available; pass --model DIR")
        if name not in self.bundles:
            raise NotFound(f"unknown model: {name} (available: {', '.join(sorted(self.bundles)) or 'none'})")
        with self._lock:
            if name not in self._encoders:
                self._encoders[name] = Encoder(self.bundles[name], threads=self._threads)
            return self._encoders[name]

    def _check_model(self, name: str | None) -> None:
        """An explicitly named model must be known (clearer than 'raster not indexed with model X')."""
        if name and name not in self.bundles:
            raise NotFound(f"unknown model: {name} (available: {', '.join(sorted(self.bundles)) or 'none'})")

    def encoder_for_store(self, store: Store) -> Encoder:
        """The encoder a store was indexed with (loading its bundle from the manifest path if needed)."""
        m = store.manifest["model"]
        if m["name"] not in self.bundles and m.get("path") and Path(m["path"]).is_dir():
            b = load_bundle(m["path"])
            if b.meta.name == m["name"]:
                with self._lock:
                    self.bundles.setdefault(b.meta.name, b)
                    self.default = self.default or b.meta.name
        return self.encoder(m["name"])

    def models(self) -> list[dict]:
        return [model_row(b.meta, b.path, n == self.default) for n, b in self.bundles.items()]

    # ------------------------------------------------------------ index
    def index(
        self,
        raster: str | Path,
        params: IndexParams | None = None,
        model: str | None = None,
        progress=None,
        cancel: threading.Event | None = None,
    ) -> IndexResult:
        return index_raster(raster, self.encoder(model), params, self.root, progress, cancel)

    # ------------------------------------------------------------ stores
    def store(self, store_id: str) -> Store:
        """Open (cached) a complete, non-stale store."""
        path = self.root / check_store_id(store_id)  # before any file access: ids are never paths
        try:
            st_ = (path / "embeddings.npy").stat()
            key = (store_id, st_.st_mtime_ns, st_.st_size, _mtime_ns(path / INDEX_DIR / "meta.json"))
        except OSError:
            key = None
        with self._lock:
            cached = self._stores.get(key) if key else None
        if cached is not None:
            if cached.is_stale():
                raise Conflict(
                    f"store {store_id} is stale: {cached.raster_path} changed or vanished since it "
                    "was indexed; re-run index"
                )
            return cached
        store = open_store(store_id, self.root)
        if key:
            with self._lock:
                if len(self._stores) > 64:
                    self._stores.clear()
                self._stores[key] = store
        return store

    def store_for_raster(self, raster: str | Path, model: str | None = None) -> Store:
        """The newest complete, current store of a raster for a model; clear errors when none/stale."""
        path = str(Path(raster).expanduser().resolve())
        name = model or self.default
        fp = current_fingerprint(path)
        if fp is None:
            raise NotFound(f"raster not found: {path}")
        stale, partial, found = [], [], []
        for s in list_stores(self.root, sizes=False):
            if s["raster"] != path or not s["model"].startswith(f"{name}@"):
                continue
            {"stale": stale, "partial": partial, "complete": found}.get(s["state"], []).append(s)
        if found:
            newest = max(found, key=lambda s: (self.root / s["store_id"] / "manifest.json").stat().st_mtime)
            return self.store(newest["store_id"])
        if stale:
            raise Conflict(f"the index of {path} is stale (the raster changed since it was indexed); re-run index")
        if partial:
            raise Conflict(f"the index of {path} is incomplete (interrupted run); re-run index to resume")
        raise NotFound(f"raster not indexed with model {name}: {path}; run index first")

    # ------------------------------------------------------------ search
    def search(
        self,
        query: str,
        rasters=(),
        store_ids=(),
        k: int = 20,
        threshold=None,
        aoi=None,
        model: str | None = None,
        nprobe: int | None = None,
        catalog: str | None = None,
    ) -> dict:
        """Text search over rasters/stores (each through its own index) or one catalog (one index over all its
        rasters); ``nprobe``: IVF lists probed (more: higher recall, slower)."""
        if catalog:
            if rasters or store_ids:
                raise BadInput("search either a catalog or rasters/stores, not both")
            return self.search_catalog(query, catalog, k, threshold, aoi, model, nprobe)
        stores, enc = self._searched(rasters, store_ids, model)
        return run_search(stores, enc, query, k, threshold, aoi, nprobe)

    def _searched(self, rasters, store_ids, model: str | None):
        """The stores to search (one model) and the encoder for the query; text, example and feedback searches."""
        if not rasters and not store_ids:
            raise BadInput("give at least one raster or store to search")
        self._check_model(model)
        stores = [self.store_for_raster(r, model) for r in rasters] + [self.store(s) for s in store_ids]
        names = {s.manifest["model"]["name"] for s in stores}
        if len(names) > 1:
            raise BadInput(f"stores were indexed with different models: {', '.join(sorted(names))}")
        enc = self.encoder(model) if model else self.encoder_for_store(stores[0])
        return stores, enc

    # ------------------------------------------------------------ catalogs (engine/catalog.py)
    def index_many(
        self,
        sources: list,
        name: str,
        params: IndexParams | None = None,
        model: str | None = None,
        progress=None,
        cancel: threading.Event | None = None,
        rebuild: bool | None = None,
        ray=None,
    ) -> dict:
        """Index every raster of ``sources`` (folders, list files, STAC JSON, rasters) and make them catalog
        ``name``; ``progress(done_rasters, total_rasters)``. Returns the catalog manifest. ``ray``: a
        ``engine.ray_index.RayParams`` to embed on Ray into the catalog's Lance table (``progress`` then counts
        windows); the member stores and the catalog are the same either way."""
        from engine.catalog import check_name, resolve_sources, write_catalog

        check_name(name)
        self._check_model(model)
        rasters = resolve_sources(sources)
        if ray is not None:
            from engine.ray_index import index_on_ray
            from engine.tile_table import TileTable

            table = TileTable.of_catalog(self._catalog_root() / name).path
            enc, params = self.encoder(model), params or IndexParams()
            res = index_on_ray(rasters, enc, params, ray, self.root, table, progress, cancel)
            m = write_catalog(name, [self.store(sid) for sid in res.store_ids], self._catalog_root(), rebuild)
            run = {"path": str(res.table_path), "version": res.table_version, "chunks_run": res.chunks_run}
            return {**m, "table": {**run, "chunks_skipped": res.chunks_skipped, "seconds": round(res.seconds, 3)}}
        stores = []
        for i, r in enumerate(rasters):
            if progress:
                progress(i, len(rasters))
            stores.append(self.store(self.index(r, params, model, cancel=cancel).store_id))
        if progress:
            progress(len(rasters), len(rasters))
        return write_catalog(name, stores, self._catalog_root(), rebuild)

    def catalog(self, name: str):
        """Open (cached while its catalog.json, its index and its member stores are unchanged) a catalog."""
        from engine.catalog import check_name, open_catalog

        path = self._catalog_root() / check_name(name)
        key = (name, *(_file_key(path / f) for f in ("catalog.json", f"{INDEX_DIR}/meta.json")))
        with self._lock:
            cached = self._catalogs.get(key)
        if cached is not None and all(self.store(s.store_id) is s for s in cached.stores):
            return cached
        cat = open_catalog(name, self.store, self._catalog_root())
        with self._lock:
            if len(self._catalogs) > 8:
                self._catalogs.clear()
            self._catalogs[key] = cat
        return cat

    def catalogs(self) -> list[dict]:
        from engine.catalog import list_catalogs

        return list_catalogs(self._catalog_root())

    def remove_catalog(self, name: str) -> None:
        from engine.catalog import remove_catalog

        remove_catalog(name, self._catalog_root())

    def _catalog_root(self) -> Path:
        return self.root.parent / "catalogs"

    def search_catalog(self, query, name, k=20, threshold=None, aoi=None, model=None, nprobe=None) -> dict:
        """Text search over catalog ``name``: one index search, tiles of all its rasters ranked together."""
        import time

        from engine.catalog import search_catalog
        from engine.search import check_model, hit_records

        t0 = time.perf_counter()
        self._check_model(model)
        cat = self.catalog(name)
        enc = self.encoder(model) if model else self.encoder_for_store(cat.stores[0])
        check_model(cat.stores[:1], enc)
        hits = search_catalog(cat, enc.embed_query(query), k, threshold, aoi, nprobe)
        out = {"query": query, "took_ms": 0.0, "results": hit_records(hits), "catalog": name}
        out["took_ms"] = round((time.perf_counter() - t0) * 1000, 2)
        return out

    # ------------------------------------------------------------ store maintenance (CLI and API)
    def list_stores(self, sizes: bool = True) -> list[dict]:
        return list_stores(self.root, sizes=sizes)

    def clear_stores(self, ids: list[str] | None = None, stale: bool = False) -> list[str]:
        """Remove stores (``ids``; None: all; ``stale``: stale and corrupted ones); the removed ids."""
        with self._lock:
            self._stores.clear()
        if stale:
            return clear_stores(root=self.root, states=("stale", "corrupted"))
        return clear_stores(ids, self.root)

    def optimize_stores(self, ids: list[str] | None = None, force: bool = False) -> list[dict]:
        """Build the FAISS IVF index of complete stores (``ids``; None: all complete ones) from the size where
        the engine uses one (``force``: rebuild, any size). One summary per store."""
        import time

        known = {s["store_id"]: s for s in self.list_stores(sizes=False)}
        ids = sorted(s for s in known if known[s]["state"] == "complete") if ids is None else list(ids)
        for sid in ids:
            if check_store_id(sid) not in known:
                raise NotFound(f"unknown store: {sid}")
        out = []
        for sid in ids:
            t0 = time.perf_counter()
            s = known[sid]
            vi = None
            if s["state"] == "complete":
                with store_lock(self.root, sid):
                    vi = ensure_index(self.root / sid, force=force)
            out.append(
                {
                    "store_id": sid,
                    "n_tiles": s["n_tiles"],
                    "state": s["state"],
                    "index": vi.meta["kind"] if vi is not None else "flat",
                    "n_lists": vi.n_lists if vi is not None else None,
                    "seconds": round(time.perf_counter() - t0, 3),
                }
            )
        return out

    # ------------------------------------------------------------ describe
    @property
    def vocabulary(self) -> Vocabulary:
        if self._vocab is None:
            self._vocab = Vocabulary.load()
        return self._vocab

    def caption_bank(self, enc: Encoder, path: str | Path | None = None) -> CaptionBank | None:
        """The bank at ``path`` (per request), else the engine's ``--captions`` bank; cached by path and mtime."""
        path = path or self._caption_path
        if path is None:
            return None
        p = Path(path).expanduser()
        key = (str(p.resolve()), _mtime_ns(p), enc.meta.name)
        with self._lock:
            if self._bank is not None and self._bank[0] == key:
                return self._bank[1]
        bank = CaptionBank.load(p, enc.meta.embed_dim, enc.meta.name)
        with self._lock:
            self._bank = (key, bank)
        return bank

    def describe(
        self,
        raster=None,
        store_id=None,
        x=None,
        y=None,
        crs=None,
        tile_id=None,
        top: int = 5,
        model: str | None = None,
        caption_bank: str | Path | None = None,
    ) -> dict:
        """Describe the tile at (x, y) (in ``crs``, default the raster CRS) or the tile ``tile_id``; ``caption_bank``
        (a ``.npz``) overrides the engine's bank for this request."""
        if not 1 <= top <= 50:
            raise BadInput(f"top must be 1..50, got {top}")
        self._check_model(model)
        store = None
        if store_id:
            store = self.store(store_id)
        elif raster:
            try:
                store = self.store_for_raster(raster, model)
            except NotFound:
                if not Path(raster).expanduser().is_file():
                    raise
                store = None
            except Conflict:
                store = None
        else:
            raise BadInput("describe needs a raster or a store")
        if store is not None:
            enc = self.encoder_for_store(store)
            if tile_id is None:
                if x is None or y is None:
                    raise BadInput("describe needs x and y, or a tile_id")
                tile_id = self._tile_at(store, x, y, crs)
            if not 0 <= int(tile_id) < store.embeddings.shape[0]:
                raise NotFound(f"tile {tile_id} does not exist in store {store.store_id}")
            emb = np.asarray(store.embeddings[int(tile_id)], dtype=np.float32)
            out = {
                "tile_id": int(tile_id),
                "store_id": store.store_id,
                "geometry": _mapping(store.polygons()[int(tile_id)]),
                "authid": store.manifest["raster"].get("authid", ""),
            }
        else:
            if x is None or y is None:
                raise BadInput("describe of a raster that is not indexed needs x and y")
            enc = self.encoder(model)
            emb, geom, authid = self._embed_at(enc, raster, x, y, crs)
            out = {"tile_id": None, "store_id": None, "geometry": geom, "authid": authid}
        out.update(describe_embedding(emb, enc, self.vocabulary, self.caption_bank(enc, caption_bank), top))
        return out

    def _tile_at(self, store: Store, x: float, y: float, crs: str | None) -> int:
        px, py = _to_pixel(store.manifest["raster"], x, y, crs)
        w = store.windows
        inside = (w[:, 0] <= px) & (px < w[:, 0] + w[:, 2]) & (w[:, 1] <= py) & (py < w[:, 1] + w[:, 3])
        ids = np.flatnonzero(inside)
        if len(ids) == 0:
            raise NotFound(f"no indexed tile at ({x}, {y}) (outside the raster or in a skipped tile)")
        cx, cy = w[ids, 0] + w[ids, 2] / 2, w[ids, 1] + w[ids, 3] / 2
        return int(ids[np.argmin((cx - px) ** 2 + (cy - py) ** 2)])

    def _embed_at(self, enc: Encoder, raster, x, y, crs):
        meta = enc.meta
        with open_raster(raster) as src:
            info = raster_info(src, select_bands(src))
            r = {"transform": list(info.transform), "crs_wkt": info.crs_wkt, "width": src.width, "height": src.height}
            px, py = _to_pixel(r, x, y, crs)
            gp = GridParams(tile=256, scale=resample_scale(src, meta.gsd_m, False))
            grid = Grid(src.width, src.height, gp)
            t = gp.source_tile
            x0 = int(min(max(px - t / 2, 0), max(src.width - t, 0)))
            y0 = int(min(max(py - t / 2, 0), max(src.height - t, 0)))
            win = Window(0, 0, 0, x0, y0, min(t, src.width), min(t, src.height))
            rgb, _ = read_tile(src, grid, win, info.bands, compute_stretch(src, info.bands))
        emb = enc.embed_images(prepare([rgb], meta.image_size, meta.mean, meta.std, meta.interpolation))[0]
        from engine.store import tile_polygons

        poly = tile_polygons(info.transform, np.array([[win.x_off, win.y_off, win.width, win.height]]))[0]
        return emb, _mapping(poly), info.authid

    def info(self) -> dict:
        import onnxruntime as ort

        from engine import __version__
        from engine.encoder import choose_providers

        provider = self.encoder().provider if self.default else f"{choose_providers()[0]} (no model loaded)"
        return {
            "version": __version__,
            "provider": provider,
            "available_providers": ort.get_available_providers(),
            "models": self.models(),
            "stores_dir": str(self.root),
            "stores": list_stores(self.root),
        }


def _mapping(poly) -> dict:
    import shapely.geometry

    return shapely.geometry.mapping(poly)


def _to_pixel(r: dict, x: float, y: float, crs: str | None) -> tuple[float, float]:
    """CRS coordinates (``crs`` or the raster CRS) -> fractional pixel coordinates."""
    from affine import Affine

    if crs and r.get("crs_wkt"):
        from rasterio.crs import CRS
        from rasterio.errors import CRSError
        from rasterio.warp import transform

        try:
            src_crs = CRS.from_user_input(crs)
        except CRSError:
            raise BadInput(f"unknown CRS: {crs}") from None
        xs, ys = transform(src_crs, CRS.from_wkt(r["crs_wkt"]), [x], [y])
        x, y = xs[0], ys[0]
    if not (np.isfinite(x) and np.isfinite(y)):
        raise BadInput("x and y must be finite numbers")
    inv = ~Affine(*r["transform"][:6])
    px, py = inv.a * x + inv.b * y + inv.c, inv.d * x + inv.e * y + inv.f
    if not (0 <= px < r["width"] and 0 <= py < r["height"]):
        raise NotFound(f"point ({x}, {y}) is outside the raster")
    return float(px), float(py)


__all__ = ["Engine", "read_manifest"]
