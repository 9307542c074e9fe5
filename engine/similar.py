"""The facade's "find more like this" operations (mixed into ``engine.service.Engine``): query by example,
relevance-feedback rounds, score maps and labels files. The CLI and the HTTP API call these methods only."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from engine.errors import BadInput, Conflict, NotFound
from engine.examples import ExampleRef, example_scorer, tile_at_pixel, tiles_in_polygon
from engine.feedback import FeedbackParams, fit_feedback, sample_background
from engine.labels import LabelledTile, read_labels, write_labels
from engine.ranking import LinearScorer, QuerySpec, rank_stores, store_scores
from engine.scoremap import NODATA, score_grid, write_scoremap
from engine.search import hit_records
from engine.store import Store

MAX_EXAMPLES = 1000
SCOREMAP_DIR = "scoremaps"


class SimilarSearch:
    """Mixin for ``Engine``; relies on its ``store``, ``store_for_raster``, ``encoder``, ``encoder_for_store``,
    ``_check_model``, ``_embed_at`` and ``root``."""

    # ------------------------------------------------------------ examples
    def example_vectors(self, refs, model: str | None = None) -> tuple[np.ndarray, list[tuple[str, int] | None]]:
        """Embeddings ``[m, D]`` of example references; each row's (store_id, tile_id), None when embedded on
        the fly (a point on a raster that is not indexed). A polygon gives one row per tile it covers."""
        from engine.service import _to_pixel

        vecs: list[np.ndarray] = []
        keys: list[tuple[str, int] | None] = []
        for ref in refs:
            ref = ref if isinstance(ref, ExampleRef) else ExampleRef.from_dict(ref)
            if ref.store is not None and ref.tile_id is not None:
                st = self.store(ref.store)
                tid = int(ref.tile_id)
                if not 0 <= tid < st.embeddings.shape[0]:
                    raise NotFound(f"tile {tid} does not exist in store {st.store_id}")
                vecs.append(np.asarray(st.embeddings[tid], dtype=np.float32))
                keys.append((st.store_id, tid))
                continue
            try:
                st = self.store_for_raster(ref.raster, model)
            except (NotFound, Conflict):
                if ref.polygon is not None or not Path(ref.raster).expanduser().is_file():
                    raise
                emb, _geom, _authid = self._embed_at(self.encoder(model), ref.raster, ref.x, ref.y, ref.crs)
                vecs.append(np.asarray(emb, dtype=np.float32))
                keys.append(None)
                continue
            if ref.polygon is not None:
                ids = tiles_in_polygon(st.polygons(), _polygon_in_raster_crs(ref.polygon, ref.crs, st))
                if len(ids) == 0:
                    raise NotFound(f"the example polygon covers no indexed tile of {st.raster_path}")
            else:
                px, py = _to_pixel(st.manifest["raster"], ref.x, ref.y, ref.crs)
                tid = tile_at_pixel(st.windows, px, py)
                if tid is None:
                    raise NotFound(f"no indexed tile at ({ref.x}, {ref.y}) (a skipped tile?)")
                ids = [tid]
            for tid in ids:
                vecs.append(np.asarray(st.embeddings[int(tid)], dtype=np.float32))
                keys.append((st.store_id, int(tid)))
        if len(vecs) > MAX_EXAMPLES:
            raise BadInput(f"at most {MAX_EXAMPLES} example tiles, got {len(vecs)}")
        if not vecs:
            return np.zeros((0, 0), np.float32), []
        return np.stack(vecs), keys

    # ------------------------------------------------------------ ranking
    def scorer(
        self, spec: QuerySpec, stores: list[Store], enc, params: FeedbackParams | None = None
    ) -> tuple[LinearScorer, dict]:
        """The scorer for ``spec`` over ``stores`` and facts about it (labels used, fit time and iterations)."""
        kind = spec.kind
        text = enc.embed_query(spec.text) if spec.text else None
        if kind == "text":
            if text is None:
                raise BadInput("give a text query, example tiles or yes/no labels")
            return LinearScorer(text[:, None], kind="text"), {}
        pos, pos_keys = self.example_vectors(spec.positives, enc.meta.name)
        neg, neg_keys = self.example_vectors(spec.negatives, enc.meta.name)
        self._check_example_model(pos_keys + neg_keys, enc)
        if kind == "examples":
            return example_scorer(pos, spec.mode), {"n_positive": len(pos), "n_negative": 0}
        params = params or FeedbackParams()
        t0 = time.perf_counter()
        index = {s.store_id: i for i, s in enumerate(stores)}
        labelled = {(index[k[0]], k[1]) for k in pos_keys + neg_keys if k is not None and k[0] in index}
        bg = sample_background([s.embeddings.shape[0] for s in stores], params.background, labelled, params.seed)
        bg_vecs = np.stack([np.asarray(stores[s].embeddings[r], np.float32) for s, r in bg]) if bg else None
        fit = fit_feedback(pos, neg, text, bg_vecs, params)
        info = {
            "n_positive": len(pos),
            "n_negative": len(neg),
            "n_background": len(bg),
            "fit_ms": round((time.perf_counter() - t0) * 1000, 3),
            "iterations": fit.iterations,
            "converged": fit.converged,
            "train_accuracy": fit.train_accuracy,
        }
        return fit.scorer, info

    def _check_example_model(self, keys, enc) -> None:
        for key in {k[0] for k in keys if k is not None}:
            name = self.store(key).manifest["model"]["name"]
            if name != enc.meta.name:
                raise BadInput(f"example tiles of store {key} were embedded with model {name}, not {enc.meta.name}")

    def rank(
        self,
        spec: QuerySpec,
        rasters=(),
        store_ids=(),
        k: int = 20,
        threshold: float | None = None,
        aoi: dict | None = None,
        model: str | None = None,
        params: FeedbackParams | None = None,
    ) -> dict:
        """Search by example, or one relevance-feedback round: the whole stores re-ranked (no raster or store
        given: those of the "yes" examples); the response of ``search`` plus ``kind`` and the scorer's facts."""
        t0 = time.perf_counter()
        if not rasters and not store_ids:  # search where the examples are
            refs = [r if isinstance(r, ExampleRef) else ExampleRef.from_dict(r) for r in spec.positives]
            store_ids = list(dict.fromkeys(r.store for r in refs if r.store))
            rasters = list(dict.fromkeys(r.raster for r in refs if r.raster and not r.store))
        stores, enc = self._searched(rasters, store_ids, model)
        scorer, info = self.scorer(spec, stores, enc, params)
        hits = rank_stores(stores, scorer, k, threshold, aoi)
        out = {"query": spec.label(), "kind": scorer.kind, **info}
        out["results"] = hit_records(hits)
        out["took_ms"] = round((time.perf_counter() - t0) * 1000, 2)
        return out

    # ------------------------------------------------------------ score maps
    def scoremap(
        self,
        spec: QuerySpec,
        raster=None,
        store_id: str | None = None,
        out: str | Path | None = None,
        model: str | None = None,
        params: FeedbackParams | None = None,
    ) -> dict:
        """Write the score of every tile of one raster's store as a GeoTIFF (engine/scoremap.py); default path:
        ``<cache>/scoremaps/<store>-<query hash>.tif``."""
        t0 = time.perf_counter()
        if raster is None and store_id is None:
            raise BadInput("a score map needs a raster or a store")
        stores, enc = self._searched([raster] if raster is not None else [], [store_id] if store_id else [], model)
        st = stores[0]
        scorer, info = self.scorer(spec, stores, enc, params)
        scores = store_scores(st, scorer)
        grid = score_grid(st.manifest, st.windows, scores)
        if out is None:
            folder = Path(self.root).parent / SCOREMAP_DIR
            folder.mkdir(parents=True, exist_ok=True)
            key = json.dumps([st.store_id, _spec_key(spec), repr(params)], sort_keys=True, default=str)
            out = folder / f"{st.store_id}-{hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()[:12]}.tif"
        path = write_scoremap(grid, out)
        valid = grid.values[grid.valid]
        r = st.manifest["raster"]
        return {
            "path": str(path),
            "store_id": st.store_id,
            "raster": r["path"],
            "query": spec.label(),
            "kind": scorer.kind,
            "width": int(grid.values.shape[1]),
            "height": int(grid.values.shape[0]),
            "transform": list(grid.transform),
            "crs": r.get("crs_wkt", ""),
            "authid": r.get("authid", ""),
            "nodata": NODATA,
            "min": float(valid.min()) if valid.size else None,
            "max": float(valid.max()) if valid.size else None,
            "n_tiles": int(valid.size),
            **info,
            "took_ms": round((time.perf_counter() - t0) * 1000, 2),
        }

    # ------------------------------------------------------------ labels files
    def save_labels(self, path, positives=(), negatives=(), query: str | None = None) -> dict:
        """Write yes/no tiles (refs to indexed tiles) to a labels GeoPackage (engine/labels.py)."""
        tiles, polys, wkts = [], [], []
        for label, refs in ((True, positives), (False, negatives)):
            _vecs, keys = self.example_vectors(refs)
            for key in keys:
                if key is None:
                    raise BadInput("labels must be indexed tiles (index the raster first)")
                st = self.store(key[0])
                x, y, w, h = (int(v) for v in st.windows[key[1]])
                tiles.append(LabelledTile(label, st.store_id, key[1], st.raster_path, (x, y, w, h)))
                polys.append(st.polygons()[key[1]])
                wkts.append(st.manifest["raster"].get("crs_wkt", ""))
        if not tiles:
            raise BadInput("no labelled tiles to save")
        p = write_labels(path, tiles, polys, wkts, query or "")
        n_pos = sum(t.label for t in tiles)
        return {"path": str(p), "n_positive": n_pos, "n_negative": len(tiles) - n_pos, "query": query or ""}

    def load_labels(self, path, model: str | None = None) -> dict:
        """The yes/no tiles of a labels GeoPackage as ``{"store", "tile_id"}`` refs of the stores here."""
        tiles, query = read_labels(path)
        out: dict = {"query": query, "positives": [], "negatives": [], "missing": 0}
        for t in tiles:
            ref = self._find_labelled(t, model)
            if ref is None:
                out["missing"] += 1
            else:
                out["positives" if t.label else "negatives"].append(ref)
        return out

    def _find_labelled(self, t: LabelledTile, model: str | None) -> dict | None:
        try:
            st = self.store(t.store_id)
            if 0 <= t.tile_id < st.embeddings.shape[0] and tuple(int(v) for v in st.windows[t.tile_id]) == t.window:
                return {"store": st.store_id, "tile_id": t.tile_id}
        except (NotFound, Conflict):
            pass
        if not t.raster:
            return None
        try:
            st = self.store_for_raster(t.raster, model)
        except (NotFound, Conflict):
            return None
        hit = np.flatnonzero((st.windows == np.asarray(t.window, dtype=st.windows.dtype)).all(axis=1))
        return {"store": st.store_id, "tile_id": int(hit[0])} if len(hit) else None


