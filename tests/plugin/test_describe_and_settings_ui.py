"""Describe-tile controller (map tool / context menu path) and the settings dialog."""

from __future__ import annotations

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsPointXY,
    QgsProject,
    QgsRasterLayer,
    QgsWkbTypes,
)

from rsitr_qgis.describe_tool import DescribeController, DescribeMapTool, pick_raster_layer
from rsitr_qgis.settings_dialog import SettingsDialog
from tests.plugin.conftest import wait_until


def test_describe_clicked_point_shows_outline_and_classes(manager, qgis_iface, indexed_raster, project):
    layer = QgsRasterLayer(str(indexed_raster), "utm")
    QgsProject.instance().addMapLayer(layer)
    canvas = qgis_iface.mapCanvas()
    canvas.setLayers([layer])
    canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:4326"))  # clicks come in the canvas CRS
    # a point inside the second tile (x 256..512 px, y 0..256 px of the 1 m UTM raster)
    p_utm = QgsPointXY(500000.0 + 300, 6000000.0 - 100)
    to_canvas = QgsCoordinateTransform(layer.crs(), canvas.mapSettings().destinationCrs(), QgsProject.instance())
    p = to_canvas.transform(p_utm)
    assert pick_raster_layer(canvas, p) is layer
    assert pick_raster_layer(canvas, QgsPointXY(0, 0)) is None

    ctl = DescribeController(qgis_iface, manager)
    tool = DescribeMapTool(canvas, ctl)
    try:
        assert ctl.describe_at(p)
        wait_until(lambda: ctl.last is not None or ctl.last_error, 60, "describe")
        assert ctl.last_error == "" and ctl.last is not None
        assert ctl.last["tile_id"] == 1
        classes = ctl.last["classes"]
        assert classes and all(0.0 <= c["probability"] <= 1.0 for c in classes)
        html = ctl.popup.browser.toHtml()
        assert classes[0]["name"] in html and "%" in html
        outline = ctl.rubber.asGeometry()
        assert outline.type() == QgsWkbTypes.GeometryType.PolygonGeometry
        assert outline.boundingBox().contains(p)
        assert not ctl.describe_at(QgsPointXY(0, 0))  # no raster there: a message, not an exception
        assert "no indexed raster" in ctl.last_error
    finally:
        ctl.unload()
        del tool
        canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:32633"))


def test_settings_dialog_saves(plugin_settings, qgis_parent):
    before = plugin_settings.as_dict()
    dlg = SettingsDialog(plugin_settings, qgis_parent)
    try:
        dlg.k.setValue(42)
        dlg.tile.setValue(224)
        dlg.stride.setValue(112)
        dlg.url.setText("http://gpu-box:9000")
        dlg.mode.setCurrentIndex(dlg.mode.findData("remote"))
        dlg.save()
        assert plugin_settings.get("k") == 42 and plugin_settings.get("tile") == 224
        assert plugin_settings.get("stride") == 112 and plugin_settings.get("mode") == "remote"
        assert plugin_settings.get("url") == "http://gpu-box:9000"
    finally:
        for key, value in before.items():
            plugin_settings.set(key, value)
        dlg.deleteLater()
    assert plugin_settings.get("mode") == "local"
