"""Issue 8 through the plugin: every bad input to the Processing algorithms is a QgsProcessingException with a
one-line message (no traceback), and panel errors reach the QGIS message bar."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from qgis.core import Qgis, QgsProcessingException, QgsProcessingFeedback, QgsProject, QgsRasterLayer

from tests.plugin.conftest import make_rgb_geotiff, wait_until


class Feedback(QgsProcessingFeedback):
    def __init__(self):
        super().__init__()
        self.errors: list[str] = []

    def reportError(self, error, fatalError=False):  # noqa: N802, N803
        self.errors.append(error)


QGIS_PREFIX = "Unable to execute algorithm\n"  # added by QGIS's processing.run() before the algorithm's message


def fails_cleanly(alg: str, params: dict, *needles: str) -> str:
    """Run ``alg``; it must raise QgsProcessingException with a one-line message containing every needle."""
    import processing

    fb = Feedback()
    with pytest.raises(QgsProcessingException) as err:
        processing.run(alg, params, feedback=fb)
    message = str(err.value).removeprefix(QGIS_PREFIX)
    assert message and "\n" not in message.strip() and "Traceback" not in message, message
    assert not any("Traceback" in e for e in fb.errors), fb.errors
    text = " ".join([message, *fb.errors]).lower()
    for needle in needles:
        assert needle.lower() in text, (needle, message, fb.errors)
    return message


@pytest.fixture(autouse=True)
def _real_engine_only(engine_kind):
    """The messages checked here come from the real engine (the stdlib fake only follows the happy path)."""
    if engine_kind != "real":
        pytest.skip("needs the real engine")


@pytest.fixture(scope="module")
def bad_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("bad inputs ü")
    (d / "zero.tif").write_bytes(b"")
    (d / "text.tif").write_text("this is not a raster\n")
    make_rgb_geotiff(d / "ok.tif", 256, 256)
    data = (d / "ok.tif").read_bytes()
    (d / "truncated.tif").write_bytes(data[: len(data) // 3])
    return d


@pytest.mark.parametrize("name", ["zero.tif", "text.tif", "missing.tif"])
@pytest.mark.parametrize("alg", ["rsitr:indexraster", "rsitr:searchtiles"])
def test_unreadable_files_fail_cleanly(processing_ready, bad_dir, name, alg):
    params = {"INPUT": str(bad_dir / name), "QUERY": "a river", "K": 3, "OUTPUT": "memory:"}
    needle = {"zero.tif": "zero-byte", "text.tif": "not a readable raster", "missing.tif": "not found"}[name]
    fails_cleanly(alg, params, needle, name)


def test_truncated_geotiff_fails_cleanly(processing_ready, bad_dir):
    """GDAL may open a truncated GeoTIFF (the header is there); the engine then rejects it, one line."""
    fails_cleanly("rsitr:indexraster", {"INPUT": str(bad_dir / "truncated.tif"), "TILE": 64, "STRIDE": 64})


@pytest.mark.parametrize(
    ("params", "needles"),
    [
        ({"QUERY": ""}, ()),
        ({"QUERY": "   \t "}, ("query",)),
        ({"QUERY": "x" * 10_000}, ("query",)),
        ({"K": 0}, ()),
        ({"K": -5}, ()),
        ({"K": 10**9}, ()),
        ({"MODEL": "no-such-model"}, ("unknown model",)),
        ({"THRESHOLD": 5.0}, ()),
    ],
)
def test_bad_search_parameters_fail_cleanly(processing_ready, indexed_raster, params, needles):
    base = {"INPUT": str(indexed_raster), "QUERY": "a river", "K": 3, "OUTPUT": "memory:"}
    fails_cleanly("rsitr:searchtiles", {**base, **params}, *needles)


def test_other_scripts_and_emoji_query_work(processing_ready, indexed_raster, project):
    import processing

    res = processing.run(
        "rsitr:searchtiles",
        {"INPUT": str(indexed_raster), "QUERY": "河流 🌊 rivière ضفة", "K": 2, "OUTPUT": "memory:"},
    )
    assert res["OUTPUT"].featureCount() == 2


def test_bad_index_parameters_fail_cleanly(processing_ready, indexed_raster):
    base = {"INPUT": str(indexed_raster), "TILE": 256, "STRIDE": 256}
    for bad in ({"TILE": 0}, {"TILE": -1}, {"STRIDE": 0}, {"TILE": 10**6}):
        fails_cleanly("rsitr:indexraster", {**base, **bad})
    fails_cleanly("rsitr:indexraster", {**base, "MODEL": "no-such-model"}, "unknown model")


def test_unknown_store_in_describe_fails_cleanly(processing_ready, project):
    from qgis.core import QgsFeature, QgsGeometry, QgsVectorLayer

    from rsitr_qgis.qt_compat import FIELD_INT, FIELD_STRING, make_field

    layer = QgsVectorLayer("Polygon?crs=EPSG:32633", "tiles", "memory")
    pr = layer.dataProvider()
    pr.addAttributes([make_field("store_id", FIELD_STRING), make_field("tile_id", FIELD_INT)])
    layer.updateFields()
    for sid in ("ffffffffffffffff", "../../etc/passwd"):
        f = QgsFeature(layer.fields())
        f.setGeometry(QgsGeometry.fromWkt("POLYGON((0 0, 1 0, 1 1, 0 1, 0 0))"))
        f["store_id"], f["tile_id"] = sid, 0
        pr.addFeature(f)
    fails_cleanly("rsitr:describetiles", {"INPUT": layer, "TOP": 3, "OUTPUT": "memory:"}, "unknown store")


def test_raster_outside_allowed_roots_fails_cleanly(processing_ready, indexed_raster, remote_mode, manager, tmp_path):
    """Remote mode: the engine's allowed roots apply (local mode adds the raster's folder itself)."""
    conn = manager.ensure_running()
    outside = make_rgb_geotiff(Path("/tmp") / f"rsitr_outside_{int(time.time() * 1000)}.tif", 64, 64)
    if not manager.needs_root(str(outside)):
        pytest.skip("/tmp is inside the engine's allowed roots here")
    remote_mode.use(conn.url, conn.token)
    try:
        for alg in ("rsitr:indexraster", "rsitr:searchtiles"):
            fails_cleanly(alg, {"INPUT": str(outside), "QUERY": "a river", "OUTPUT": "memory:"}, "allowed roots")
    finally:
        outside.unlink()


def _index(path: Path) -> dict:
    import processing

    return processing.run("rsitr:indexraster", {"INPUT": str(path), "TILE": 128, "STRIDE": 128})


def test_raster_changed_after_indexing_is_stale_not_reused(processing_ready, rasters_dir, project):
    path = make_rgb_geotiff(rasters_dir / "changing.tif", 256, 256)
    first = _index(path)["STORE_ID"]
    time.sleep(0.01)
    make_rgb_geotiff(path, 256, 256, origin=(500100.0, 6000000.0), pixel=2.0)  # same file, new content
    fails_cleanly("rsitr:searchtiles", {"INPUT": str(path), "QUERY": "a river", "K": 2, "OUTPUT": "memory:"}, "stale")
    second = _index(path)["STORE_ID"]
    assert second != first


def test_corrupted_store_fails_cleanly(processing_ready, rasters_dir, plugin_settings, project):
    path = make_rgb_geotiff(rasters_dir / "to_corrupt.tif", 256, 256)
    sid = _index(path)["STORE_ID"]
    store = Path(plugin_settings.get("cache_dir")) / "stores" / sid
    emb = store / "embeddings.npy"
    data = emb.read_bytes()
    emb.write_bytes(data[:-40])
    try:
        fails_cleanly(
            "rsitr:searchtiles", {"INPUT": str(path), "QUERY": "a river", "K": 2, "OUTPUT": "memory:"}, "corrupt"
        )
        assert emb.read_bytes() == data[:-40]  # reported, not silently rewritten
    finally:
        shutil.rmtree(store)


def test_panel_errors_reach_the_message_bar(manager, qgis_iface, rasters_dir, project):
    from rsitr_qgis.dock import SearchDock

    bar = qgis_iface.messageBar()
    bar.clear_messages()
    dock = SearchDock(manager, qgis_iface)
    try:
        path = make_rgb_geotiff(rasters_dir / "never_indexed_bar.tif", 128, 128)
        layer = QgsRasterLayer(str(path), "never indexed")
        QgsProject.instance().addMapLayer(layer)
        dock.layer_combo.setLayer(layer)
        dock.query_edit.setText("x" * 10_000)
        assert len(dock.query_edit.text()) == 1000  # the panel caps the query at the engine's limit
        got: list[str] = []
        dock.searchFinished.connect(lambda lyr, err: got.append(err))
        for n, query in enumerate(("a river", "   "), start=1):
            dock.query_edit.setText(query)
            dock.search()
            wait_until(lambda n=n: len(got) >= n, 60, "search answer")
        critical = bar.get_messages(Qgis.MessageLevel.Critical) + bar.get_messages(Qgis.MessageLevel.Warning)
        assert len(critical) >= 2, critical
        assert all("\n" not in m and "Traceback" not in m for m in critical), critical
        assert any("not indexed" in m for m in critical) and any("query" in m.lower() for m in critical), critical
    finally:
        dock.stop_jobs()
        dock.deleteLater()


def _write_gdal(path: Path, array, driver: str = "GTiff", epsg: int | None = 32633, nodata=None) -> Path:
    """Write a ``[bands, h, w]`` numpy array with GDAL (PNG/JPEG through a MEM copy: no georeference)."""
    from osgeo import gdal, gdal_array, osr

    bands, h, w = array.shape
    mem = gdal.GetDriverByName("MEM").Create("", w, h, bands, gdal_array.NumericTypeCodeToGDALTypeCode(array.dtype))
    if epsg:
        mem.SetGeoTransform((500000.0, 1.0, 0.0, 6000000.0, 0.0, -1.0))
        srs = osr.SpatialReference()
        srs.ImportFromEPSG(epsg)
        mem.SetProjection(srs.ExportToWkt())
    for b in range(bands):
        mem.GetRasterBand(b + 1).WriteArray(array[b])
        if nodata is not None:
            mem.GetRasterBand(b + 1).SetNoDataValue(nodata)
    gdal.GetDriverByName(driver).CreateCopy(str(path), mem)
    return path


@pytest.fixture(scope="module")
def edge_rasters(tmp_path_factory) -> dict[str, Path]:
    import numpy as np

    d = tmp_path_factory.mktemp("edge rasters ünï 河")
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (3, 96, 96)).astype(np.uint8)
    flt = rgb.astype(np.float32)
    flt[:, :10, :10] = np.nan
    flt[:, -5:, -5:] = np.inf
    return {
        "png_no_georef": _write_gdal(d / "plain photo.png", rgb, "PNG", epsg=None),
        "jpeg_no_georef": _write_gdal(d / "plain photo.jpg", rgb, "JPEG", epsg=None),
        "one_pixel": _write_gdal(d / "1x1 ü.tif", rgb[:, :1, :1]),
        "uint16": _write_gdal(d / "u16.tif", rgb.astype(np.uint16) * 200),
        "int16_signed": _write_gdal(d / "s16.tif", rgb.astype(np.int16) - 300),
        "float_nan_inf": _write_gdal(d / "f32 nan.tif", flt),
        "two_band": _write_gdal(d / "two band.tif", rgb[:2]),
        "all_nodata": _write_gdal(d / "nodata.tif", np.zeros((3, 96, 96), np.uint8), nodata=0),
    }


@pytest.mark.parametrize(
    "name",
    ["png_no_georef", "jpeg_no_georef", "one_pixel", "uint16", "int16_signed", "float_nan_inf", "two_band"],
)
def test_edge_rasters_index_and_search(processing_ready, edge_rasters, name, project):
    """Odd but valid rasters (no georeference, 1x1, 16-bit, NaN/inf, 2 bands, non-ASCII path) just work."""
    import processing

    path = edge_rasters[name]
    out = processing.run("rsitr:indexraster", {"INPUT": str(path), "TILE": 64, "STRIDE": 64})
    assert out["N_TILES"] >= 1 and out["STORE_ID"]
    res = processing.run("rsitr:searchtiles", {"INPUT": str(path), "QUERY": "a river", "K": 2, "OUTPUT": "memory:"})
    assert res["OUTPUT"].featureCount() >= 1


def test_all_nodata_raster_indexes_to_nothing(processing_ready, edge_rasters, project):
    import processing

    out = processing.run("rsitr:indexraster", {"INPUT": str(edge_rasters["all_nodata"]), "TILE": 32, "STRIDE": 32})
    assert out["STORE_ID"]
    res = processing.run(
        "rsitr:searchtiles",
        {"INPUT": str(edge_rasters["all_nodata"]), "QUERY": "a river", "K": 2, "OUTPUT": "memory:"},
    )
    assert res["OUTPUT"].featureCount() == 0


def test_unreadable_permissions_fail_cleanly(processing_ready, bad_dir, monkeypatch):
    """Simulated (the tests run as root, which reads any file): os.access says no."""
    import rsitr_qgis.processing.algorithms as algorithms

    locked = make_rgb_geotiff(bad_dir / "locked.tif", 64, 64)
    real = algorithms.os.access
    monkeypatch.setattr(algorithms.os, "access", lambda p, m: False if str(p) == str(locked) else real(p, m))
    fails_cleanly("rsitr:indexraster", {"INPUT": str(locked), "TILE": 64, "STRIDE": 64}, "permissions")


def test_corrupted_bundle_is_a_clear_engine_error(plugin_settings, tmp_path):
    """The engine refuses a broken bundle at start; the plugin shows its one-line reason."""
    from rsitr_qgis import engine_process
    from rsitr_qgis.client import EngineError
    from tests.bundles import build_synthetic_bundle

    broken = build_synthetic_bundle(tmp_path / "broken", text_dim=16)
    m = engine_process.EngineManager(plugin_settings)
    m.token_file = str(tmp_path / "token")
    old = plugin_settings.get("model_dir")
    plugin_settings.set("model_dir", str(broken))
    try:
        with pytest.raises(EngineError) as err:
            m.ensure_running(timeout=60)
        assert "text embedding dim" in str(err.value) and "\n" not in str(err.value), str(err.value)
        assert m.state == "failed"
    finally:
        plugin_settings.set("model_dir", old)
        m.stop()
        m.deleteLater()


def test_engine_killed_during_indexing_is_reported_then_resumes(
    manager, qgis_iface, rasters_dir, plugin_settings, project
):
    import os
    import signal

    from rsitr_qgis.dock import SearchDock

    path = make_rgb_geotiff(rasters_dir / "kill_while_indexing.tif", 2048, 2048)  # 4096 tiles of 32 px
    old_tile, old_stride = plugin_settings.get("tile"), plugin_settings.get("stride")
    plugin_settings.set("tile", 32)
    plugin_settings.set("stride", 32)
    dock = SearchDock(manager, qgis_iface)
    bar = qgis_iface.messageBar()
    bar.clear_messages()
    try:
        layer = QgsRasterLayer(str(path), "kill while indexing")
        QgsProject.instance().addMapLayer(layer)
        dock.layer_combo.setLayer(layer)
        states: list[tuple[str, str]] = []
        dock.indexFinished.connect(lambda state, err: states.append((state, err)))
        dock.index_layer()
        wait_until(lambda: dock.job_id is not None or states, 120, "the index job to start")
        assert not states, states
        os.kill(manager.pid(), signal.SIGKILL)
        wait_until(lambda: states, 60, "the failure to be reported")
        state, err = states[0]
        assert state == "failed" and err and "\n" not in err, states
        assert bar.get_messages(Qgis.MessageLevel.Critical), "no message bar entry"
        cache = Path(plugin_settings.get("cache_dir")) / "stores"
        manifests = [json.loads(m.read_text()) for m in cache.glob("*/manifest.json")]
        assert not any(m["raster"]["path"] == str(path) and m["state"] == "complete" for m in manifests)
        states.clear()
        dock.index_layer()  # the next action restarts the engine and resumes the partial store
        wait_until(lambda: states, 180, "indexing after restart")
        assert states[0][0] == "done", states
    finally:
        plugin_settings.set("tile", old_tile)
        plugin_settings.set("stride", old_stride)
        dock.stop_jobs()
        dock.deleteLater()
