"""Cosine top-k over tile stores and catalogs through their FAISS index (engine/faiss_index.py): exact below
``FLAT_MAX_TILES`` tiles, IVF lists with exact re-rank above; an AOI is an ID selector inside the index search."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import shapely

from engine import faiss_index
from engine.errors import BadInput
from engine.raster import bbox_lonlat_many
from engine.store import Store

SCAN_ROWS = 65_536


@dataclass
class Hit:
    score: float
    store: Store
    tile_id: int


def exact_scores(emb: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Cosine scores of all rows of a (memory-mapped float16) ``[n, D]`` array, scanned in blocks."""
    q = q.astype(np.float32)
    if emb.dtype == np.float32:
        return emb @ q
    out = np.empty(emb.shape[0], dtype=np.float32)
    for s in range(0, emb.shape[0], SCAN_ROWS):
        out[s : s + SCAN_ROWS] = np.asarray(emb[s : s + SCAN_ROWS], dtype=np.float32) @ q
    return out


def aoi_in_crs(aoi_geojson: dict, crs_wkt: str):
    """An EPSG:4326 GeoJSON geometry as a shapely geometry in the raster CRS."""
    from rasterio.crs import CRS
    from rasterio.warp import transform_geom

    try:
        geom = shapely.geometry.shape(aoi_geojson)
    except Exception as exc:  # noqa: BLE001 - shapely raises several types for bad GeoJSON
        raise BadInput(f"invalid AOI geometry: {exc}") from None
    if geom.is_empty or not geom.is_valid:
        raise BadInput("AOI geometry is empty or invalid")
    if not crs_wkt:
        raise BadInput("an AOI needs georeferenced rasters (this store has no CRS)")
    try:
        out = shapely.geometry.shape(transform_geom("EPSG:4326", CRS.from_wkt(crs_wkt), shapely.geometry.mapping(geom)))
    except Exception as exc:  # noqa: BLE001 - projection errors come in several types
        raise BadInput(f"cannot project the AOI to the raster CRS: {' '.join(str(exc).split())[:200]}") from None
    if out.is_empty or not np.isfinite(out.bounds).all():
        raise BadInput("the AOI does not project to the raster CRS (outside its valid area?)")
    return out


def aoi_rows(store: Store, aoi: dict) -> np.ndarray:
    """Sorted tile ids of ``store`` whose footprint intersects an EPSG:4326 GeoJSON ``aoi``."""
    return np.flatnonzero(shapely.intersects(aoi_in_crs(aoi, store.manifest["raster"]["crs_wkt"]), store.polygons()))


def check_k(k: int) -> None:
    if not 1 <= k <= 1000:
        raise BadInput(f"k must be between 1 and 1000, got {k}")


def search_stores(
    stores: list[Store],
    q: np.ndarray,
    k: int,
    threshold: float | None = None,
    aoi: dict | None = None,
    nprobe: int | None = None,
    exact: bool = False,
) -> list[Hit]:
    """Top-k tiles over several stores, each searched through its own index (a catalog searches one index over
    many rasters: engine/catalog.py). ``exact``: ignore IVF indexes (reference scans)."""
    check_k(k)
    hits: list[Hit] = []
    for st in stores:
        if st.embeddings.shape[0] == 0:
            continue
        allowed = aoi_rows(st, aoi) if aoi is not None else None
        scores, ids = faiss_index.search(st.rows(), q, k, st.index, nprobe, allowed, exact)
        if threshold is not None:
            keep = scores >= threshold
            scores, ids = scores[keep], ids[keep]
        hits.extend(Hit(float(s), st, int(i)) for s, i in zip(scores, ids, strict=True))
    hits.sort(key=lambda h: (-h.score, h.store.store_id, h.tile_id))
    return hits[:k]