def _spec_key(spec: QuerySpec) -> dict:
    refs = [[r.as_dict() if isinstance(r, ExampleRef) else r for r in spec.positives]]
    refs.append([r.as_dict() if isinstance(r, ExampleRef) else r for r in spec.negatives])
    return {"text": spec.text, "refs": refs, "mode": spec.mode, "classifier": spec.classifier}


def _polygon_in_raster_crs(polygon: dict, crs: str | None, st: Store):
    """A GeoJSON polygon given in ``crs`` (default the raster CRS) as a shapely geometry in the raster CRS."""
    import shapely.geometry

    try:
        geom = shapely.geometry.shape(polygon)
    except Exception as exc:  # noqa: BLE001 - shapely raises several types for bad GeoJSON
        raise BadInput(f"invalid example polygon: {exc}") from None
    wkt = st.manifest["raster"].get("crs_wkt", "")
    if crs and wkt:
        from rasterio.crs import CRS
        from rasterio.errors import CRSError
        from rasterio.warp import transform_geom

        try:
            src = CRS.from_user_input(crs)
        except CRSError:
            raise BadInput(f"unknown CRS: {crs}") from None
        geom = shapely.geometry.shape(transform_geom(src, CRS.from_wkt(wkt), shapely.geometry.mapping(geom)))
    return geom
