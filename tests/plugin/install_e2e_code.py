"""Runs INSIDE desktop QGIS (``qgis --code``) for tests/plugin/test_install_e2e.py: a new user's first minutes.

The plugin was just installed from the release zip into a fresh profile; there is no engine. The script presses
"Index layer" (the panel offers "Set up engine…" instead of an error), clicks the offer, screenshots the setup
dialog, chooses the wheel folder (offline packages; the model comes from $RSITR_RELEASE_URL), installs through
the plugin's own QgsTask, waits for the engine, indexes the raster, searches through the panel, screenshots the
highlighted tiles and writes a JSON report. Config: the JSON file named by $RSITR_CHECK_CONFIG.
"""

import json
import os
import sys
import time

from qgis.core import QgsApplication, QgsProject, QgsRasterLayer
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtWidgets import QPushButton
from qgis.utils import iface

CONFIG = json.load(open(os.environ["RSITR_CHECK_CONFIG"], encoding="utf-8"))
sys.path.insert(0, CONFIG["helpers_dir"])
from qgis_code_steps import StepReport, prepare_main_window, rsitr_plugin, settle, wait  # noqa: E402

REPORT = StepReport(CONFIG["report"])
step = REPORT.step


def run():
    canvas = iface.mapCanvas()
    win = prepare_main_window()
    plugin = rsitr_plugin()
    dock = plugin.dock
    settings = dock.manager.settings
    step("plugin loaded", interpreter=settings.interpreter(), engine_dir=str(settings.engine_dir()))

    raster = QgsRasterLayer(CONFIG["raster"], os.path.basename(CONFIG["raster"]))
    assert raster.isValid(), f"invalid raster {CONFIG['raster']}"
    QgsProject.instance().addMapLayer(raster)
    canvas.setExtent(canvas.mapSettings().layerExtentToOutputExtent(raster, raster.extent()))
    plugin.action_dock.trigger() if not dock.isVisible() else None
    wait(lambda: dock.isVisible(), 10, "panel visible")
    dock.layer_combo.setLayer(raster)

    # 1. no engine yet: "Index layer" fails and the message bar offers setup
    states = []
    dock.indexFinished.connect(lambda state, err: states.append((state, err)))
    dock.index_layer()
    wait(lambda: states, 120, "the first (failing) index attempt")
    offers = iface.messageBar().findChildren(QPushButton, "rsitr_setup_offer_button")
    step("no engine", index_state=states[0], offers=len(offers), panel=dock.message_label.text())
    assert states[0][0] == "failed" and offers, f"no setup offer: {states[0]}"
    states.clear()

    # 2. the offer opens the setup dialog
    offers[-1].click()
    wait(lambda: plugin.setup.dialog is not None and plugin.setup.dialog.isVisible(), 30, "setup dialog")
    dialog = plugin.setup.dialog
    settle(0.5)
    dialog.grab().save(CONFIG["dialog_screenshot"], "PNG")
    default_summary = dialog.summary_label.text()
    step(
        "setup dialog",
        summary=default_summary,
        release_url=dialog.release_url.text(),
        python=dialog.python_path(),
        pythons=[c.label() for c in dialog.pythons],
        install_enabled=dialog.install_button.isEnabled(),
    )
    assert dialog.release_url.text() == os.environ["RSITR_RELEASE_URL"].rstrip("/")

    # the wheel folder holds wheels for one Python version: if the finder's first choice is another version (a CI
    # runner with a newer python3 first on PATH), choose the matching interpreter, as a user would with Browse…
    chosen = dialog.pythons[0] if dialog.pythons else None
    if chosen is None or list(chosen.version[:2]) != CONFIG["python_version"]:
        dialog.set_python(CONFIG["python"])
        step("python chosen", python=CONFIG["python"], instead_of=chosen.label() if chosen else None)

    # 3. offline packages from the prepared wheel folder; the model from the release URL (local server)
    dialog.from_wheels.setChecked(True)
    dialog.wheel_dir.setFilePath(CONFIG["wheel_dir"])
    dialog.refresh()
    assert dialog.install_button.isEnabled(), dialog.summary_label.text()
    finished, progress = [], []
    plugin.setup.setupFinished.connect(lambda result, error: finished.append((result, error)))
    t_install = time.time()
    dialog.install_button.click()
    wait(lambda: plugin.setup.task is not None or finished, 10, "setup task")
    task = plugin.setup.task
    in_manager = task is not None and task in QgsApplication.taskManager().tasks()
    if task is not None:
        task.progressChanged.connect(lambda p: progress.append(round(p, 1)))
    wait(lambda: finished, CONFIG.get("setup_timeout", 900), "setup")
    result, error = finished[0]
    step(
        "set up",
        seconds=round(time.time() - t_install, 1),
        error=error,
        message=getattr(result, "message", ""),
        interpreter=settings.get("interpreter"),
        model_dir=settings.get("model_dir"),
        task_in_task_manager=in_manager,
        progress_samples=progress[:: max(1, len(progress) // 20)],
        summary=dialog.summary_label.text(),
    )
    assert not error, error

    # 4. the engine (started by the setup) indexes the raster and answers a query through the panel
    t0 = time.time()
    dock.index_layer()
    wait(lambda: states, 900, "indexing")
    assert states[0][0] == "done", f"indexing: {states[0]}"
    pid = dock.manager.pid()
    step("indexed", seconds=round(time.time() - t0, 1), engine_pid=pid, message=dock.message_label.text())
    try:
        cmdline = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        maps = open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace").read()
        libs = sorted({line.split()[-1] for line in maps.splitlines() if "site-packages" in line})
    except OSError as exc:
        cmdline, libs = [str(exc).encode()], []
    step("engine process", argv0=cmdline[0].decode(), site_package_libs=libs)

    got, rendered = [], []
    dock.searchFinished.connect(lambda layer, err: got.append((layer, err)))
    dock.query_edit.setText(CONFIG["query"])
    dock.k_spin.setValue(10)
    t0 = time.time()
    dock.search()
    wait(lambda: got, 300, "search")
    layer, err = got[0]
    assert err == "" and layer is not None, f"search failed: {err}"
    canvas.mapCanvasRefreshed.connect(lambda: rendered.append(time.time()))
    canvas.refresh()
    wait(lambda: rendered, 60, "result rendering")
    feats = list(layer.getFeatures())
    scores = [f["score"] for f in feats]
    step(
        "searched",
        seconds=round(rendered[0] - t0, 2),
        first_highlighted_at=rendered[0],
        n_features=len(feats),
        scores=scores[:10],
        layer=layer.name(),
    )
    assert feats and all(isinstance(s, float) for s in scores), "result layer has no scored features"
    settle(1.0)
    win.grab().save(CONFIG["result_screenshot"], "PNG")
    REPORT["ok"] = True


QTimer.singleShot(500, lambda: REPORT.run_and_quit(run))
