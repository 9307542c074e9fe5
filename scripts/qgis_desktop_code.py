"""Runs INSIDE desktop QGIS (``qgis --code``) for scripts/qgis_desktop_check.py.

Drives the rsitr_qgis plugin through its own panel code: loads a raster, indexes it, runs queries, checks the
result layer, describes a tile, saves a screenshot of the main window and writes a JSON report, then quits.
Config: the JSON file named by $RSITR_CHECK_CONFIG (raster, queries, report, screenshot).
"""

import json
import os
import statistics
import sys
import time

from qgis.core import QgsApplication, QgsProject, QgsRasterLayer
from qgis.PyQt.QtCore import QCoreApplication, QTimer
from qgis.utils import iface, plugins

CONFIG = json.load(open(os.environ["RSITR_CHECK_CONFIG"], encoding="utf-8"))
sys.path.insert(0, CONFIG["helpers_dir"])
from qgis_code_steps import StepReport, prepare_main_window, rsitr_plugin, visible_windows, wait, wait_render  # noqa: E402

REPORT = StepReport(CONFIG["report"])
step = REPORT.step


def search_and_render(dock, canvas, query, k):
    """Seconds from search() to the result layer drawn on the canvas, and the result layer."""
    got, rendered = [], []
    on_done = lambda layer, err: got.append((layer, err))  # noqa: E731
    on_render = lambda: rendered.append(time.monotonic())  # noqa: E731
    dock.searchFinished.connect(on_done)
    dock.query_edit.setText(query)
    dock.k_spin.setValue(k)
    t0 = time.monotonic()
    dock.search()
    wait(lambda: got, 120, f"search '{query}'")
    t_layer = time.monotonic()
    layer, err = got[0]
    assert err == "" and layer is not None, f"search failed: {err}"
    canvas.mapCanvasRefreshed.connect(on_render)
    canvas.refresh()
    wait(lambda: rendered, 30, "result rendering")
    dock.searchFinished.disconnect(on_done)
    canvas.mapCanvasRefreshed.disconnect(on_render)
    return {
        "query": query,
        "to_layer_s": round(t_layer - t0, 4),
        "to_render_s": round(rendered[0] - t0, 4),
        "timing": {k2: (round(v, 4) if isinstance(v, float) else v) for k2, v in dock.last_timing.items()},
    }, layer


