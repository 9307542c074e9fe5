"""Search: ranking, AOI, threshold, several stores, outputs, and an AOI inside a store's FAISS IVF search."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest

from engine.errors import BadInput
from engine.indexer import IndexParams
from engine.search import write_results
from engine.store import ensure_index, store_lock
from tests.engine.rasters import colour_quadrants, rgb_pattern, write_raster


@pytest.fixture
def quad(tmp_path, engine):
    p = write_raster(tmp_path / "quad.tif", colour_quadrants(64), crs="EPSG:4326", res=0.001, origin=(10, 50))
    return p, engine.index(p, IndexParams(tile=64))


@pytest.mark.parametrize(("query", "tile"), [("red", 0), ("green", 1), ("blue", 2)])
def test_colour_queries_rank_the_right_tile(engine, quad, query, tile):
    p, res = quad
    out = engine.search(query, rasters=[p], k=4)
    r = out["results"]
    assert [x["rank"] for x in r] == [1, 2, 3, 4] and r[0]["tile_id"] == tile
    assert r[0]["score"] >= r[1]["score"] and r[0]["store_id"] == res.store_id
    assert r[0]["authid"] == "EPSG:4326" and r[0]["geometry"]["type"] == "Polygon"
    assert r[0]["bbox_lonlat"][0] == pytest.approx(10 + 0.064 * (tile % 2))
    assert out["took_ms"] >= 0


def test_aoi_threshold_and_k(engine, quad):
    p, _ = quad
    aoi = {
        "type": "Polygon",
        "coordinates": [[[10.07, 49.87], [10.12, 49.87], [10.12, 49.93], [10.07, 49.93], [10.07, 49.87]]],
    }  # inside the bottom-right (grey) tile
    r = engine.search("red", rasters=[p], k=10, aoi=aoi)["results"]
    assert [x["tile_id"] for x in r] == [3]
    assert len(engine.search("red", rasters=[p], k=2)["results"]) == 2
    r = engine.search("red", rasters=[p], k=10, threshold=0.3)["results"]
    assert [x["tile_id"] for x in r] == [0]
    with pytest.raises(BadInput):
        engine.search("red", rasters=[p], k=0)
    with pytest.raises(BadInput):
        engine.search("   ", rasters=[p], k=3)
    with pytest.raises(BadInput):
        engine.search("red", k=3)


def test_several_stores_and_outputs(tmp_path, engine, quad):
    p, res = quad
    other = write_raster(tmp_path / "o.tif", rgb_pattern(128, 128))
    res2 = engine.index(other, IndexParams(tile=64))
    out = engine.search("blue", store_ids=[res.store_id, res2.store_id], k=8)
    assert len(out["results"]) == 8 and {x["store_id"] for x in out["results"]} == {res.store_id, res2.store_id}
    scores = [x["score"] for x in out["results"]]
    assert scores == sorted(scores, reverse=True)
    write_results(out, str(tmp_path / "r.geojson"))
    fc = json.loads((tmp_path / "r.geojson").read_text())
    assert len(fc["features"]) == 8 and fc["features"][0]["properties"]["rank"] == 1
    lon = fc["features"][0]["geometry"]["coordinates"][0][0][0]
    assert -180 <= lon <= 180
    write_results(out, str(tmp_path / "r.gpkg"))
    con = sqlite3.connect(tmp_path / "r.gpkg")
    assert con.execute("SELECT count(*) FROM results").fetchone()[0] == 8
    with pytest.raises(BadInput):
        write_results(out, str(tmp_path / "r.txt"))


def test_aoi_inside_the_ivf_search(tmp_path, engine, cache):
    """A store with a FAISS IVF index: the AOI is an ID selector, so every result lies inside it and the AOI's
    best tiles are found (not the store's best tiles filtered afterwards)."""
    p = write_raster(tmp_path / "p.tif", rgb_pattern(512, 512), crs="EPSG:4326", res=0.001, origin=(10, 50))
    sid = engine.index(p, IndexParams(tile=16)).store_id  # 1024 tiles
    plain = engine.store(sid)
    exact_aoi = {}
    aoi = {"type": "Polygon", "coordinates": [[[10.1, 49.7], [10.2, 49.7], [10.2, 49.8], [10.1, 49.8], [10.1, 49.7]]]}
    for q in ("red", "a river", "blue water"):
        exact_aoi[q] = [r["tile_id"] for r in engine.search(q, store_ids=[sid], k=10, aoi=aoi)["results"]]
    with store_lock(cache, sid):
        vi = ensure_index(cache / sid, force=True)
    assert vi is not None and vi.n_lists == 26
    st = engine.store(sid)
    assert st is not plain and st.index is not None
    inside = set(np.flatnonzero([g.intersects(_aoi_geom(aoi)) for g in st.polygons()]).tolist())
    assert 0 < len(inside) < 200
    for q, want in exact_aoi.items():
        res = engine.search(q, store_ids=[sid], k=10, aoi=aoi)["results"]
        got = [r["tile_id"] for r in res]
        assert set(got) <= inside and len(got) == 10
        assert len(set(got) & set(want)) >= 9  # IVF with the selector finds the AOI's own best tiles
        all_best = [r["tile_id"] for r in engine.search(q, store_ids=[sid], k=10, nprobe=vi.n_lists)["results"]]
        assert not set(all_best) <= inside  # the store's overall best tiles lie elsewhere: filtering them would fail


def _aoi_geom(aoi):
    import shapely.geometry

    return shapely.geometry.shape(aoi)


@pytest.mark.parametrize(
    "aoi",
    [
        {"type": "Polygon", "coordinates": [[[1e308, 0], [1, 1], [0, 1], [1e308, 0]]]},
        {"type": "Polygon", "coordinates": [[[0, 0]]]},
        {"type": "Nonsense"},
        {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]], "extra": [1, 2]},
    ],
)
def test_bad_aoi_is_bad_input(engine, quad, aoi):
    p, _ = quad
    try:
        engine.search("red", rasters=[p], k=3, aoi=aoi)
    except BadInput:
        pass
