"""``rsitr:indexcatalog`` through processing.run (real QGIS offscreen, real engine child on 127.0.0.1): 3 real rasters
of ../shared/rasters become one catalog (GET /catalogs, its members, their tile counts), a catalog search ranks tiles
of several rasters, an open search panel lists the new catalog; cancel and bad input are one line each."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from qgis.core import QgsProcessingException, QgsProcessingFeedback, QgsProject, QgsRasterLayer

from rsitr_qgis import engine_process
from rsitr_qgis.client import EngineClient
from rsitr_qgis.dock import SearchDock
from rsitr_qgis.engine_requests import SearchRequest
from tests.conftest import PROJECT_ROOT
from tests.plugin.conftest import wait_until
from tests.plugin.test_processing_bad_input import QGIS_PREFIX, fails_cleanly

RASTERS = ("naip_2020.tif", "RGB.byte.tif", "cogeo.tif")
ALG = "rsitr:indexcatalog"
QGIS_PROCESS = shutil.which("qgis_process.bin") or shutil.which("qgis_process")
sys.path.insert(0, str(PROJECT_ROOT / "scripts"))  # qgis_profile


@pytest.fixture(autouse=True)
def _real_engine_only(engine_kind):
    if engine_kind != "real":
        pytest.skip("catalogs need the real engine (engine/api.py)")


@pytest.fixture
def shared_rasters(shared) -> list[str]:
    return [str((shared / "rasters" / n).resolve()) for n in RASTERS]


@pytest.fixture
def own_catalogs(plugin_settings):
    """Removes the catalogs these tests write (qgis_*), so that later tests see the engine's catalogs as before."""
    yield
    from engine.catalog import remove_catalog

    for manifest in Path(plugin_settings.get("cache_dir")).rglob("catalogs/qgis_*/catalog.json"):
        remove_catalog(manifest.parent.name, manifest.parent.parent)


class ProgressFeedback(QgsProcessingFeedback):
    """Records progress and info lines; cancels itself at the first progress report when ``cancel_at_start``."""

    def __init__(self, cancel_at_start: bool = False):
        super().__init__()
        self.cancel_at_start = cancel_at_start
        self.infos: list[str] = []
        self.progress_values: list[float] = []
        self.progressChanged.connect(self._on_progress)

    def _on_progress(self, value: float) -> None:
        self.progress_values.append(value)
        if self.cancel_at_start:
            self.cancel()

    def pushInfo(self, info):  # noqa: N802
        self.infos.append(info)
        super().pushInfo(info)


def test_layers_become_a_searchable_catalog(
    processing_ready, manager, plugin_settings, shared_rasters, project, qgis_iface, own_catalogs
):
    import processing

    panel = SearchDock(manager, qgis_iface)  # an open search panel: its catalog list must show the new catalog
    layers = [QgsRasterLayer(p, Path(p).stem) for p in shared_rasters[:2]]
    QgsProject.instance().addMapLayers(layers)
    feedback = ProgressFeedback()
    params = {"INPUT": [*layers, shared_rasters[2]], "NAME": "qgis_three", "TILE": 256, "STRIDE": 256}
    out = processing.run(ALG, params, feedback=feedback)

    client = EngineClient(manager.ensure_running())
    entry = next(c for c in client.catalogs() if c["name"] == "qgis_three")
    assert out == {"CATALOG": "qgis_three", "N_RASTERS": 3, "N_TILES": entry["n_tiles"]}
    assert entry["n_rasters"] == 3
    assert feedback.progress_values and max(feedback.progress_values) == 100
    assert any(f"'qgis_three': 3 rasters, {entry['n_tiles']} tiles" in line for line in feedback.infos)
    # members: the three rasters, in order, each with its store's tile count
    (manifest_path,) = Path(plugin_settings.get("cache_dir")).rglob("catalogs/qgis_three/catalog.json")
    members = json.loads(manifest_path.read_text())["members"]
    assert [m["raster"] for m in members] == shared_rasters
    stores = {s["store_id"]: s for s in client.stores()}
    assert all(m["n_tiles"] == stores[m["store_id"]]["n_tiles"] > 0 for m in members)
    assert sum(m["n_tiles"] for m in members) == entry["n_tiles"]
    assert all(stores[m["store_id"]]["raster"] == m["raster"] for m in members)

    found = client.search(SearchRequest("a river crossing farmland", k=entry["n_tiles"], catalog="qgis_three"))
    assert len(found["results"]) == entry["n_tiles"]
    assert {r["raster"] for r in found["results"]} == set(shared_rasters)  # tiles of all three, ranked together

    wait_until(lambda: panel.catalog_combo.findData("qgis_three") >= 0, 30, "the panel listing the new catalog")
    panel.stop_jobs()
    panel.deleteLater()


