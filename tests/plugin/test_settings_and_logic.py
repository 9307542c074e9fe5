"""Settings, engine-process helpers, request builders and panel texts (no engine needed)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil

import pytest
from qgis.core import QgsRasterLayer, QgsSettings
from qgis.PyQt.QtCore import QSettings

from rsitr_qgis import client, engine_process, panel_logic, settings
from rsitr_qgis.engine_requests import DescribeRequest, IndexRequest, SearchRequest
from tests.conftest import PROJECT_ROOT


@pytest.fixture
def fresh_settings(tmp_path):
    return settings.Settings(QgsSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))


def test_settings_defaults_and_round_trip(fresh_settings):
    s = fresh_settings
    assert s.get("mode") == "local" and s.get("k") == 20 and s.get("tile") == 256 and s.get("stride") == 256
    s.set("k", "35")
    s.set("threshold", "0.25")
    s.set("mode", "remote")
    s.set("url", "http://gpu-box:8765")
    s.set("token", "abc")
    s.set("cache_dir", "/tmp/cache")
    assert (s.get("k"), s.get("threshold"), s.get("mode")) == (35, 0.25, "remote")
    assert s.as_dict()["url"] == "http://gpu-box:8765" and s.get("token") == "abc"
    s.set("k", "not a number")
    assert s.get("k") == 20
    s.reset("k")
    assert s.get("k") == 20
    with pytest.raises(KeyError):
        s.get("nope")


def test_interpreter_defaults_to_checkout_venv(fresh_settings):
    assert settings.checkout_root() == PROJECT_ROOT
    assert settings.default_interpreter() == str(PROJECT_ROOT / ".venv" / "bin" / "python")
    assert fresh_settings.interpreter() == settings.default_interpreter()
    fresh_settings.set("interpreter", "/opt/py/bin/python3")
    assert fresh_settings.interpreter() == "/opt/py/bin/python3"


def test_interpreter_outside_a_checkout_is_python_on_path(tmp_path):
    plugin_dir = tmp_path / "plugins" / "rsitr_qgis"
    plugin_dir.mkdir(parents=True)
    assert settings.checkout_root(plugin_dir) is None
    assert settings.default_interpreter(plugin_dir) == (shutil.which("python3") or "python3")


def test_resources_found_in_checkout_and_in_installed_plugin(tmp_path):
    assert settings.resources_dir() == PROJECT_ROOT / "resources"
    assert (settings.resources_dir() / "styles" / "search_results.qml").is_file()
    installed = tmp_path / "rsitr_qgis"
    (installed / "resources" / "styles").mkdir(parents=True)
    assert settings.resources_dir(installed) == installed / "resources"


def test_clean_environment_strips_qgis_python_gdal_proj():
    env = {
        "PATH": "/usr/bin",
        "PYTHONPATH": "/usr/share/qgis/python",
        "PYTHONHOME": "/x",
        "GDAL_DATA": "/usr/share/gdal",
        "GDAL_DRIVER_PATH": "/x",
        "PROJ_LIB": "/usr/share/proj",
        "PROJ_DATA": "/p",
        "HOME": "/root",
        "VIRTUAL_ENV": "/v",
        "http_proxy": "http://p:3128",
    }
    out = engine_process.clean_environment(env, cache_dir="/c")
    assert not {
        "PYTHONPATH",
        "PYTHONHOME",
        "GDAL_DATA",
        "GDAL_DRIVER_PATH",
        "PROJ_LIB",
        "PROJ_DATA",
        "VIRTUAL_ENV",
    } & set(out)
    assert out["PATH"] == "/usr/bin" and out["HOME"] == "/root" and out["http_proxy"] == "http://p:3128"
    assert out["RSITR_CACHE"] == "/c" and out["PYTHONUNBUFFERED"] == "1"


def test_ready_line_parsing():
    line = json.dumps({"event": "ready", "url": "http://127.0.0.1:5000", "token_file": "/t"})
    assert engine_process.parse_ready_line(line)["url"] == "http://127.0.0.1:5000"
    assert engine_process.parse_ready_line("INFO: Uvicorn running") is None
    assert engine_process.parse_ready_line('{"event": "log"}') is None
    assert engine_process.parse_ready_line("{broken") is None


def test_free_port_is_bindable():
    import socket

    port = engine_process.free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_engine_command_line(fresh_settings, tmp_path):
    fresh_settings.set("model_dir", "/models/pir")
    m = engine_process.EngineManager(fresh_settings)
    m.add_root_for(str(tmp_path / "data" / "a.tif"))
    program, args = m.command(5555, "/tok")
    assert program.endswith("python")
    assert args[:10] == [
        "-m",
        "engine",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "5555",
        "--token-file",
        "/tok",
        "--allowed-root",
    ]
    roots = [args[i + 1] for i, a in enumerate(args) if a == "--allowed-root"]
    assert str((tmp_path / "data").resolve()) in roots
    assert args[-4:] == ["--model", "/models/pir", "--parent-pid", str(os.getpid())]
    assert not m.needs_root(str(tmp_path / "data" / "b.tif"))
    assert m.needs_root("/elsewhere/c.tif")
    m.deleteLater()


def test_search_request_normalises_and_validates():
    req = SearchRequest("  a stadium  ", k=5, rasters=["/r.tif"], threshold=0.2, model="m")
    assert req.to_json() == {"query": "a stadium", "k": 5, "rasters": ["/r.tif"], "threshold": 0.2, "model": "m"}
    assert req.PATH == "/search" and req.rasters == ("/r.tif",)
    assert "threshold" not in SearchRequest("x", threshold=0.0).to_json()
    assert SearchRequest("x", stores=["s1"], aoi={"type": "Point", "coordinates": [0, 0]}).to_json()["stores"] == ["s1"]
    for bad in ({"query": "   "}, {"query": "x" * 1001}, {"query": "x", "k": 0}, {"query": "x", "k": 1001}):
        with pytest.raises(client.EngineError) as err:
            SearchRequest(**bad)
        assert "\n" not in str(err.value)
    with pytest.raises(dataclasses.FrozenInstanceError):
        req.k = 7


def test_index_and_describe_requests():
    assert IndexRequest("/r.tif", tile=224, stride=112).to_json() == {"raster": "/r.tif", "tile": 224, "stride": 112}
    assert IndexRequest("/r.tif", model="m", bands=[3, 2, 1], gsd=0.5).to_json() == {
        "raster": "/r.tif",
        "tile": 256,
        "stride": 256,
        "model": "m",
        "bands": [3, 2, 1],
        "gsd": 0.5,
    }
    for bad in ({"tile": 4}, {"stride": 0}):
        with pytest.raises(client.EngineError):
            IndexRequest("/r.tif", **bad)
    assert DescribeRequest.for_tile("s", 3, top=2).to_json() == {"top": 2, "store": "s", "tile_id": 3}
    assert DescribeRequest.at_point("/r", 1, 2, crs="EPSG:4326").to_json() == {
        "top": 5,
        "raster": "/r",
        "x": 1.0,
        "y": 2.0,
        "crs": "EPSG:4326",
    }
    with pytest.raises(client.EngineError):
        DescribeRequest(raster="/r")


def test_error_detail_is_one_line():
    raw = json.dumps({"detail": [{"loc": ["body", "k"], "msg": "must be >= 1"}]}).encode()
    assert client._error_detail(raw, "x") == "k: must be >= 1"
    assert client._error_detail(b"<html>\n oops \n</html>", "x") == "<html> oops </html>"


def test_unreachable_engine_is_a_one_line_error():
    port = engine_process.free_port()
    with pytest.raises(client.EngineError) as err:
        client.EngineClient(client.Connection(f"http://127.0.0.1:{port}", "t")).health(timeout=3)
    assert err.value.unreachable and "not reachable" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(client.EngineError):
        client.EngineClient(client.Connection("file:///etc/passwd"))


def test_panel_texts():
    res = {"rank": 2, "score": 0.4312, "tile_id": 7}
    assert panel_logic.format_result(res) == "#2   0.431  tile 7"
    desc = {
        "tile_id": 7,
        "classes": [{"name": "forest", "probability": 0.62}],
        "descriptions": [{"text": "many green trees <b>", "score": 0.3}],
    }
    assert panel_logic.short_description(desc) == "forest 62% - many green trees <b>"
    assert panel_logic.short_description({**desc, "uncertain": True}) == "uncertain - many green trees <b>"
    html = panel_logic.describe_html(desc)
    assert "62.0%" in html and "&lt;b&gt;" in html and "other" in html
    assert panel_logic.job_progress({"state": "running", "progress": 0.5, "done": 2, "total": 4})[:3] == (
        50,
        "running: 2/4 tiles",
        False,
    )
    assert panel_logic.job_progress({"state": "failed", "error": "disk full"})[3] == "disk full"
    health = {"provider": "CPUExecutionProvider", "model": {"name": "pir-lite", "version": "0.1.0"}}
    assert panel_logic.status_text("running", health) == "Engine: running (CPU), model pir-lite 0.1.0"


def test_raster_source_path_rejects_web_and_missing_layers(utm_raster, tmp_path):
    ok = QgsRasterLayer(str(utm_raster), "utm")
    assert panel_logic.raster_source_path(ok) == (str(utm_raster), "")
    xyz = QgsRasterLayer("type=xyz&url=https://tile.openstreetmap.org/{z}/{x}/{y}.png&zmax=19&zmin=0", "OSM", "wms")
    path, why = panel_logic.raster_source_path(xyz)
    assert path is None and "WMS/WMTS/XYZ" in why and "GeoTIFF" in why
    assert panel_logic.raster_source_path(None)[0] is None
    del ok, xyz
