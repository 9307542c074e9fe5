"""The search panel driven like a user: index with progress, search -> result layer + list, errors."""

from __future__ import annotations

import pytest
from qgis.core import Qgis, QgsCoordinateReferenceSystem, QgsProject, QgsRasterLayer

from rsitr_qgis.dock import SearchDock
from tests.plugin.conftest import make_rgb_geotiff, run_search, wait_until


@pytest.fixture
def dock(manager, qgis_iface, project):
    d = SearchDock(manager, qgis_iface)
    yield d
    d.stop_jobs()
    d.deleteLater()


def add_raster(path, name="raster"):
    layer = QgsRasterLayer(str(path), name)
    assert layer.isValid()
    QgsProject.instance().addMapLayer(layer)
    return layer


def test_dock_object_name_and_web_layer_message(dock, qgis_iface):
    assert "rsitr" in dock.objectName()
    xyz = QgsRasterLayer("type=xyz&url=https://tile.openstreetmap.org/{z}/{x}/{y}.png&zmax=19&zmin=0", "OSM", "wms")
    QgsProject.instance().addMapLayer(xyz)
    dock.layer_combo.setLayer(xyz)
    assert "WMS/WMTS/XYZ" in dock.layer_message.text()
    assert not dock.index_button.isEnabled()
    qgis_iface.messageBar().clear_messages()
    dock.search()
    assert "WMS/WMTS/XYZ" in dock.message_label.text()
    assert qgis_iface.messageBar().get_messages(Qgis.MessageLevel.Critical)


def test_index_with_progress_then_search_creates_styled_layer(dock, manager, rasters_dir, qgis_iface):
    path = make_rgb_geotiff(rasters_dir / "panel.tif", 768, 512, epsg=32633, origin=(400000.0, 5000000.0))
    layer = add_raster(path)
    dock.layer_combo.setLayer(layer)
    assert dock.layer_message.text() == "" and dock.index_button.isEnabled()
    states = []
    dock.indexFinished.connect(lambda state, err: states.append((state, err)))
    dock.index_layer()
    wait_until(lambda: states, 120, "indexing")
    assert states == [("done", "")], dock.message_label.text()
    assert dock.progress.value() == 100
    assert "Indexed 6 tiles" in dock.message_label.text()

    result_layer, err = run_search(dock, "a stadium next to a river", k=4)
    assert err == "" and result_layer is not None
    assert result_layer.name() == "RSITR: a stadium next to a river"
    assert result_layer.featureCount() == 4
    assert result_layer.crs().authid() == "EPSG:32633"
    scores = [f["score"] for f in result_layer.getFeatures()]
    assert all(isinstance(s, float) for s in scores) and scores == sorted(scores, reverse=True)
    assert result_layer.renderer().type() == "graduatedSymbol"
    assert dock.results_list.count() == 4 and dock.results_list.item(0).text().startswith("#1")
    assert dock.last_timing["total_s"] > 0

    # same query again replaces the layer; click on a result zooms the (EPSG:4326) canvas to the tile
    again, _ = run_search(dock, "a stadium next to a river", k=2)
    assert QgsProject.instance().mapLayersByName("RSITR: a stadium next to a river") == [again]
    canvas = qgis_iface.mapCanvas()
    canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:4326"))
    dock._on_result_clicked(dock.results_list.item(0))
    ext = canvas.extent()
    assert 13.0 < ext.center().x() < 14.0 and 45.0 < ext.center().y() < 45.3  # UTM 33N x=400 km, y=5000 km
    canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:32633"))

    # descriptions are filled in asynchronously
    wait_until(
        lambda: " - " in dock.results_list.item(0).text() or "%" in dock.results_list.item(0).text(),
        60,
        "result descriptions",
    )


def test_search_errors_show_in_panel(dock, rasters_dir, qgis_iface):
    path = make_rgb_geotiff(rasters_dir / "never_indexed.tif", 256, 256)
    dock.layer_combo.setLayer(add_raster(path))
    layer, err = run_search(dock, "a river")
    assert layer is None and err
    assert "\n" not in dock.message_label.text() and dock.message_label.text()
    layer, err = run_search(dock, "   ")
    assert layer is None and "query" in err.lower()


