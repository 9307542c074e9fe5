"""Search: ranking, AOI, threshold, several stores, outputs, and the hash prefilter's recall@10."""

from __future__ import annotations

import json
import sqlite3
from types import SimpleNamespace

import numpy as np
import pytest

from engine.errors import BadInput
from engine.indexer import IndexParams
from engine.search import prefilter_candidates, search_stores, write_results
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


def _store(emb, codes):
    return SimpleNamespace(
        embeddings=emb, codes=codes, store_id="s", manifest={"raster": {"crs_wkt": ""}}, polygons=lambda: None
    )


@pytest.mark.parametrize("kind", ["simhash", "bundle"])
def test_prefilter_recall_at_10(encoder, kind):
    """Hamming prefilter + exact re-rank vs exact search on 40k clustered embeddings: recall@10 >= 0.9."""
    rng = np.random.default_rng(0)
    d, n = 32, 40_000
    centres = rng.standard_normal((200, d))
    x = centres[rng.integers(0, 200, n)] + 0.35 * rng.standard_normal((n, d))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    emb = x.astype(np.float16)
    from engine.encoder import simhash

    codes_fn = simhash if kind == "simhash" else encoder.image_codes
    codes = np.concatenate([codes_fn(x[i : i + 10_000]) for i in range(0, n, 10_000)])
    st = _store(emb, codes)
    recalls = []
    for q in range(50):
        qv = centres[q] + 0.3 * rng.standard_normal(d)
        qv = (qv / np.linalg.norm(qv)).astype(np.float32)
        qcode = codes_fn(qv[None])[0]
        exact = {h.tile_id for h in search_stores([st], qv, 10, prefilter=False)}
        approx = {h.tile_id for h in search_stores([st], qv, 10, qcode=qcode, prefilter=True, n_candidates=2000)}
        recalls.append(len(exact & approx) / 10)
    recall = float(np.mean(recalls))
    print(f"recall@10 ({kind}, 2000 of {n} candidates) = {recall:.3f}")
    assert recall >= 0.9
    assert len(prefilter_candidates(codes, qcode, 100)) == 100


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
