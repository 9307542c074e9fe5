"""Catalogs (engine/catalog.py): 4 real rasters of ../shared/rasters indexed into one collection searched with one
index; results of several rasters ranked together; an AOI applied inside the index search; appended members found;
sources from list files and STAC JSON; CLI and HTTP API."""

from __future__ import annotations

import json

import numpy as np
import pytest
import shapely.geometry
from fastapi.testclient import TestClient

from engine.catalog import resolve_sources, search_catalog, write_catalog
from engine.cli import main
from engine.errors import BadInput, NotFound
from engine.indexer import IndexParams

RASTERS = ("RGB.byte.tif", "cogeo.tif", "naip_2020.tif", "world.rgb.tif")
QUERIES = ("a river crossing farmland", "dense residential area", "a large blue lake", "bare desert")


@pytest.fixture
def four(shared, tmp_path):
    """A list file naming 4 real rasters (relative paths) and the rasters."""
    paths = [shared / "rasters" / n for n in RASTERS]
    lst = tmp_path / "rasters.txt"
    lst.write_text("# four real rasters\n" + "\n".join(str(p) for p in paths) + "\n")
    return lst, paths


def _exact_merged(engine, store_ids, q, k, aoi=None):
    """Reference: each store searched exactly on its own, merged by score (what one index must reproduce)."""
    hits = []
    for sid in store_ids:
        hits += engine.search(q, store_ids=[sid], k=k, aoi=aoi)["results"]
    hits.sort(key=lambda r: (-r["score"], r["store_id"], r["tile_id"]))
    return [(r["store_id"], r["tile_id"]) for r in hits[:k]]


