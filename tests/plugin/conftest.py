"""Fixtures for the plugin tests: isolated settings, a real engine child (fake one only if the engine
package is not there yet), generated rasters, and helpers that spin the Qt event loop."""

from __future__ import annotations

import importlib
import os
import time
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

pytest.importorskip("qgis.core", reason="python3-qgis is not installed")

from qgis.core import QgsApplication, QgsProject, QgsSettings  # noqa: E402
from qgis.PyQt.QtCore import QCoreApplication, QSettings  # noqa: E402


def real_engine_available() -> bool:
    """The real engine (engine/api.py) and the synthetic bundle builder (tests/bundles.py) exist."""
    if os.environ.get("RSITR_PLUGIN_TESTS_FAKE_ENGINE") == "1":
        return False
    if not (PROJECT_ROOT / "engine" / "api.py").is_file() or not (PROJECT_ROOT / "tests" / "bundles.py").is_file():
        return False
    try:
        return hasattr(importlib.import_module("tests.bundles"), "build_synthetic_bundle")
    except Exception:  # noqa: BLE001
        return False


def wait_until(predicate, timeout: float = 60.0, what: str = "condition") -> None:
    """Process Qt events (task callbacks, QProcess signals) until ``predicate()`` or fail."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        QCoreApplication.processEvents()
        time.sleep(0.01)


def run_search(dock, query: str, k: int = 3):
    """Type ``query`` into the panel, search, wait for ``searchFinished``: ``(layer, error)``."""
    got = []
    dock.searchFinished.connect(lambda layer, err: got.append((layer, err)))
    dock.query_edit.setText(query)
    dock.k_spin.setValue(k)
    dock.search()
    wait_until(lambda: got, 120, "search")
    return got[0]


def make_rgb_geotiff(
    path: Path, width: int = 512, height: int = 512, epsg: int = 32633, origin=(500000.0, 6000000.0), pixel: float = 1.0
) -> Path:
    """A small 3-band uint8 GeoTIFF with some structure (GDAL from the system, no numpy needed)."""
    from osgeo import gdal, osr

    drv = gdal.GetDriverByName("GTiff")
    ds = drv.Create(str(path), width, height, 3, gdal.GDT_Byte)
    ds.SetGeoTransform((origin[0], pixel, 0.0, origin[1], 0.0, -pixel))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    ds.SetProjection(srs.ExportToWkt())
    for b in range(3):
        row = bytes(((x * (b + 1) * 7) // 8 + (b * 60)) % 256 for x in range(width))
        data = b"".join(row[(y // 32) % 8 :] + row[: (y // 32) % 8] for y in range(height))
        ds.GetRasterBand(b + 1).WriteRaster(0, 0, width, height, data)
    ds.FlushCache()
    ds = None
    return path


@pytest.fixture(scope="session")
def engine_kind() -> str:
    return "real" if real_engine_available() else "fake"


@pytest.fixture(scope="session")
def plugin_settings(qgis_app, tmp_path_factory, engine_kind):
    from rsitr_qgis.settings import Settings

    base = tmp_path_factory.mktemp("rsitr_plugin")
    qs = QgsSettings(str(base / "settings.ini"), QSettings.Format.IniFormat)
    settings = Settings(qs)
    settings.set("cache_dir", str(base / "cache"))
    settings.set("start_timeout_s", 120)
    if engine_kind == "real":
        bundles = importlib.import_module("tests.bundles")
        bundle = bundles.build_synthetic_bundle(base / "bundle")
        settings.set("model_dir", str(bundle if bundle else base / "bundle"))
    return settings


@pytest.fixture(scope="session")
def manager(plugin_settings, engine_kind, tmp_path_factory):
    """The engine manager used by the panel and Processing (session-wide, like in QGIS)."""
    from rsitr_qgis import engine_process

    m = engine_process.EngineManager(
        plugin_settings, module="engine" if engine_kind == "real" else "tests.plugin.fake_engine"
    )
    m.token_file = str(tmp_path_factory.mktemp("token") / "token")
    engine_process.set_manager(m)
    yield m
    m.stop()
    engine_process.set_manager(None)


@pytest.fixture(scope="session")
def rasters_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("rasters")


@pytest.fixture(scope="session")
def utm_raster(rasters_dir) -> Path:
    """512 x 512 px, EPSG:32633 (4 tiles of 256 px)."""
    return make_rgb_geotiff(rasters_dir / "utm33.tif")


@pytest.fixture(scope="session")
def indexed_raster(manager, utm_raster) -> Path:
    from rsitr_qgis.client import EngineClient
    from rsitr_qgis.engine_requests import IndexRequest

    manager.add_root_for(str(utm_raster))
    if manager.is_running():
        manager.stop()
    client = EngineClient(manager.ensure_running())
    job_id = client.index(IndexRequest(str(utm_raster), tile=256, stride=256))
    deadline = time.monotonic() + 120
    while True:
        job = client.job(job_id)
        if job["state"] in ("done", "failed", "cancelled"):
            break
        assert time.monotonic() < deadline, f"indexing did not finish: {job}"
        time.sleep(0.1)
    assert job["state"] == "done", job
    return utm_raster


@pytest.fixture
def project(qgis_new_project):
    """A clean project; removes its layers afterwards (layers must not outlive exitQgis)."""
    yield qgis_new_project
    qgis_new_project.removeAllMapLayers()
    QgsProject.instance().setCrs(QgsProject.instance().crs())


_PROVIDER = []  # keep the Python provider alive, as the plugin object does (else sip drops its subclass)


@pytest.fixture
def processing_ready(qgis_processing, manager):
    """Processing initialised and the rsitr provider registered."""
    from rsitr_qgis.processing.provider import RsitrProvider

    registry = QgsApplication.processingRegistry()
    if not _PROVIDER:
        _PROVIDER.append(RsitrProvider())
        registry.addProvider(_PROVIDER[0])
    yield _PROVIDER[0]


TEST_MASTER_PASSWORD = "rsitr-plugin-tests"


@pytest.fixture(scope="session")
def auth_db(qgis_app):
    """QGIS's authentication database of the test profile, unlocked with the tests' master password.

    The test profile (pytest-qgis, ``.qgis-settings/`` of the checkout) is never a user's profile; a database
    locked with another master password there is erased and set up again.
    """
    manager = QgsApplication.authManager()
    path = QgsApplication.qgisAuthDatabaseFilePath()
    assert ".qgis-settings" in path or "pytest" in path or path.startswith("/tmp"), f"not a test profile: {path}"
    if not manager.masterPasswordIsSet() and not manager.setMasterPassword(TEST_MASTER_PASSWORD, True):
        manager.eraseAuthenticationDatabase(False)
        assert manager.setMasterPassword(TEST_MASTER_PASSWORD, True), "cannot unlock the test auth database"
    return manager


class RemoteMode:
    """Switch the plugin settings to remote mode (URL + token stored the way the settings dialog does)."""

    def __init__(self, settings):
        self.settings = settings

    def use(self, url: str, token: str = "") -> None:
        from rsitr_qgis.remote_token import forget_token, save_token

        self.settings.set("mode", "remote")
        self.settings.set("url", url)
        if token:
            save_token(self.settings, token)
        else:
            forget_token(self.settings)

    def restore(self) -> None:
        from rsitr_qgis.remote_token import forget_token

        forget_token(self.settings)
        self.settings.set("mode", "local")


@pytest.fixture
def remote_mode(plugin_settings, auth_db):
    mode = RemoteMode(plugin_settings)
    yield mode
    mode.restore()
