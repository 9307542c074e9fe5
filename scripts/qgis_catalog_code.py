"""Runs INSIDE desktop QGIS (``qgis --code``) for scripts/qgis_catalog_check.py.

Drives the panel's catalog search: the catalog list from the engine, "Search in: Catalog: all its rasters"
(tiles of every raster ranked together in one layer and the list, zoom to a tile of a raster that is not in the
project), then "Catalog: rasters in the map extent" (only tiles intersecting the extent); a screenshot; a JSON
report; quit. Config: the JSON file named by $RSITR_CHECK_CONFIG (catalog, rasters, n_tiles, report, screenshot).
"""

import json
import os
import sys
import time

from qgis.core import QgsCoordinateTransform, QgsGeometry, QgsProject, QgsRasterLayer, QgsRectangle, QgsSettings
from qgis.PyQt.QtCore import QCoreApplication, QTimer
from qgis.utils import iface

CONFIG = json.load(open(os.environ["RSITR_CHECK_CONFIG"], encoding="utf-8"))
sys.path.insert(0, CONFIG["helpers_dir"])
from qgis_code_steps import StepReport, prepare_main_window, rsitr_plugin, visible_windows, wait, wait_render  # noqa: E402

REPORT = StepReport(CONFIG["report"])
step = REPORT.step
QUERY = "a river crossing farmland"
WATCHDOG_MS = 150_000


def search(dock, k):
    got = []
    slot = lambda layer, err: got.append((layer, err))  # noqa: E731
    dock.searchFinished.connect(slot)
    dock.query_edit.setText(QUERY)
    dock.k_spin.setValue(k)
    dock.search()
    wait(lambda: got, 120, "search")
    dock.searchFinished.disconnect(slot)
    layer, err = got[0]
    assert err == "" and layer is not None, f"search failed: {err}"
    return layer


def in_canvas_crs(feature, layer, canvas):
    g = QgsGeometry(feature.geometry())
    g.transform(QgsCoordinateTransform(layer.crs(), canvas.mapSettings().destinationCrs(), QgsProject.instance()))
    return g


def run():
    canvas = iface.mapCanvas()
    win = prepare_main_window()
    plugin = rsitr_plugin()
    dock = plugin.dock
    rasters = CONFIG["rasters"]
    loaded = []
    for path in rasters[:2]:  # the last raster stays out of the project: its tiles still get footprints
        lyr = QgsRasterLayer(path, os.path.basename(path))
        assert lyr.isValid(), f"invalid raster {path}"
        QgsProject.instance().addMapLayer(lyr)
        loaded.append(lyr)
    plugin.action_dock.trigger() if not dock.isVisible() else None
    wait(lambda: dock.isVisible(), 10, "panel visible")

    lists = []
    dock.catalogsLoaded.connect(lambda cats, err: lists.append((cats, err)))
    dock.start_engine()  # the catalog list is asked for when the engine is running
    wait(lambda: lists, 180, "catalog list after the engine started")
    names = [c["name"] for c in lists[-1][0]]
    step("catalogs on engine start", catalogs=names, error=lists[-1][1], engine_pid=dock.manager.pid())
    assert CONFIG["catalog"] in names, names
    # Refresh is enabled only when a catalog scope is chosen (a disabled button ignores click())
    dock.scope_combo.setCurrentIndex(dock.scope_combo.findData("catalog"))
    assert dock.catalog_refresh.isEnabled(), "Refresh disabled in the catalog scope"
    n_before = len(lists)
    dock.catalog_refresh.click()  # on demand
    wait(lambda: len(lists) > n_before, 60, "catalog list on Refresh")

    assert dock.select_catalog(CONFIG["catalog"])
    t0 = time.monotonic()
    layer = search(dock, min(1000, CONFIG["n_tiles"]))
    feats = sorted(layer.getFeatures(), key=lambda f: f["rank"])
    scores = [f["score"] for f in feats]
    per_raster = {os.path.basename(r): sum(f["raster"] == r for f in feats) for r in rasters}
    top10 = [os.path.basename(f["raster"]) for f in feats[:10]]
    texts = [dock.results_list.item(i).text() for i in range(dock.results_list.count())]
    step(
        "searched all",
        seconds=round(time.monotonic() - t0, 3),
        n_features=len(feats),
        per_raster=per_raster,
        top10_rasters=top10,
        scores_sorted=scores == sorted(scores, reverse=True),
        list_items=len(texts),
        list_first=texts[:3],
        layer=layer.name(),
        layer_crs=layer.crs().authid(),
        empty_geometries=sum(f.geometry().isEmpty() for f in feats),
        message=dock.message_label.text(),
    )

    # zoom to a tile of the raster that is not in the project
    i = next(i for i, f in enumerate(feats) if f["raster"] == rasters[-1])
    dock._on_result_clicked(dock.results_list.item(i))
    wait_render(canvas)
    tile = in_canvas_crs(feats[i], layer, canvas)
    step(
        "zoomed to an unloaded raster's tile",
        raster=os.path.basename(rasters[-1]),
        canvas_center_in_tile=tile.boundingBox().contains(canvas.extent().center()),
    )

    # the map extent: the north-west corner of the second raster (a few of its tiles)
    full = canvas.mapSettings().layerExtentToOutputExtent(loaded[1], loaded[1].extent())
    w, h = full.width() * 0.4, full.height() * 0.4
    canvas.setExtent(QgsRectangle(full.xMinimum(), full.yMaximum() - h, full.xMinimum() + w, full.yMaximum()))
    wait_render(canvas)
    visible = QgsGeometry.fromRect(canvas.mapSettings().visibleExtent())
    dock.scope_combo.setCurrentIndex(dock.scope_combo.findData("catalog_extent"))
    in_extent = search(dock, 1000)
    efeats = list(in_extent.getFeatures())
    n_outside = sum(not in_canvas_crs(f, in_extent, canvas).intersects(visible) for f in efeats)
    rasters_in_extent = sorted({os.path.basename(f["raster"]) for f in efeats})
    wait_render(canvas)
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        QCoreApplication.processEvents()
        time.sleep(0.02)
    win.grab().save(CONFIG["screenshot"], "PNG")
    img = canvas.grab().toImage()
    colours = {
        img.pixel(x, y)
        for y in range(0, img.height(), max(1, img.height() // 40))
        for x in range(0, img.width(), max(1, img.width() // 40))
    }
    step(
        "searched map extent",
        n_features=len(efeats),
        n_outside_extent=n_outside,
        rasters=rasters_in_extent,
        n_same_raster_in_all=per_raster[os.path.basename(rasters[1])],
        canvas_distinct_colours=len(colours),
        message=dock.message_label.text(),
    )
    REPORT["ok"] = True


def report_blockers():
    """Still running after the watchdog delay: record the visible windows (a modal question?) in the report."""
    REPORT["blocked_by"] = visible_windows(skip_main=True)
    step("watchdog")


def main():
    QgsSettings().setValue("projections/promptWhenMultipleTransformsExist", False, QgsSettings.Section.App)
    QTimer.singleShot(WATCHDOG_MS, report_blockers)
    REPORT.run_and_quit(run)


QTimer.singleShot(500, main)
