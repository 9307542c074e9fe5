"""Catalogs: many rasters indexed into one collection searched through one FAISS index (docs/contracts.md §2).

``$RSITR_CACHE/catalogs/<name>/catalog.json`` lists member stores in order; member ``i``'s tiles are the
catalog's rows ``start_i .. start_i + n_tiles_i - 1`` (the embeddings stay in the member stores, read as one
:class:`~engine.faiss_index.Rows`). ``faiss/`` is the catalog's own index over the first ``n_indexed`` rows;
members appended after it was built are scanned exactly until the next rebuild. An AOI becomes the set of rows
whose footprints intersect it, a FAISS ID selector inside the index search.

Sources: a folder (its rasters, sorted), a list file (one path or URL per line, ``#`` comments), a STAC
ItemCollection (or Item) JSON whose assets are local COGs or http(s) URLs of COGs (read through GDAL's
``/vsicurl/``, engine/remote.py), raster files or URLs; relative paths are relative to the list / JSON.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shutil
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine import faiss_index
from engine.atomic_io import atomic_write_json
from engine.config import cache_dir
from engine.errors import BadInput, Conflict, CorruptData, NotFound
from engine.faiss_index import FLAT_MAX_TILES, INDEX_DIR, Rows, VectorIndex
from engine.remote import check_url, is_url
from engine.store import Store, store_lock

FORMAT_VERSION = 1
RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".jp2", ".img", ".png", ".jpg", ".jpeg")
STAC_RASTER_TYPES = ("image/tiff", "image/tiff; application=geotiff", "image/vnd.stac.geotiff", "image/jp2")
# Rebuild the index when rows appended since the build (scanned exactly) exceed this fraction of the indexed ones.
REBUILD_TAIL_FRACTION = 0.25
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def catalogs_dir() -> Path:
    return cache_dir() / "catalogs"


def check_name(name: str) -> str:
    """A catalog name: 1-64 letters, digits, ``_``, ``.``, ``-`` (never a path)."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise BadInput(f"catalog names are 1-64 letters, digits, '_', '.' or '-', got {name!r}")
    return name


# ---------------------------------------------------------------- sources
def _stac_hrefs(data: dict, base: Path) -> list[Path | str]:
    items = data.get("features") if data.get("type") == "FeatureCollection" else [data]
    if not isinstance(items, list):
        raise BadInput("STAC JSON: 'features' must be a list of items")
    out = []
    for item in items:
        assets = item.get("assets") if isinstance(item, dict) else None
        if not isinstance(assets, dict):
            raise BadInput(f"STAC item {item.get('id') if isinstance(item, dict) else item!r} has no assets")
        ranked = sorted(
            (a for a in assets.values() if isinstance(a, dict) and a.get("href")),
            key=lambda a: (
                "data" not in (a.get("roles") or []) and "visual" not in (a.get("roles") or []),
                str(a.get("type", "")).lower() not in STAC_RASTER_TYPES,
            ),
        )
        if not ranked or (str(ranked[0].get("type", "image/tiff")).lower() not in STAC_RASTER_TYPES):
            raise BadInput(f"STAC item {item.get('id')} has no GeoTIFF/COG asset")
        out.append(_member(str(ranked[0]["href"]), base))
    return out


def _member(href: str, base: Path) -> Path | str:
    """A local path (relative to ``base``; ``file://`` allowed) or an http(s) URL kept as is (read remotely)."""
    if href.startswith("file://"):
        return (base / urllib.parse.unquote(urllib.parse.urlsplit(href).path)).resolve()
    if is_url(href):
        return check_url(href)
    return (base / href).resolve()


