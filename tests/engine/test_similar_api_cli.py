"""Find more like this through the HTTP API and the CLI (synthetic bundle, a real raster from ../shared/rasters):
request validation, allowed roots, one-line errors, and the same answers as the facade."""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest
import rasterio
from fastapi.testclient import TestClient

from engine.api import create_app
from engine.cli import main
from engine.service import Engine

TOKEN = "s" * 20 + "-similar-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def api(tmp_path, bundle_dir, cache, shared):
    data = tmp_path / "data"
    data.mkdir()
    raster = data / "cogeo.tif"
    shutil.copy(shared / "rasters" / "cogeo.tif", raster)
    engine = Engine(default_model=bundle_dir, root=cache, threads=1)
    app = create_app(engine, TOKEN, [data])
    with TestClient(app, raise_server_exceptions=False) as client:
        client.headers.update(AUTH)
        job = client.post("/index", json={"raster": str(raster), "tile": 128}).json()
        deadline = time.time() + 120
        while (state := client.get(f"/jobs/{job['job_id']}").json())["state"] not in ("done", "failed"):
            assert time.time() < deadline
            time.sleep(0.05)
        assert state["state"] == "done", state
        yield client, data, raster, state["store_id"], engine


def test_like_feedback_scoremap_labels_over_http(api, tmp_path):
    client, data, raster, sid, engine = api
    r = client.post("/search/like", json={"examples": [{"store": sid, "tile_id": 7}], "stores": [sid], "k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["kind"] == "examples" and body["results"][0]["tile_id"] == 7
    assert body["results"][0]["score"] == pytest.approx(1.0, abs=2e-3)

    store = engine.store(sid)
    x, y, w, h = (int(v) for v in store.windows[7])
    a, _b, c, _d, e, f = store.transform
    point = {"raster": str(raster), "x": a * (x + w / 2) + c, "y": e * (y + h / 2) + f}
    r = client.post("/search/like", json={"examples": [point], "k": 5})  # no raster/store: the example's raster
    assert r.status_code == 200 and [x["tile_id"] for x in r.json()["results"]] == [
        x["tile_id"] for x in body["results"]
    ]

    fb_body = {
        "query": "a roof",
        "positives": [{"store": sid, "tile_id": 7}, point],
        "negatives": [{"store": sid, "tile_id": 0}],
        "stores": [sid],
        "k": 64,
    }
    r = client.post("/feedback", json=fb_body)
    assert r.status_code == 200, r.text
    fb = r.json()
    assert fb["kind"] == "feedback" and fb["n_positive"] == 2 and fb["n_negative"] == 1 and fb["fit_ms"] >= 0
    order = [x["tile_id"] for x in fb["results"]]
    assert order.index(7) < order.index(0)

    smap = {k: fb_body[k] for k in ("query", "positives", "negatives")}
    r = client.post("/scoremap", json={**smap, "store": sid, "classifier": True})
    assert r.status_code == 200, r.text
    sm = r.json()
    with rasterio.open(sm["path"]) as src:
        values = src.read(1)
        assert (src.width, src.height) == (sm["width"], sm["height"]) == (8, 8) and src.crs.to_epsg() == 3857
    best = fb["results"][0]
    bx, by = (int(v) // 128 for v in store.windows[best["tile_id"]][:2])
    assert values[by, bx] == pytest.approx(best["score"], abs=1e-6) and sm["max"] == pytest.approx(best["score"])
    r = client.post("/scoremap", json={"query": "a roof", "raster": str(raster), "out": str(data / "m.tif")})
    assert r.status_code == 200 and (data / "m.tif").is_file()

    r = client.post("/labels/save", json={**smap, "path": str(data / "labels.gpkg")})
    assert r.status_code == 200 and r.json()["n_positive"] == 2, r.text
    r = client.post("/labels/load", json={"path": str(data / "labels.gpkg")})
    loaded = r.json()
    assert r.status_code == 200 and loaded["query"] == "a roof" and loaded["missing"] == 0
    assert loaded["positives"] == [{"store": sid, "tile_id": 7}] * 2 and loaded["negatives"] == [
        {"store": sid, "tile_id": 0}
    ]


@pytest.mark.parametrize(
    ("path", "body", "status", "words"),
    [
        ("/search/like", {"examples": []}, 422, "examples"),
        ("/search/like", {"examples": [{"store": "0" * 16, "tile_id": 1}]}, 404, "unknown store"),
        ("/search/like", {"examples": [{"tile_id": 1}], "stores": ["0" * 16]}, 400, "an example is"),
        ("/search/like", {"examples": [{"raster": "/etc/passwd", "x": 1, "y": 2}]}, 403, "allowed roots"),
        ("/feedback", {"stores": ["0" * 16]}, 400, "'yes' tile or a text"),
        ("/feedback", {"query": "x", "l2": 0}, 422, "l2"),
        ("/scoremap", {"query": "x"}, 400, "raster or a store"),
        ("/scoremap", {"query": "x", "store": "{sid}", "out": "/tmp/evil.tif"}, 403, "allowed roots"),
        ("/scoremap", {"query": "x", "store": "{sid}", "out": "{data}/m.png"}, 400, ".tif"),
        ("/labels/save", {"path": "{data}/l.gpkg"}, 400, "no labelled tiles"),
        ("/labels/load", {"path": "{data}/none.gpkg"}, 404, "labels file not found"),
        ("/labels/load", {"path": "{data}/cogeo.tif"}, 400, "not an RSITR labels"),
    ],
)
def test_bad_requests_are_one_line_4xx(api, path, body, status, words):
    client, data, _raster, sid, _engine = api
    body = json.loads(json.dumps(body).replace("{sid}", sid).replace("{data}", str(data)))
    r = client.post(path, json=body)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and words in detail


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_like_feedback_scoremap(capsys, cache, bundle_dir, shared, tmp_path):
    raster = shared / "rasters" / "world.rgb.tif"
    code, out, _ = run(capsys, "index", raster, "--model", bundle_dir, "--tile", "64", "--json", "--quiet")
    assert code == 0
    sid = json.loads(out)["store_id"]
    code, out, err = run(capsys, "search", "--like-tile", f"{sid}:5", "-k", "4", "--model", bundle_dir, "--json")
    assert code == 0, err
    res = json.loads(out)
    assert res["kind"] == "examples" and res["results"][0]["tile_id"] == 5
    # the point form: the centre of tile 5, in the raster CRS
    with rasterio.open(raster) as src:
        cols = -(-src.width // 64)
        r5, c5 = divmod(5, cols)
        x, y = src.xy(r5 * 64 + 32, c5 * 64 + 32)
    code, out, _ = run(
        capsys, "search", "--like", f"{raster}:{x},{y}", "--raster", raster, "-k", "4", "--json", "--model", bundle_dir
    )
    assert code == 0 and [r["tile_id"] for r in json.loads(out)["results"]] == [r["tile_id"] for r in res["results"]]

    labels = tmp_path / "labels.gpkg"
    code, out, err = run(
        capsys, "feedback", "a desert", "--store", sid, "--yes", f"{sid}:5", "--no", f"{sid}:0", "-k", "8",
        "--save-labels", labels, "--model", bundle_dir,
    )  # fmt: skip
    assert code == 0 and "classifier on 1 yes / 1 no" in out and labels.is_file(), err
    code, out, err = run(capsys, "feedback", "--store", sid, "--labels", labels, "-k", "8", "--json")
    first = json.loads(out)
    assert code == 0 and first["query"] == "a desert (+1/-1)", err
    code, out, err = run(capsys, "scoremap", "--store", sid, "--labels", labels, "--out", tmp_path / "m.tif", "--json")
    assert code == 0, err
    sm = json.loads(out)
    with rasterio.open(sm["path"]) as src:
        values = src.read(1)
    assert sm["kind"] == "feedback" and np.nanmax(values) == pytest.approx(first["results"][0]["score"], abs=1e-6)

    for argv, words in [
        (["search", "--store", sid], "query is empty"),
        (["search", "--like", "nocolon", "--store", sid], "RASTER:X,Y"),
        (["search", "--like-tile", f"{sid}:999999"], "does not exist"),
        (["feedback", "--store", sid], "'yes' tile"),
        (["scoremap", "x", "--out", tmp_path / "m.tif"], "--raster or --store"),
        (["scoremap", "x", "--store", sid, "--out", tmp_path / "m.png"], ".tif"),
    ]:
        code, _out, err = run(capsys, *argv, "--model", bundle_dir)
        assert code == 2 and err.startswith("error: ") and words in err and "Traceback" not in err, (argv, err)