def hit_records(hits: list[Hit]) -> list[dict]:
    """Search results as in docs/contracts.md (window, geometry in the raster CRS, lon/lat bbox)."""
    polys = [h.store.polygons()[h.tile_id] for h in hits]
    bboxes: dict[int, list] = {}
    by_crs: dict[str, list[int]] = {}
    for i, h in enumerate(hits):
        by_crs.setdefault(h.store.manifest["raster"].get("crs_wkt", ""), []).append(i)
    for wkt, idx in by_crs.items():
        for i, bb in zip(idx, bbox_lonlat_many(wkt, [polys[i].bounds for i in idx]), strict=True):
            bboxes[i] = bb
    out = []
    for i, (h, poly) in enumerate(zip(hits, polys, strict=True)):
        r = h.store.manifest["raster"]
        x, y, w, hh = (int(v) for v in h.store.windows[h.tile_id])
        out.append(
            {
                "rank": i + 1,
                "score": round(h.score, 6),
                "tile_id": h.tile_id,
                "store_id": h.store.store_id,
                "raster": r["path"],
                "window": [x, y, w, hh],
                "crs": r.get("crs_wkt", ""),
                "authid": r.get("authid", ""),
                "geometry": shapely.geometry.mapping(poly),
                "bbox_lonlat": bboxes[i],
            }
        )
    return out


def check_model(stores, encoder) -> None:
    for st in stores:
        m = st.manifest["model"]
        if m["embed_dim"] != encoder.meta.embed_dim or m["name"] != encoder.meta.name:
            raise BadInput(f"store {st.store_id} was indexed with model {m['name']}, not {encoder.meta.name}")


def run_search(stores, encoder, query: str, k: int = 20, threshold=None, aoi=None, nprobe=None) -> dict:
    """Text query -> response dict (``query``, ``took_ms``, ``results``)."""
    t0 = time.perf_counter()
    check_model(stores, encoder)
    hits = search_stores(stores, encoder.embed_query(query), k, threshold, aoi, nprobe)
    results = hit_records(hits)
    return {"query": query, "took_ms": round((time.perf_counter() - t0) * 1000, 2), "results": results}


def to_geojson(response: dict) -> dict:
    """Results as an RFC 7946 FeatureCollection (geometries reprojected to EPSG:4326)."""
    from rasterio.crs import CRS
    from rasterio.warp import transform_geom

    feats = []
    for r in response["results"]:
        geom = r["geometry"]
        if r["crs"]:
            geom = transform_geom(CRS.from_wkt(r["crs"]), "EPSG:4326", geom)
        props = {k: v for k, v in r.items() if k not in ("geometry", "crs")}
        props["window"] = ",".join(map(str, r["window"]))
        props["bbox_lonlat"] = ",".join(f"{v:.8f}" for v in r["bbox_lonlat"]) if r["bbox_lonlat"] else ""
        props["query"] = response["query"]
        feats.append({"type": "Feature", "geometry": geom, "properties": props})
    return {"type": "FeatureCollection", "features": feats}


def write_results(response: dict, path: str) -> None:
    """Write results as ``.geojson``/``.json`` or ``.gpkg`` (layer ``results`` in EPSG:4326)."""
    import json
    from pathlib import Path

    from engine import gpkg
    from engine.atomic_io import atomic_write

    p = Path(path)
    fc = to_geojson(response)
    if p.suffix.lower() in (".geojson", ".json"):
        atomic_write(p, lambda t: t.write_text(json.dumps(fc), encoding="utf-8"))
    elif p.suffix.lower() == ".gpkg":
        cols = [
            ("rank", int),
            ("score", float),
            ("tile_id", int),
            ("store_id", str),
            ("raster", str),
            ("authid", str),
            ("window", str),
            ("query", str),
        ]
        rows = [[f["properties"][c] for c, _ in cols] for f in fc["features"]]
        geoms = [shapely.geometry.shape(f["geometry"]) for f in fc["features"]]
        from rasterio.crs import CRS

        atomic_write(
            p, lambda t: gpkg.write_layer(t, "results", cols, rows, geoms, CRS.from_epsg(4326).to_wkt(), "EPSG:4326")
        )
    else:
        raise BadInput(f"--out must end with .geojson, .json or .gpkg, got {p.name}")
