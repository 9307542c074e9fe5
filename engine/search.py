"""Cosine top-k over tile stores: exact by default; large stores: IVF lists (engine/ivf.py), else Hamming prefilter."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import shapely

from engine.errors import BadInput
from engine.ivf import LARGE_STORE_MIN_TILES, search_ivf
from engine.raster import bbox_lonlat_many
from engine.store import Store

SCAN_ROWS = 65_536
_POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


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


def hamming(codes: np.ndarray, qcode: np.ndarray) -> np.ndarray:
    """Hamming distances between packed codes ``[n, B]`` and one packed code ``[B]``."""
    out = np.empty(codes.shape[0], dtype=np.int32)
    words = codes.shape[1] % 8 == 0
    for s in range(0, codes.shape[0], SCAN_ROWS):
        x = np.bitwise_xor(np.ascontiguousarray(codes[s : s + SCAN_ROWS]), qcode)
        out[s : s + SCAN_ROWS] = _popcount64(x.view(np.uint64)).sum(axis=1) if words else _POPCOUNT8[x].sum(axis=1)
    return out


def _popcount64(x: np.ndarray) -> np.ndarray:
    """SWAR popcount of uint64 words (numpy 1.x has no bitwise_count)."""
    u = np.uint64
    x = x - ((x >> u(1)) & u(0x5555555555555555))
    x = (x & u(0x3333333333333333)) + ((x >> u(2)) & u(0x3333333333333333))
    x = (x + (x >> u(4))) & u(0x0F0F0F0F0F0F0F0F)
    return (x * u(0x0101010101010101)) >> u(56)


def prefilter_candidates(codes: np.ndarray, qcode: np.ndarray, n_candidates: int) -> np.ndarray:
    """Indices of the ``n_candidates`` rows with the smallest Hamming distance."""
    dist = hamming(codes, qcode)
    if n_candidates >= len(dist):
        return np.arange(len(dist))
    return np.argpartition(dist, n_candidates)[:n_candidates]


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


def search_stores(
    stores: list[Store],
    q: np.ndarray,
    k: int,
    threshold: float | None = None,
    aoi: dict | None = None,
    qcode: np.ndarray | None = None,
    prefilter: bool | None = None,
    n_candidates: int | None = None,
    nprobe: int | None = None,
) -> list[Hit]:
    """Top-k tiles over several stores.

    ``prefilter`` chooses the large-store path (None: stores from ``LARGE_STORE_MIN_TILES`` tiles; True: always;
    False: never): the store's IVF index probing ``nprobe`` lists when it has one, else a Hamming prefilter of
    ``n_candidates`` rows on its codes (needs ``qcode``). AOI queries are always exact."""
    if not 1 <= k <= 1000:
        raise BadInput(f"k must be between 1 and 1000, got {k}")
    hits: list[Hit] = []
    for st in stores:
        n = st.embeddings.shape[0]
        if n == 0:
            continue
        large = (prefilter if prefilter is not None else n >= LARGE_STORE_MIN_TILES) and aoi is None
        ivf = getattr(st, "ivf", None) if large else None
        if ivf is not None:
            scores, ids = search_ivf(ivf, q, k, nprobe, emb=st.embeddings)
        elif large and st.codes is not None and qcode is not None:
            cand = prefilter_candidates(st.codes, qcode, n_candidates or max(50 * k, 2000))
            cand.sort()
            scores = np.asarray(st.embeddings[cand], dtype=np.float32) @ q.astype(np.float32)
            ids = cand
        else:
            scores = exact_scores(st.dense() if hasattr(st, "dense") else st.embeddings, q)
            ids = np.arange(n)
            if aoi is not None:
                keep = shapely.intersects(aoi_in_crs(aoi, st.manifest["raster"]["crs_wkt"]), st.polygons())
                scores, ids = scores[keep], ids[keep]
        if threshold is not None:
            keep = scores >= threshold
            scores, ids = scores[keep], ids[keep]
        if len(scores) > k:
            top = np.argpartition(-scores, k - 1)[:k]
            scores, ids = scores[top], ids[top]
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


def run_search(stores, encoder, query: str, k: int = 20, threshold=None, aoi=None, prefilter=None) -> dict:
    """Text query -> response dict (``query``, ``took_ms``, ``results``)."""
    t0 = time.perf_counter()
    for st in stores:
        if (
            st.manifest["model"]["embed_dim"] != encoder.meta.embed_dim
            or st.manifest["model"]["name"] != encoder.meta.name
        ):
            raise BadInput(
                f"store {st.store_id} was indexed with model {st.manifest['model']['name']}, not {encoder.meta.name}"
            )
    q = encoder.embed_query(query)
    need_codes = aoi is None and any(
        getattr(s, "ivf", None) is None
        and (prefilter or (prefilter is None and s.embeddings.shape[0] >= LARGE_STORE_MIN_TILES))
        for s in stores
    )
    qcode = encoder.text_codes(q[None])[0] if need_codes else None
    hits = search_stores(stores, q, k, threshold, aoi, qcode, prefilter)
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
    from engine.store import atomic_write

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