def test_cancel_indexing(dock, rasters_dir):
    path = make_rgb_geotiff(rasters_dir / "big.tif", 2048, 2048)
    dock.layer_combo.setLayer(add_raster(path))
    states = []
    dock.indexFinished.connect(lambda state, err: states.append(state))
    dock.index_layer()
    wait_until(lambda: dock.job_id is not None or states, 60, "index job to start")
    dock.cancel_index()
    assert states in (["cancelled"], ["done"])  # a fast machine may finish first
    assert dock.job_id is None and dock.index_button.isEnabled()


def test_index_job_is_a_task_in_the_task_manager_and_cancels_on_the_engine(dock, manager, rasters_dir, plugin_settings):
    """The panel's index job shows in QGIS's task manager with progress; cancelling it there (as the task
    manager's cancel button does) cancels the engine job (DELETE /jobs/{id}) and frees the panel."""
    from qgis.core import QgsApplication, QgsTask

    from rsitr_qgis.client import EngineClient

    path = make_rgb_geotiff(rasters_dir / "task_manager.tif", 2048, 2048)  # 4096 tiles of 32 px
    old_tile, old_stride = plugin_settings.get("tile"), plugin_settings.get("stride")
    plugin_settings.set("tile", 32)
    plugin_settings.set("stride", 32)
    try:
        dock.layer_combo.setLayer(add_raster(path, "task manager"))
        states = []
        dock.indexFinished.connect(lambda state, err: states.append((state, err)))
        dock.index_layer()
        wait_until(lambda: dock.job_id is not None or states, 120, "the index job to start")
        assert not states, states
        task = dock.index_task
        manager_tasks = QgsApplication.taskManager().activeTasks()
        assert task in manager_tasks and task.description() == "RSITR: index task_manager.tif"
        assert task.flags() & QgsTask.Flag.CanCancel
        wait_until(lambda: dock.progress.value() > 0 or states, 120, "progress in the panel")
        assert not states, states
        assert task.progress() > 0 and "tiles" in dock.progress.text()
        job_id = dock.job_id
        task.cancel()  # what the task manager's cancel button does
        wait_until(lambda: states, 60, "the panel to hear about the cancel")
        assert states == [("cancelled", "indexing cancelled")]
        assert dock.index_task is None and dock.job_id is None and dock.index_button.isEnabled()
        client = EngineClient(manager.connection())
        wait_until(lambda: client.job(job_id)["state"] in ("cancelled", "done"), 60, "the engine job to stop")
        assert client.job(job_id)["state"] == "cancelled"
    finally:
        plugin_settings.set("tile", old_tile)
        plugin_settings.set("stride", old_stride)


def test_panel_in_remote_mode_goes_through_qgis_network(dock, manager, rasters_dir, remote_mode):
    """Remote mode from the panel: the index task (worker thread) and the search use QGIS's network stack,
    which every QGIS network request passes (QGIS's network logger sees them)."""
    from qgis.core import QgsNetworkAccessManager, QgsNetworkRequestParameters

    path = make_rgb_geotiff(rasters_dir / "remote_panel.tif", 512, 256)
    if manager.add_root_for(str(path)):
        manager.stop()
    conn = manager.ensure_running()
    remote_mode.use(conn.url, conn.token)
    urls: list[str] = []
    signal = QgsNetworkAccessManager.instance().requestAboutToBeCreated[QgsNetworkRequestParameters]
    slot = lambda params: urls.append(params.request().url().toString())  # noqa: E731
    signal.connect(slot)
    try:
        dock.layer_combo.setLayer(add_raster(path, "remote panel"))
        states = []
        dock.indexFinished.connect(lambda state, err: states.append((state, err)))
        dock.index_layer()
        wait_until(lambda: states, 120, "remote indexing")
        assert states == [("done", "")], dock.message_label.text()
        layer, err = run_search(dock, "a river", k=2)
        assert err == "" and layer is not None and layer.featureCount() == 2
        wait_until(lambda: any(u.endswith("/search") for u in urls), 10, "the search in QGIS's network log")
        assert any(u.endswith("/index") for u in urls) and any("/jobs/" in u for u in urls), urls
        assert all(u.startswith(conn.url) for u in urls), urls
    finally:
        signal.disconnect(slot)