def resolve_sources(sources: list[str | Path]) -> list[Path | str]:
    """Rasters (local paths resolved and existing, http(s) URLs as given; no duplicates, in order) from folders,
    list files, STAC JSON and rasters."""
    out: list[Path | str] = []
    for src in sources:
        p = Path(src).expanduser()
        if is_url(str(src)):
            out.append(check_url(str(src)))
        elif p.is_dir():
            out += sorted(f.resolve() for f in p.iterdir() if f.is_file() and f.suffix.lower() in RASTER_SUFFIXES)
        elif p.suffix.lower() in (".json", ".geojson"):
            try:
                data = json.loads(p.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise BadInput(f"cannot read STAC JSON {p}: {exc}") from None
            out += _stac_hrefs(data, p.resolve().parent)
        elif p.suffix.lower() in (".txt", ".lst", ".list"):
            try:
                lines = p.read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise BadInput(f"cannot read list file {p}: {exc.strerror or exc}") from None
            base = p.resolve().parent
            out += [_member(ln.strip(), base) for ln in lines if ln.strip() and not ln.strip().startswith("#")]
        elif p.is_file():
            out.append(p.resolve())
        else:
            raise NotFound(f"source not found: {src}")
    seen, uniq = set(), []
    for r in out:
        if isinstance(r, Path) and not r.is_file():
            raise NotFound(f"raster not found: {r}")
        if r not in seen:
            seen.add(r)
            uniq.append(r)
    if not uniq:
        raise BadInput("no rasters found in the given sources")
    return uniq


# ---------------------------------------------------------------- manifest
def read_catalog(name: str, root: Path | None = None) -> dict:
    path = (root or catalogs_dir()) / check_name(name)
    try:
        return json.loads((path / "catalog.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotFound(f"unknown catalog: {name}") from None
    except (OSError, ValueError) as exc:
        raise CorruptData(f"catalog {name}: catalog.json unreadable ({exc})") from None


def list_catalogs(root: Path | None = None) -> list[dict]:
    root = root or catalogs_dir()
    out = []
    for p in sorted(root.iterdir()) if root.is_dir() else []:
        if p.is_dir() and _NAME.match(p.name) and (p / "catalog.json").is_file():
            with contextlib.suppress(NotFound, CorruptData):
                m = read_catalog(p.name, root)
                meta = p / INDEX_DIR / "meta.json"
                idx = json.loads(meta.read_text(encoding="utf-8")) if meta.is_file() else {}
                out.append(
                    {
                        "name": p.name,
                        "n_rasters": len(m["members"]),
                        "n_tiles": m["n_tiles"],
                        "model": f"{m['model']['name']}@{m['model']['version']}",
                        "version": m["version"],
                        "index": idx.get("kind", "flat"),
                        "n_indexed": idx.get("n_indexed", 0),
                    }
                )
    return out


def remove_catalog(name: str, root: Path | None = None) -> None:
    root = root or catalogs_dir()
    read_catalog(name, root)
    with store_lock(root, f"catalog-{name}"):
        shutil.rmtree(root / name)


def _signature(store_ids: list[str]) -> str:
    return hashlib.sha1(",".join(store_ids).encode(), usedforsecurity=False).hexdigest()[:16]


def write_catalog(name: str, stores: list[Store], root: Path | None = None, rebuild: bool | None = None) -> dict:
    """Make ``stores`` (in order) the members of catalog ``name`` and bring its index up to date.

    A member list that extends the indexed one keeps the index (new rows are scanned exactly) unless those rows
    exceed ``REBUILD_TAIL_FRACTION`` of the indexed ones; any other change rebuilds it. ``rebuild`` True/False
    forces/forbids the rebuild. Returns the manifest."""
    root = root or catalogs_dir()
    path = root / check_name(name)
    models = {(s.manifest["model"]["name"], s.manifest["model"]["version"]) for s in stores}
    if len(models) != 1:
        raise BadInput(f"catalog {name}: stores were indexed with different models: {sorted(models)}")
    with store_lock(root, f"catalog-{name}"):
        path.mkdir(parents=True, exist_ok=True)
        old = None
        with contextlib.suppress(NotFound, CorruptData):
            old = read_catalog(name, root)
        members, start = [], 0
        for s in stores:
            members.append(
                {"store_id": s.store_id, "raster": s.raster_path, "n_tiles": len(s.embeddings), "start": start}
            )
            start += len(s.embeddings)
        m0 = stores[0].manifest["model"]
        manifest = {
            "format_version": FORMAT_VERSION,
            "name": name,
            "catalog_id": (old or {}).get("catalog_id")
            or hashlib.sha1(f"{name}{time.time()}".encode(), usedforsecurity=False).hexdigest()[:16],
            "model": {"name": m0["name"], "version": m0["version"], "embed_dim": m0["embed_dim"]},
            "members": members,
            "n_tiles": start,
            "version": int((old or {}).get("version", 0)) + 1,
            "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        rows = Rows([s.embeddings for s in stores])
        ids = [s.store_id for s in stores]
        vi = _open_index(path, manifest)
        tail = start - (vi.n_indexed if vi is not None else 0)
        need = start >= FLAT_MAX_TILES and (vi is None or tail > REBUILD_TAIL_FRACTION * vi.n_indexed)
        if rebuild is True or (rebuild is None and need):
            n_members = len(stores)
            meta = {"collection_id": manifest["catalog_id"], "members": _signature(ids), "n_members": n_members}
            spec = faiss_index.choose_spec(start, force_ivf=True)
            faiss_index.save_index(path / INDEX_DIR, faiss_index.build_index(rows, spec, meta=meta))
        elif vi is None:
            shutil.rmtree(path / INDEX_DIR, ignore_errors=True)  # never keep an index of other members
        atomic_write_json(path / "catalog.json", manifest)  # written last: the catalog's new version
    return manifest


def _open_index(path: Path, manifest: dict) -> VectorIndex | None:
    """The catalog's index when it covers a prefix of the current members (same order), else None."""
    vi = faiss_index.open_matching(path, manifest["catalog_id"], manifest["n_tiles"], manifest["model"]["embed_dim"])
    if vi is None:
        return None
    k = int(vi.meta.get("n_members", -1))
    ids = [m["store_id"] for m in manifest["members"]]
    ok = 0 < k <= len(ids) and vi.meta.get("members") == _signature(ids[:k])
    return vi if ok and vi.n_indexed == sum(m["n_tiles"] for m in manifest["members"][:k]) else None


# ---------------------------------------------------------------- search
@dataclass
class Catalog:
    """An opened catalog: its member stores, their rows as one collection and the catalog's index."""

    path: Path
    manifest: dict
    stores: list[Store]
    index: VectorIndex | None
    _rows: Rows | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def starts(self) -> np.ndarray:
        return np.array([m["start"] for m in self.manifest["members"]], np.int64)

    def rows(self) -> Rows:
        if self._rows is None:
            self._rows = Rows([s.embeddings for s in self.stores])
        return self._rows

    def locate(self, ids: np.ndarray) -> list[tuple[Store, int]]:
        """Catalog row ids -> (member store, tile id)."""
        member = np.searchsorted(self.starts, ids, side="right") - 1
        return [(self.stores[m], int(i - self.starts[m])) for m, i in zip(member, ids, strict=True)]


def open_catalog(name: str, open_store, root: Path | None = None) -> Catalog:
    """Open catalog ``name``; ``open_store(store_id)`` opens a member (Conflict when its raster changed)."""
    root = root or catalogs_dir()
    manifest = read_catalog(name, root)
    stores = []
    for m in manifest["members"]:
        try:
            st = open_store(m["store_id"])
        except NotFound:
            raise Conflict(
                f"catalog {name}: store {m['store_id']} of {m['raster']} is gone; re-run index-many"
            ) from None
        except Conflict as exc:
            raise Conflict(f"catalog {name}: {exc.message} (re-run index-many)") from None
        if len(st.embeddings) != m["n_tiles"]:
            raise CorruptData(f"catalog {name}: store {m['store_id']} no longer has {m['n_tiles']} tiles")
        stores.append(st)
    return Catalog(root / name, manifest, stores, _open_index(root / name, manifest))


def search_catalog(
    cat: Catalog,
    q: np.ndarray,
    k: int,
    threshold: float | None = None,
    aoi: dict | None = None,
    nprobe: int | None = None,
    exact: bool = False,
) -> list:
    """Top-k tiles of the whole catalog ranked together (one index search), as ``engine.search.Hit``."""
    from engine.search import Hit, aoi_rows, check_k

    check_k(k)
    allowed = None
    if aoi is not None:
        parts = [start + aoi_rows(st, aoi) for st, start in zip(cat.stores, cat.starts, strict=True)]
        allowed = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    scores, ids = faiss_index.search(cat.rows(), q, k, cat.index, nprobe, allowed, exact)
    if threshold is not None:
        keep = scores >= threshold
        scores, ids = scores[keep], ids[keep]
    return [Hit(float(s), st, t) for s, (st, t) in zip(scores, cat.locate(ids), strict=True)]
