"""Tile store: layout, GeoPackage validity, atomic/resumable writes (SIGKILL), stale and corrupt stores."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from engine.errors import Cancelled, Conflict, CorruptData, NotFound
from engine.eviction import enforce_cap
from engine.indexer import IndexParams, index_raster
from engine.store import clear_stores, list_stores, open_store
from tests.engine.rasters import rgb_pattern, write_raster

ROOT = Path(__file__).resolve().parents[2]


def test_store_layout(tmp_path, encoder, cache):
    p = write_raster(tmp_path / "r.tif", rgb_pattern(150, 200))
    res = index_raster(p, encoder, IndexParams(tile=64), cache)
    assert (res.n_tiles, res.n_skipped, res.n_windows) == (12, 0, 12)
    d = cache / res.store_id
    assert sorted(f.name for f in d.iterdir()) == ["codes.npy", "embeddings.npy", "manifest.json", "tiles.gpkg"]
    m = json.loads((d / "manifest.json").read_text())
    assert m["state"] == "complete" and m["store_id"] == res.store_id == d.name and len(res.store_id) == 16
    assert m["raster"]["fingerprint"]["size"] == p.stat().st_size and m["raster"]["authid"] == "EPSG:32633"
    assert m["grid"]["tile"] == 64 and m["model"]["name"] == "synthetic"
    st = open_store(res.store_id, cache)
    assert st.embeddings.dtype == np.float16 and st.embeddings.shape == (12, 32)
    assert np.allclose(np.linalg.norm(st.embeddings.astype(np.float32), axis=1), 1, atol=1e-2)
    assert st.codes.shape == (12, 8)
    again = index_raster(p, encoder, IndexParams(tile=64), cache)
    assert again.reused and again.store_id == res.store_id


def test_geopackage_is_valid(tmp_path, encoder, cache):
    p = write_raster(tmp_path / "r.tif", rgb_pattern(100, 100), crs="EPSG:4326", res=0.001, origin=(5, 45))
    res = index_raster(p, encoder, IndexParams(tile=64), cache)
    g = cache / res.store_id / "tiles.gpkg"
    con = sqlite3.connect(g)
    assert con.execute("PRAGMA application_id").fetchone()[0] == 0x47504B47
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    cols = [r[1] for r in con.execute("PRAGMA table_info(tiles)")]
    assert cols == ["fid", "geom", "tile_id", "col", "row", "x_off", "y_off", "width", "height", "valid_fraction"]
    assert con.execute("SELECT srs_id FROM gpkg_geometry_columns").fetchone()[0] == 4326
    con.close()
    if shutil.which("ogrinfo"):
        out = subprocess.run(["ogrinfo", "-ro", "-al", "-so", str(g)], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert "Feature Count: 4" in out.stdout and "Polygon" in out.stdout
        assert "ERROR" not in out.stderr and "Warning" not in out.stderr
        first = subprocess.run(
            ["ogrinfo", "-ro", "-q", str(g), "-sql", "SELECT * FROM tiles WHERE tile_id = 0"],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
        nums = [float(v) for v in re.findall(r"[-\d.]+", first.split("POLYGON", 1)[1])]
        assert nums == pytest.approx([5, 45, 5.064, 45, 5.064, 44.936, 5, 44.936, 5, 45])


def test_skipped_tiles_reported(tmp_path, encoder, cache):
    data = rgb_pattern(128, 128)
    data[:, :64, :] = 0
    p = write_raster(tmp_path / "nd.tif", data, nodata=0)
    res = index_raster(p, encoder, IndexParams(tile=64), cache)
    assert (res.n_tiles, res.n_skipped) == (2, 2)
    res2 = index_raster(p, encoder, IndexParams(tile=64, max_invalid=1.0), cache)
    assert res2.store_id != res.store_id and res2.n_tiles == 2  # all-invalid tiles are always skipped


_KILL_SCRIPT = """
import sys, time
sys.path.insert(0, {root!r})
from engine.bundle import load_bundle
from engine.encoder import Encoder
from engine.indexer import IndexParams, index_raster
from pathlib import Path
enc = Encoder(load_bundle({bundle!r}), threads=1)
def slow(done, total):
    print(done, total, flush=True)
    time.sleep(0.15)
