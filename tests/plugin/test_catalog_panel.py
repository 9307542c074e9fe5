"""The panel searches a catalog (issue 18): "Search in" a catalog of 3 real rasters of ../shared/rasters built with
the engine CLI, searched through the real engine child; results of several rasters ranked together in one layer and
the list; the map extent as the AOI; bad states (no catalog, another model, engine down) one line each."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from qgis.core import (
    Qgis,
    QgsCoordinateReferenceSystem,
    QgsGeometry,
    QgsPointXY,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
)

from rsitr_qgis.catalog_scope import (
    NO_CATALOG,
    SCOPE_CATALOG,
    SCOPE_CATALOG_EXTENT,
    SCOPE_LAYER,
    catalog_model_problem,
    extent_aoi,
)
from rsitr_qgis.dock import SearchDock
from rsitr_qgis.engine_requests import SearchRequest
from rsitr_qgis.errors import EngineError
from rsitr_qgis.results_layer import transform_geometry
from tests.conftest import PROJECT_ROOT
from tests.plugin.conftest import run_search, wait_until

RASTERS = ("cogeo.tif", "naip_2020.tif", "RGB.byte.tif")
NAIP_LONLAT = (-99.186, 47.004, -99.124, 47.037)  # naip_2020.tif's lon/lat bounds (EPSG:26914 raster)


@pytest.fixture
def dock(manager, qgis_iface, project, engine_kind):
    if engine_kind != "real":
        pytest.skip("catalog search needs the real engine (engine/api.py)")
    d = SearchDock(manager, qgis_iface)
    yield d
    d.stop_jobs()
    d.deleteLater()


@pytest.fixture(scope="module")
def catalog(manager, plugin_settings, shared, engine_kind):
    """Catalog 'shared3' of 3 real rasters, built with `python -m engine index-many` into the engine's cache."""
    if engine_kind != "real":
        pytest.skip("catalog search needs the real engine (engine/api.py)")
    env = {**os.environ, "RSITR_CACHE": plugin_settings.get("cache_dir")}
    argv = [sys.executable, "-m", "engine", "index-many", *(str(shared / "rasters" / n) for n in RASTERS)]
    argv += ["--catalog", "shared3", "--model", plugin_settings.get("model_dir"), "--quiet"]
    out = subprocess.run(argv, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return [str((shared / "rasters" / n).resolve()) for n in RASTERS]


def refresh(dock) -> list[dict]:
    got = []
    dock.catalogsLoaded.connect(lambda cats, err: got.append((cats, err)))
    dock.manager.ensure_running()
    dock.refresh_catalogs()
    wait_until(lambda: got, 60, "GET /catalogs")
    assert got[-1][1] == "", got
    return got[-1][0]


def set_scope(dock, scope):
    dock.scope_combo.setCurrentIndex(dock.scope_combo.findData(scope))
    assert dock.scope() == scope


def test_no_catalog_is_one_line(dock, qgis_iface, manager, plugin_settings, tmp_path):
    set_scope(dock, SCOPE_CATALOG)
    dock._fill_catalogs([])  # an engine without catalogs
    assert dock.catalog_combo.currentText() == "(no catalogs)" and not dock.catalog_combo.isEnabled()
    qgis_iface.messageBar().clear_messages()
    layer, err = run_search(dock, "a river", 5)
    assert layer is None and err == NO_CATALOG
    msgs = qgis_iface.messageBar().get_messages(Qgis.MessageLevel.Critical)
    assert msgs and "index-many" in msgs[-1] and "\n" not in msgs[-1]


def test_catalog_search_ranks_several_rasters_together(dock, catalog, qgis_iface):
    cats = refresh(dock)
    entry = next(c for c in cats if c["name"] == "shared3")
    assert entry["n_rasters"] == 3
    set_scope(dock, SCOPE_CATALOG)
    assert dock.select_catalog("shared3") and dock.catalog_combo.isEnabled()
    assert "shared3 (3 rasters" in dock.catalog_combo.currentText()
    cogeo = QgsRasterLayer(catalog[0], "cogeo")  # only one of the rasters is in the project
    QgsProject.instance().addMapLayer(cogeo)
    n_tiles = entry["n_tiles"]
    lists = []
    dock.catalogsLoaded.connect(lambda cats, err: lists.append(err))
    layer, err = run_search(dock, "a river crossing farmland", n_tiles)
    assert err == "" and layer is not None and layer.featureCount() == n_tiles
    assert lists == []  # the engine was asked for its catalogs once (refresh above), not again by each search
    feats = sorted(layer.getFeatures(), key=lambda f: f["rank"])
    scores = [f["score"] for f in feats]
    assert scores == sorted(scores, reverse=True)
    assert {f["raster"] for f in feats} == set(catalog)  # every raster's tiles, ranked together, one layer
    assert all(not f.geometry().isEmpty() for f in feats)  # footprints also for rasters not in the project
    texts = [dock.results_list.item(i).text() for i in range(dock.results_list.count())]
    assert len(texts) == n_tiles and {t.split()[4] for t in texts} == set(RASTERS)
    assert "of 3 rasters" in dock.message_label.text()

    # zoom to a result of a raster that is not in the project: the canvas goes to that tile
    canvas = qgis_iface.mapCanvas()
    canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:4326"))
    i = next(i for i, f in enumerate(feats) if f["raster"].endswith("naip_2020.tif"))
    dock._on_result_clicked(dock.results_list.item(i))
    c = canvas.extent().center()
    assert NAIP_LONLAT[0] < c.x() < NAIP_LONLAT[2] and NAIP_LONLAT[1] < c.y() < NAIP_LONLAT[3]


def test_map_extent_mode_returns_tiles_in_the_extent_only(dock, catalog, qgis_iface):
    refresh(dock)
    set_scope(dock, SCOPE_CATALOG_EXTENT)
    assert dock.select_catalog("shared3")
    canvas = qgis_iface.mapCanvas()
    canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:3857"))
    w, s, e, n = NAIP_LONLAT
    lonlat, mercator = QgsCoordinateReferenceSystem("EPSG:4326"), QgsCoordinateReferenceSystem("EPSG:3857")
    cy = (s + n) / 2  # a small area in the west of the NAIP raster
    west = transform_geometry(
        QgsGeometry.fromRect(QgsRectangle(w, cy - 0.001, w + 0.006, cy + 0.001)), lonlat, mercator
    )
    canvas.setExtent(west.boundingBox())
    visible = canvas.mapSettings().visibleExtent()
    aoi = extent_aoi(visible, canvas.mapSettings().destinationCrs())
    ring = aoi["coordinates"][0]
    expected = transform_geometry(QgsGeometry.fromRect(visible), mercator, lonlat).boundingBox()
    assert min(p[0] for p in ring) == pytest.approx(expected.xMinimum(), abs=1e-9)  # the visible extent in lon/lat
    assert max(p[1] for p in ring) == pytest.approx(expected.yMaximum(), abs=1e-9)
    assert expected.width() < (e - w) / 2 and expected.xMinimum() < w + 0.006  # part of NAIP only

    layer, err = run_search(dock, "a river crossing farmland", 1000)
    assert err == "" and layer is not None
    feats = list(layer.getFeatures())
    assert feats and {f["raster"] for f in feats} == {catalog[1]}  # only NAIP lies in the extent
    extent_ll = QgsGeometry.fromPolygonXY([[QgsPointXY(x, y) for x, y in aoi["coordinates"][0]]])
    for f in feats:
        assert transform_geometry(f.geometry(), layer.crs(), lonlat).intersects(extent_ll)

    set_scope(dock, SCOPE_CATALOG)  # the whole catalog has more NAIP tiles than the western half shows
    everything, _ = run_search(dock, "a river crossing farmland", 1000)
    n_naip = sum(1 for f in everything.getFeatures() if f["raster"] == catalog[1])
    assert len(feats) < n_naip


def test_catalog_of_another_model_and_engine_down(dock, catalog, qgis_iface, plugin_settings, remote_mode):
    cats = refresh(dock)
    entry = next(c for c in cats if c["name"] == "shared3")
    model = entry["model"].split("@")[0]
    assert catalog_model_problem(entry, "", [{"name": model}]) == ""
    assert "needs model" in catalog_model_problem(entry, "", [{"name": "other"}])
    set_scope(dock, SCOPE_CATALOG)
    dock.select_catalog("shared3")
    plugin_settings.set("model", "another-model")
    try:
        qgis_iface.messageBar().clear_messages()
        layer, err = run_search(dock, "a river", 5)
        assert layer is None and err.startswith("Catalog 'shared3' was indexed with model ")
        assert "\n" not in qgis_iface.messageBar().get_messages(Qgis.MessageLevel.Critical)[-1]
    finally:
        plugin_settings.set("model", "")
    with pytest.raises(EngineError, match="either a catalog or rasters"):
        SearchRequest("x", rasters=("a.tif",), catalog="shared3")
    assert SearchRequest("x", catalog="shared3").to_json() == {"query": "x", "k": 20, "catalog": "shared3"}

    from tests.http_files import closed_port_url

    remote_mode.use(closed_port_url().rstrip("/"), "t" * 32)  # an engine that does not answer
    qgis_iface.messageBar().clear_messages()
    layer, err = run_search(dock, "a river", 5)
    assert layer is None and err and "\n" not in err
    assert dock.message_label.text() == err
    set_scope(dock, SCOPE_LAYER)


def test_catalog_search_before_the_catalog_list_arrived(dock, catalog, plugin_settings):
    """Searching a catalog before the panel has the engine's list asks for it first, then searches."""
    plugin_settings.set("catalog", "shared3")  # the catalog searched last
    set_scope(dock, SCOPE_CATALOG)
    assert dock.catalogs == []
    layer, err = run_search(dock, "a large blue lake", 7)
    assert err == "" and layer is not None and layer.featureCount() == 7
    assert dock.catalog_combo.currentData() == "shared3" and dock.search_button.isEnabled()