def run():
    canvas = iface.mapCanvas()
    prepare_main_window()
    plugin = rsitr_plugin()
    step("plugin loaded", engine_interpreter=plugin.dock.manager.settings.interpreter())
    assert QgsApplication.processingRegistry().providerById("rsitr") is not None, "no rsitr provider"

    raster = QgsRasterLayer(CONFIG["raster"], os.path.basename(CONFIG["raster"]))
    assert raster.isValid(), f"invalid raster {CONFIG['raster']}"
    QgsProject.instance().addMapLayer(raster)
    canvas.setExtent(canvas.mapSettings().layerExtentToOutputExtent(raster, raster.extent()))
    dock = plugin.dock
    if "describe_top_n" in CONFIG:  # experiments: background descriptions of the results list
        import importlib

        importlib.import_module(type(dock).__module__).DESCRIBE_TOP_N = CONFIG["describe_top_n"]
    from qgis.PyQt.QtCore import QThreadPool

    step("thread pool", max_threads=QThreadPool.globalInstance().maxThreadCount())
    plugin.action_dock.trigger() if not dock.isVisible() else None
    wait(lambda: dock.isVisible(), 10, "panel visible")
    dock.layer_combo.setLayer(raster)

    states = []
    dock.indexFinished.connect(lambda state, err: states.append((state, err)))
    t0 = time.monotonic()
    dock.index_layer()
    wait(lambda: states, 600, "indexing")
    assert states[0][0] == "done", f"indexing: {states[0]}"
    step(
        "indexed",
        seconds=round(time.monotonic() - t0, 2),
        message=dock.message_label.text(),
        engine=dock.status_label.text(),
        engine_pid=dock.manager.pid(),
    )

    runs = []
    for q in CONFIG["queries"]:
        info, layer = search_and_render(dock, canvas, q, CONFIG.get("k", 10))
        runs.append(info)
    # repeat the first query a few times for a warm figure (replaces its layer each time)
    for _ in range(CONFIG.get("repeats", 5)):
        info, layer = search_and_render(dock, canvas, CONFIG["queries"][0], CONFIG.get("k", 10))
        runs.append(info)
    feats = list(layer.getFeatures())
    scores = [f["score"] for f in feats]
    assert feats and all(isinstance(s, float) for s in scores), "result layer has no scored features"
    assert layer.name() == "RSITR: " + CONFIG["queries"][0]
    warm = [r["to_render_s"] for r in runs[len(CONFIG["queries"]) :]]
    step(
        "searched",
        runs=runs,
        n_features=len(feats),
        scores=scores[:10],
        layer=layer.name(),
        renderer=layer.renderer().type(),
        median_query_to_render_s=round(statistics.median(warm), 4),
        first_query_to_render_s=runs[0]["to_render_s"],
        results_in_list=dock.results_list.count(),
    )

    # describe tile at the centre of the best tile (through the map tool's controller)
    best = feats[0]
    from qgis.core import QgsCoordinateTransform

    center = best.geometry().centroid().asPoint()
    tr = QgsCoordinateTransform(layer.crs(), canvas.mapSettings().destinationCrs(), QgsProject.instance())
    plugin.describe.last = None
    plugin.describe.describe_at(tr.transform(center))
    wait(lambda: plugin.describe.last is not None or plugin.describe.last_error, 60, "describe")
    described = plugin.describe.last or {}
    shown_sum = sum(c["probability"] for c in described.get("classes", [])) + described.get("other", 0.0)
    popup_text = plugin.describe.popup.browser.toPlainText() if plugin.describe.popup is not None else ""
    step(
        "described",
        tile_id=described.get("tile_id"),
        scene=described.get("scene"),
        uncertain=described.get("uncertain"),
        classes=described.get("classes", [])[:3],
        other=described.get("other"),
        shown_plus_other=round(shown_sum, 6),
        descriptions=[d["text"] for d in described.get("descriptions", [])],
        error=plugin.describe.last_error,
    )
    assert described.get("tile_id") == best["tile_id"], (described.get("tile_id"), best["tile_id"])
    assert abs(shown_sum - 1.0) < 1e-6 and "other" in popup_text and "Scene: " in popup_text, popup_text
    if plugin.describe.popup is not None:
        popup_png = os.environ.get("RSITR_DESCRIBE_SCREENSHOT") or os.path.join(
            os.path.dirname(CONFIG["screenshot"]), "describe_popup.png"
        )
        wait(lambda: plugin.describe.popup.isVisible(), 10, "describe popup")
        plugin.describe.popup.grab().save(popup_png, "PNG")
        step("describe popup screenshot", path=popup_png)
        plugin.describe.popup.close()

    # the results list gets short descriptions in the background, shortly after the tiles are drawn
    try:
        wait(lambda: "%" in dock.results_list.item(0).text(), 30, "result descriptions")
        step("list described", first_item=dock.results_list.item(0).text())
    except AssertionError as exc:
        step("list described", error=str(exc))

    # screenshot: whole raster with the first query's tiles highlighted, results list in the panel
    root = QgsProject.instance().layerTreeRoot()
    for lyr in QgsProject.instance().mapLayers().values():
        if lyr.name().startswith("RSITR: ") and lyr.id() != layer.id():
            root.findLayer(lyr.id()).setItemVisibilityChecked(False)
            root.findLayer(lyr.id()).setExpanded(False)
    canvas.setExtent(canvas.mapSettings().layerExtentToOutputExtent(raster, raster.extent()))
    wait_render(canvas)
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        QCoreApplication.processEvents()
        time.sleep(0.02)
    pix = iface.mainWindow().grab()
    pix.save(CONFIG["screenshot"], "PNG")
    img = canvas.grab().toImage()
    colours = set()
    for y in range(0, img.height(), max(1, img.height() // 40)):
        for x in range(0, img.width(), max(1, img.width() // 40)):
            colours.add(img.pixel(x, y))
    step(
        "screenshot",
        path=CONFIG["screenshot"],
        window=[pix.width(), pix.height()],
        canvas_distinct_colours=len(colours),
    )
    assert len(colours) > 20, f"map area looks blank ({len(colours)} colours)"
    find_similar_workflow(plugin, dock, canvas, raster)
    REPORT["ok"] = True


def wait_ranking(dock, start, what):
    """Run ``start()`` (a find-similar or refine action) and wait for the panel to draw its result layer."""
    got = []
    on_done = lambda layer, err: got.append((layer, err))  # noqa: E731
    dock.searchFinished.connect(on_done)
    start()
    wait(lambda: got, 120, what)
    dock.searchFinished.disconnect(on_done)
    layer, err = got[0]
    assert err == "" and layer is not None, f"{what}: {err}"
    return layer


def ranks_of(dock, keys):
    """Rank of each (store, tile) in the panel's results; len(results) + 1 for a tile below the top k."""
    order = [(r["store_id"], r["tile_id"]) for r in dock.results]
    return [order.index(k) + 1 if k in order else len(order) + 1 for k in keys]


def find_similar_workflow(plugin, dock, canvas, raster):
    """Issue 20 through the plugin: find similar from the results list's context menu and from the canvas
    right-click, yes/no marks, two refine rounds, a score map layer, screenshot docs/find_similar.png."""
    from qgis.core import QgsCoordinateTransform
    from qgis.gui import QgsMapMouseEvent
    from qgis.PyQt.QtCore import QEvent, QPoint, Qt
    from qgis.PyQt.QtWidgets import QMenu

    rel = dock.relevance
    lst = dock.results_list
    lst.clearSelection()
    lst.item(1).setSelected(True)
    example = lst.item(1).data(Qt.ItemDataRole.UserRole)
    menu = rel.build_list_menu()
    action = next(a for a in menu.actions() if a.objectName() == "rsitr_find_similar")
    layer = wait_ranking(dock, action.trigger, "find similar (results list)")
    first = dock.results[0]
    step(
        "found similar",
        layer=layer.name(),
        example_tile=example["tile_id"],
        first_tile=first["tile_id"],
        first_score=first["score"],
        scores=[r["score"] for r in dock.results[:5]],
    )
    assert first["score"] > 0.99 and first["score"] == max(r["score"] for r in dock.results)

    # the canvas right-click entry (the plugin's describe controller adds it to QGIS's canvas menu)
    target = dock.results[2]
    from rsitr_qgis.results_layer import crs_of, geometry_from_geojson

    centre = geometry_from_geojson(target["geometry"]).centroid().asPoint()
    tr = QgsCoordinateTransform(crs_of(target), canvas.mapSettings().destinationCrs(), QgsProject.instance())
    pixel = canvas.getCoordinateTransform().transform(tr.transform(centre))
    event = QgsMapMouseEvent(
        canvas, QEvent.Type.MouseButtonPress, QPoint(int(pixel.x()), int(pixel.y())), Qt.MouseButton.RightButton
    )
    menu = QMenu(canvas)
    canvas.contextMenuAboutToShow.emit(menu, event)
    names = [a.text() for a in menu.actions()]
    action = next(a for a in menu.actions() if a.objectName() == "rsitr_find_similar_here")
    layer = wait_ranking(dock, action.trigger, "find similar (canvas right-click)")
    step(
        "found similar here",
        menu=names,
        layer=layer.name(),
        clicked_tile=target["tile_id"],
        first_tile=dock.results[0]["tile_id"],
        first_score=dock.results[0]["score"],
    )
    assert dock.results[0]["score"] > 0.99

    # marks: the two best as yes, the two worst as no; two refine rounds
    dock.query_edit.setText(CONFIG["queries"][0])
    n = lst.count()
    yes = [dock.results[0], dock.results[1]]
    no = [dock.results[n - 1], dock.results[n - 2]]
    for res in yes:
        rel.mark(res, True)
    for res in no:
        rel.mark(res, False)
    keys = [(r["store_id"], r["tile_id"]) for r in yes + no]
    refined = wait_ranking(dock, rel.refine, "refine round 1")
    step("refined 1", layer=refined.name(), ranks_yes_no=ranks_of(dock, keys), marks=rel.marks_label.text())
    extra = next(r for r in dock.results[2:] if (r["store_id"], r["tile_id"]) not in rel.marks)
    rel.mark(extra, False)
    keys.append((extra["store_id"], extra["tile_id"]))
    refined = wait_ranking(dock, rel.refine, "refine round 2")
    ranks = ranks_of(dock, keys)
    step("refined 2", layer=refined.name(), ranks_yes_no=ranks, marks=rel.marks_label.text())
    assert max(ranks[:2]) < min(ranks[2:]), ranks

    maps = []
    rel.scoreMapFinished.connect(lambda lyr, err: maps.append((lyr, err)))
    rel.score_map()
    wait(lambda: maps, 120, "score map")
    smap, err = maps[0]
    assert err == "" and smap is not None, err
    step(
        "score map",
        layer=smap.name(),
        renderer=smap.renderer().type(),
        size=[smap.width(), smap.height()],
        min=rel.last_scoremap["min"],
        max=rel.last_scoremap["max"],
        kind=rel.last_scoremap["kind"],
    )
    assert smap.renderer().type() == "singlebandpseudocolor"

    # screenshot: score map over the raster, the refined tiles and the marks, marks in the panel's list
    root = QgsProject.instance().layerTreeRoot()
    for lyr in QgsProject.instance().mapLayers().values():
        keep = lyr.id() in (raster.id(), smap.id(), refined.id()) or lyr.name() == "RSITR marks"
        root.findLayer(lyr.id()).setItemVisibilityChecked(keep)
    extent = canvas.mapSettings().layerExtentToOutputExtent(refined, refined.extent())  # around the best tiles
    extent.scale(1.6)
    canvas.setExtent(extent)
    wait_render(canvas)
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        QCoreApplication.processEvents()
        time.sleep(0.02)
    path = os.environ.get("RSITR_SIMILAR_SCREENSHOT") or os.path.join(
        os.path.dirname(CONFIG["screenshot"]), "find_similar.png"
    )
    iface.mainWindow().grab().save(path, "PNG")
    img = canvas.grab().toImage()
    colours = {
        img.pixel(x, y)
        for y in range(0, img.height(), max(1, img.height() // 40))
        for x in range(0, img.width(), max(1, img.width() // 40))
    }
    step("find similar screenshot", path=path, canvas_distinct_colours=len(colours))
    assert len(colours) > 20, f"map area looks blank ({len(colours)} colours)"


def diagnostics():
    """The panel's and the task manager's state when a step failed."""
    plugin = plugins.get("rsitr_qgis")
    tm = QgsApplication.taskManager()
    return {
        "panel_message": plugin.dock.message_label.text() if plugin and plugin.dock else None,
        "engine_state": plugin.dock.manager.state if plugin and plugin.dock else None,
        "active_tasks": [t.description() for t in tm.activeTasks()],
        "threads": [t.name for t in __import__("threading").enumerate()],
    }


def report_blockers():
    """Still running 8 s after Exit: record the visible windows (a modal question?) in the report."""
    REPORT["exit_blocked_by"] = visible_windows()
    step("exit blocked")


def main():
    REPORT.run_and_quit(run, diagnostics, before_exit=lambda: QTimer.singleShot(8000, report_blockers))


QTimer.singleShot(500, main)