index_raster({raster!r}, enc, IndexParams(tile=32, chunk_tiles=16, batch_size=8), Path({root_store!r}), slow)
"""


def test_sigkill_then_resume_matches_uninterrupted(tmp_path, bundle_dir, encoder, cache):
    p = write_raster(tmp_path / "r.tif", rgb_pattern(256, 256, seed=3))  # 64 windows of 32 px, 4 chunks... x16
    params = IndexParams(tile=32, chunk_tiles=16, batch_size=8)
    script = _KILL_SCRIPT.format(root=str(ROOT), bundle=str(bundle_dir), raster=str(p), root_store=str(cache))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    partial = None
    deadline = time.time() + 60
    while time.time() < deadline:
        dirs = list(cache.glob("*/partial")) if cache.is_dir() else []
        if dirs and len(list(dirs[0].glob("chunk_*.npz"))) >= 2:
            partial = dirs[0]
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert partial is not None, proc.stderr.read()
    sid = partial.parent.name
    m = json.loads((partial.parent / "manifest.json").read_text())
    assert m["state"] == "partial"
    assert not (partial.parent / "embeddings.npy").exists()
    with pytest.raises(Conflict, match="incomplete"):
        open_store(sid, cache)
    assert [s["state"] for s in list_stores(cache)] == ["partial"]
    resumed = index_raster(p, encoder, params, cache)
    assert resumed.store_id == sid and resumed.resumed_chunks >= 2 and not (cache / sid / "partial").exists()
    fresh_root = tmp_path / "fresh"
    fresh = index_raster(p, encoder, params, fresh_root)
    a, b = open_store(sid, cache), open_store(fresh.store_id, fresh_root)
    assert fresh.store_id == sid
    np.testing.assert_array_equal(a.windows, b.windows)
    np.testing.assert_allclose(a.embeddings.astype(np.float32), b.embeddings.astype(np.float32), atol=2e-3)


def test_cancel_leaves_resumable_partial(tmp_path, encoder, cache):
    p = write_raster(tmp_path / "r.tif", rgb_pattern(256, 256))
    cancel = threading.Event()

    def progress(done, total):
        if done >= 32:
            cancel.set()

    with pytest.raises(Cancelled):
        index_raster(p, encoder, IndexParams(tile=32, chunk_tiles=16), cache, progress, cancel)
    assert list_stores(cache)[0]["state"] == "partial"
    res = index_raster(p, encoder, IndexParams(tile=32, chunk_tiles=16), cache)
    assert res.resumed_chunks >= 2 and res.n_tiles == 64


def test_stale_store_detected(tmp_path, engine, cache):
    p = write_raster(tmp_path / "r.tif", rgb_pattern(64, 128))
    res = engine.index(p, IndexParams(tile=64))
    assert engine.store_for_raster(p).store_id == res.store_id
    time.sleep(0.01)
    write_raster(p, rgb_pattern(64, 128, seed=9))  # the raster changes on disk
    with pytest.raises(Conflict, match="stale"):
        open_store(res.store_id, cache)
    with pytest.raises(Conflict, match="stale"):
        engine.store(res.store_id)
    with pytest.raises(Conflict, match="stale"):
        engine.store_for_raster(p)
    assert list_stores(cache)[0]["state"] == "stale"
    new = engine.index(p, IndexParams(tile=64))
    assert new.store_id != res.store_id and engine.store_for_raster(p).store_id == new.store_id
    assert clear_stores(root=cache, states=("stale",)) == [res.store_id]
    assert [s["store_id"] for s in list_stores(cache)] == [new.store_id]


def test_corrupt_store(tmp_path, encoder, cache):
    p = write_raster(tmp_path / "r.tif", rgb_pattern(128, 128))
    res = index_raster(p, encoder, IndexParams(tile=64), cache)
    emb = cache / res.store_id / "embeddings.npy"
    data = emb.read_bytes()
    emb.write_bytes(data[: len(data) - 40])
    with pytest.raises(CorruptData, match="embeddings"):
        open_store(res.store_id, cache)
    emb.write_bytes(data)
    m = json.loads((cache / res.store_id / "manifest.json").read_text())
    m["n_tiles"] = 5
    (cache / res.store_id / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(CorruptData, match="do not match"):
        open_store(res.store_id, cache)
    with pytest.raises(NotFound):
        open_store("0123456789abcdef", cache)
    with pytest.raises(NotFound):
        open_store("../../etc", cache)


def test_size_cap_and_clear(tmp_path, encoder, cache):
    a = index_raster(write_raster(tmp_path / "a.tif", rgb_pattern(64, 64)), encoder, IndexParams(tile=32), cache)
    time.sleep(0.02)
    b = index_raster(write_raster(tmp_path / "b.tif", rgb_pattern(64, 64, 2)), encoder, IndexParams(tile=32), cache)
    assert {s["store_id"] for s in list_stores(cache)} == {a.store_id, b.store_id}
    removed = enforce_cap(1, keep=b.store_id, root=cache)
    assert removed == [a.store_id]
    with pytest.raises(NotFound):
        clear_stores(["ffffffffffffffff"], cache)
    assert clear_stores(None, cache) == [b.store_id] and list_stores(cache) == []


def test_concurrent_index_same_raster(tmp_path, encoder, cache):
    p = write_raster(tmp_path / "r.tif", rgb_pattern(128, 128))
    results = []

    def run():
        results.append(index_raster(p, encoder, IndexParams(tile=32), cache))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({r.store_id for r in results}) == 1 and sorted(r.reused for r in results) == [False, True]
    assert open_store(results[0].store_id, cache).embeddings.shape == (16, 32)
    assert [d.name for d in cache.iterdir() if not d.name.startswith(".")] == [results[0].store_id]


def test_write_failure_never_complete(tmp_path, encoder, cache, monkeypatch):
    """A write error (e.g. disk full) during finalisation leaves a partial store, never a complete one."""
    import engine.store as store_mod

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    p = write_raster(tmp_path / "r.tif", rgb_pattern(64, 64))
    monkeypatch.setattr(store_mod.gpkg, "write_layer", boom)
    with pytest.raises(OSError):
        index_raster(p, encoder, IndexParams(tile=32), cache)
    (sid,) = [d.name for d in cache.iterdir() if not d.name.startswith(".")]
    assert json.loads((cache / sid / "manifest.json").read_text())["state"] == "partial"
    assert not any(f.name.startswith(".") and "tmp" in f.name for f in (cache / sid).iterdir())
    monkeypatch.undo()
    assert index_raster(p, encoder, IndexParams(tile=32), cache).resumed_chunks == 1


def test_gsd_resampling_store(tmp_path, encoder, cache):
    p = write_raster(tmp_path / "r.tif", rgb_pattern(256, 256), res=1.0)
    res = index_raster(p, encoder, IndexParams(tile=32, gsd=2.0), cache)
    m = json.loads((cache / res.store_id / "manifest.json").read_text())
    assert m["grid"]["scale"] == 2.0 and m["grid"]["gsd"] == 2.0 and res.n_windows == 16
    st = open_store(res.store_id, cache)
    assert st.windows[0].tolist() == [0, 0, 64, 64]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_raster(tmp_path, encoder, cache):
    from engine.errors import BadInput

    p = write_raster(tmp_path / "r.tif", rgb_pattern(32, 32))
    p.chmod(0)
    with pytest.raises(BadInput, match="permissions"):
        index_raster(p, encoder, IndexParams(tile=32), cache)


_QGIS_SCRIPT = """
import os, sys
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from qgis.core import QgsApplication, QgsVectorLayer
app = QgsApplication([], False)
app.initQgis()
lyr = QgsVectorLayer(sys.argv[1] + "|layername=tiles", "tiles", "ogr")
print(lyr.isValid(), lyr.featureCount(), lyr.crs().authid(), int(lyr.geometryType()))
del lyr
app.exitQgis()
"""


def test_qgis_opens_tiles_gpkg(tmp_path, encoder, cache):
    import importlib.util

    if importlib.util.find_spec("qgis") is None:
        pytest.skip("PyQGIS not installed")
    p = write_raster(tmp_path / "r.tif", rgb_pattern(100, 130), crs="EPSG:3857")
    res = index_raster(p, encoder, IndexParams(tile=64), cache)
    out = subprocess.run(
        [sys.executable, "-c", _QGIS_SCRIPT, str(cache / res.store_id / "tiles.gpkg")],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, QT_QPA_PLATFORM="offscreen"),
    )
    assert out.stdout.split() == ["True", "6", "EPSG:3857", "2"], out.stderr[-500:]