def test_catalog_of_four_real_rasters(engine, four, cache):
    lst, paths = four
    m = engine.index_many([lst], "four", IndexParams(tile=128))
    assert m["version"] == 1 and [x["raster"] for x in m["members"]] == [str(p.resolve()) for p in paths]
    assert m["n_tiles"] == sum(x["n_tiles"] for x in m["members"]) and m["members"][0]["start"] == 0
    ids = [x["store_id"] for x in m["members"]]
    for q in QUERIES:
        out = engine.search(q, catalog="four", k=40)
        got = [(r["store_id"], r["tile_id"]) for r in out["results"]]
        assert out["catalog"] == "four" and len(got) == 40
        assert got == _exact_merged(engine, ids, q, 40)  # one search ranks tiles of all rasters together
        assert len({r["raster"] for r in out["results"]}) >= 2
    # AOI around a NAIP tile (EPSG:26914); the world raster (EPSG:4326) covers it too: only tiles of those two
    # that intersect the AOI come back, and they are the AOI's own best tiles
    naip_tiles = engine.search("x", store_ids=[ids[2]], k=1000)["results"]
    w, s, e, n = naip_tiles[len(naip_tiles) // 2]["bbox_lonlat"]
    lon0, lat0 = (w + e) / 2, (s + n) / 2
    aoi = shapely.geometry.mapping(shapely.geometry.box(lon0 - 0.004, lat0 - 0.003, lon0 + 0.004, lat0 + 0.003))
    for q in QUERIES[:2]:
        res = engine.search(q, catalog="four", k=10, aoi=aoi)["results"]
        assert {r["store_id"] for r in res} == {ids[2], ids[3]} and len(res) < len(naip_tiles) // 4
        geom = shapely.geometry.shape(aoi)
        assert all(geom.intersects(shapely.geometry.box(*r["bbox_lonlat"])) for r in res)
        assert [(r["store_id"], r["tile_id"]) for r in res] == _exact_merged(engine, ids, q, 10, aoi)


def test_one_ivf_index_with_aoi_selector_and_appended_member(engine, four, shared, cache):
    lst, paths = four
    engine.index_many([lst], "four", IndexParams(tile=64))
    stores = [engine.store(x["store_id"]) for x in engine.catalog("four").manifest["members"]]
    write_catalog("four", stores, cache.parent / "catalogs", rebuild=True)  # force the IVF index (small here)
    cat = engine.catalog("four")
    assert cat.index is not None and cat.index.n_indexed == cat.manifest["n_tiles"]
    assert engine.catalogs()[0]["index"] == "ivf_sq8"
    rng = np.random.default_rng(0)
    for row in rng.choice(cat.manifest["n_tiles"], 20, replace=False):  # every tile finds itself (or a twin)
        q = cat.rows().block(int(row), int(row) + 1)[0]
        hits, exact = search_catalog(cat, q, 5), search_catalog(cat, q, 5, exact=True)
        assert hits[0].score == pytest.approx(float(q @ q), abs=1e-3)  # itself, or a twin (uniform tiles)
        np.testing.assert_allclose([h.score for h in hits], [h.score for h in exact], atol=1e-3)
    aoi = {"type": "Polygon", "coordinates": [[[-180, -90], [0, -90], [0, 90], [-180, 90], [-180, -90]]]}
    res = engine.search(QUERIES[0], catalog="four", k=30, aoi=aoi, nprobe=2)["results"]
    assert res and all(r["bbox_lonlat"][0] <= 0 for r in res)  # western hemisphere only, inside the IVF search
    # a fifth raster appended after the build: the index is kept (tail scanned exactly) and its tiles are found
    fifth = shared / "rasters" / "rgb1_fake_nir_epsg3857.tif"
    m = engine.index_many([lst, fifth], "four", IndexParams(tile=64), rebuild=False)
    assert m["version"] == 3 and len(m["members"]) == 5
    cat = engine.catalog("four")
    assert cat.index is not None and cat.index.n_indexed == m["members"][4]["start"] < m["n_tiles"]
    new, found = m["members"][4], 0
    for t in range(new["n_tiles"]):  # tiles without a twin anywhere (the exact top 2 differ) must come first
        q = cat.rows().block(new["start"] + t, new["start"] + t + 1)[0]
        ex = search_catalog(cat, q, 2, exact=True)
        if ex[0].score - ex[1].score < 0.01:
            continue
        hit = search_catalog(cat, q, 1)[0]
        assert (hit.store.store_id, hit.tile_id) == (ex[0].store.store_id, ex[0].tile_id) == (new["store_id"], t)
        found += 1
    assert found >= 3


def test_sources_stac_and_errors(four, tmp_path):
    lst, paths = four
    stac = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "id": p.stem,
                "assets": {
                    "thumbnail": {"href": "thumb.png", "type": "image/png", "roles": ["thumbnail"]},
                    "visual": {"href": str(p), "type": "image/tiff; application=geotiff", "roles": ["data"]},
                },
            }
            for p in paths[:2]
        ],
    }
    (tmp_path / "items.json").write_text(json.dumps(stac))
    assert resolve_sources([tmp_path / "items.json", paths[1], lst]) == [p.resolve() for p in paths]
    stac["features"][0]["assets"]["visual"]["href"] = "https://example.com/a.tif"  # read remotely: kept as given
    (tmp_path / "remote.json").write_text(json.dumps(stac))
    assert resolve_sources([tmp_path / "remote.json"]) == ["https://example.com/a.tif", paths[1].resolve()]
    stac["features"][0]["assets"]["visual"]["href"] = "ftp://example.com/a.tif"
    (tmp_path / "ftp.json").write_text(json.dumps(stac))
    with pytest.raises(BadInput, match=r"only http:// and https:// URLs are supported, not ftp://"):
        resolve_sources([tmp_path / "ftp.json"])
    with pytest.raises(NotFound):
        resolve_sources([tmp_path / "nope.tif"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInput):
        resolve_sources([tmp_path / "empty"])


def test_cli_index_many_and_search(capsys, cache, bundle_dir, four):
    lst, paths = four
    assert main(["--json", "index-many", str(lst), "--catalog", "c1", "--tile", "128", "--model", str(bundle_dir)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_rasters"] == 4 and out["index"] == "flat"
    argv = ["--json", "search", QUERIES[0], "--catalog", "c1", "-k", "25", "--nprobe", "8", "--model", str(bundle_dir)]
    assert main(argv) == 0
    res = json.loads(capsys.readouterr().out)["results"]
    assert len(res) == 25 and len({r["raster"] for r in res}) >= 2
    assert main(["--json", "search", QUERIES[0], "--catalog", "c1", "--bbox=-180,-90,0,90"]) == 0
    res = json.loads(capsys.readouterr().out)["results"]
    assert res and all(r["bbox_lonlat"][0] <= 0 for r in res)
    assert main(["--json", "catalogs", "list"]) == 0
    assert json.loads(capsys.readouterr().out)["catalogs"][0]["name"] == "c1"
    assert main(["search", "x", "--catalog", "nope"]) == 2
    assert main(["search", "x", "--catalog", "c1", "--bbox", "1,2,3"]) == 2
    assert main(["index-many", str(lst), "--catalog", "../evil", "--model", str(bundle_dir)]) == 2
    assert capsys.readouterr().err.count("error: ") == 3
    assert main(["catalogs", "remove", "c1"]) == 0 and main(["catalogs", "remove", "c1"]) == 2


def test_api_catalogs(bundle_dir, cache, four, shared):
    from engine.api import create_app
    from engine.service import Engine
    from tests.engine.test_api import AUTH, TOKEN, _wait

    lst, paths = four
    app = create_app(Engine(default_model=bundle_dir, root=cache, threads=1), TOKEN, [shared, lst.parent])
    with TestClient(app, raise_server_exceptions=False) as client:
        client.headers.update(AUTH)
        r = client.post("/catalogs", json={"name": "api", "sources": [str(lst)], "tile": 128})
        assert r.status_code == 202, r.text
        job = _wait(client, r.json()["job_id"], timeout=300)
        assert job["state"] == "done" and job["done"] == job["total"] == 4, job
        cats = client.get("/catalogs").json()["catalogs"]
        assert [c["name"] for c in cats] == ["api"] and cats[0]["n_rasters"] == 4
        body = {"query": QUERIES[1], "catalog": "api", "k": 20, "nprobe": 4}
        res = client.post("/search", json=body).json()
        assert res["catalog"] == "api" and len({r["raster"] for r in res["results"]}) >= 2
        res = client.post("/search", json={**body, "bbox": [-180, -90, 0, 90]}).json()["results"]
        assert res and all(r["bbox_lonlat"][0] <= 0 for r in res)
        assert client.post("/search", json={**body, "nprobe": 0}).status_code == 422
        assert client.post("/search", json={**body, "catalog": "nope"}).status_code == 404
        assert client.post("/search", json={**body, "stores": ["0" * 16]}).status_code == 400
        assert client.post("/catalogs", json={"name": "x", "sources": ["/etc"]}).status_code == 403
        assert client.post("/catalogs", json={"name": "../x", "sources": [str(lst)]}).status_code == 400