def test_list_file_source_and_cancel(processing_ready, manager, shared_rasters, tmp_path, own_catalogs):
    """A list file names the rasters (32 px tiles every 8 px: new stores, ~23,000 tiles); cancelling at the first
    progress report cancels the engine job (DELETE /jobs/{id}) and writes no catalog."""
    import processing

    listing = tmp_path / "rasters.txt"
    listing.write_text("# two rasters\n" + "\n".join(shared_rasters[1:]) + "\n")
    feedback = ProgressFeedback(cancel_at_start=True)
    params = {"LIST_FILE": str(listing), "NAME": "qgis_cancelled", "TILE": 32, "STRIDE": 8}
    with pytest.raises(QgsProcessingException) as err:
        processing.run(ALG, params, feedback=feedback)
    message = str(err.value).removeprefix(QGIS_PREFIX)
    assert "\n" not in message and "'qgis_cancelled' not written: indexing cancelled" in message, message
    (job_id,) = [line.split()[2].rstrip(":") for line in feedback.infos if line.startswith("catalog job ")]
    client = EngineClient(manager.ensure_running())
    wait_until(lambda: client.job(job_id)["state"] != "running", 30, "the engine job to end")
    assert client.job(job_id)["state"] == "cancelled", client.job(job_id)
    assert "qgis_cancelled" not in {c["name"] for c in client.catalogs()}


@pytest.mark.parametrize(
    ("params", "needles"),
    [
        ({"NAME": "bad/name"}, ("catalog names are 1-64",)),
        ({"NAME": "x" * 65}, ("catalog names are 1-64",)),
        ({"NAME": "ok", "INPUT": []}, ("no rasters",)),
        ({"NAME": "ok", "INPUT": None, "LIST_FILE": "/nonexistent/list.txt"}, ("not found",)),
    ],
)
def test_bad_input_is_one_line(processing_ready, shared_rasters, params, needles):
    base = {"INPUT": shared_rasters[:1]}
    fails_cleanly(ALG, {**base, **params}, *needles)


def test_unreadable_raster_is_one_line(processing_ready, tmp_path):
    (tmp_path / "text.tif").write_text("this is not a raster\n")
    fails_cleanly(ALG, {"INPUT": [str(tmp_path / "text.tif")], "NAME": "bad_raster"}, "not a readable raster")


def test_unreadable_raster_in_a_folder_is_one_line(processing_ready, tmp_path):
    """The engine finds the broken raster (a folder source): the failed job's error, one line."""
    (tmp_path / "text.tif").write_text("this is not a raster\n")
    fails_cleanly(ALG, {"FOLDER": str(tmp_path), "NAME": "bad_folder"}, "text.tif")


def test_engine_down_is_one_line(processing_ready, shared_rasters, remote_mode):
    remote_mode.use(f"http://127.0.0.1:{engine_process.free_port()}")
    fails_cleanly(ALG, {"INPUT": shared_rasters[:1], "NAME": "down"}, "not reachable")


def test_catalog_request_body_mirrors_the_engine():
    from rsitr_qgis.engine_requests import CatalogRequest
    from rsitr_qgis.errors import EngineError

    body = CatalogRequest(" a.b_c-1 ", ["/r/x.tif", "/r/list.txt"], tile=224, stride=112, model="m").to_json()
    assert body == {"name": "a.b_c-1", "sources": ["/r/x.tif", "/r/list.txt"], "tile": 224, "stride": 112, "model": "m"}
    for name in ("", "-x", "a/b", "x" * 65, "naïve"):
        with pytest.raises(EngineError, match="1-64 letters"):
            CatalogRequest(name, ["/r/x.tif"])
    with pytest.raises(EngineError, match="No rasters"):
        CatalogRequest("ok", [])
    with pytest.raises(EngineError, match="Tile size"):
        CatalogRequest("ok", ["/r/x.tif"], tile=8)


@pytest.mark.skipif(QGIS_PROCESS is None, reason="qgis_process not installed")
def test_qgis_process_builds_a_catalog(tmp_path, plugin_settings, shared_rasters):
    """The algorithm from the command line (no GUI: no panel to refresh), two rasters repeated as INPUT=."""
    from qgis_profile import make_profile, qgis_env

    settings = {"model_dir": plugin_settings.get("model_dir"), "cache_dir": str(tmp_path / "cache")}
    make_profile(tmp_path / "profiles", {**settings, "allowed_roots": str(Path(shared_rasters[0]).parent)}, mode="link")
    env = {"QT_QPA_PLATFORM": "offscreen", "QGIS_CUSTOM_CONFIG_PATH": str(tmp_path / "profiles"), "HOME": str(tmp_path)}
    argv = [QGIS_PROCESS, "run", ALG, "--", *(f"INPUT={p}" for p in shared_rasters[1:]), "NAME=cli_two"]
    out = subprocess.run(
        argv, env=qgis_env({**env, "QGIS_OPTS": ""}), cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stdout[-1500:] + out.stderr[-1500:]
    assert "CATALOG:\tcli_two" in out.stdout and "N_RASTERS:\t2" in out.stdout, out.stdout[-1500:]
    (manifest,) = (tmp_path / "cache").rglob("catalogs/cli_two/catalog.json")
    members = json.loads(manifest.read_text())["members"]
    assert [m["raster"] for m in members] == shared_rasters[1:]
    assert f"N_TILES:\t{sum(m['n_tiles'] for m in members)}" in out.stdout
