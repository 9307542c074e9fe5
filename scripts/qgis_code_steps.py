"""Helpers for the scripts that run INSIDE desktop QGIS (``qgis --code``), shared by scripts/qgis_desktop_code.py,
scripts/qgis_catalog_code.py and tests/plugin/install_e2e_code.py: a JSON step report the driver reads, waits
that keep the event loop running, the visible top-level windows, and the finish-and-quit sequence.

The code files find this module through their config's ``helpers_dir`` (``qgis --code`` runs a file without
``__file__``, and the drivers keep PYTHONPATH empty).
"""

import json
import time
import traceback

from qgis.core import QgsProject, QgsSettings
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtWidgets import QApplication, QDockWidget
from qgis.utils import iface, plugins


class StepReport(dict):
    """``{"ok": False, "steps": [...]}`` rewritten to ``path`` after every step, so a hang still leaves a report."""

    def __init__(self, path):
        super().__init__(ok=False, steps=[])
        self.path = path

    def step(self, name, **info):
        self["steps"].append(dict(name=name, t=round(time.time(), 3), **info))
        with open(self.path, "w", encoding="utf-8") as fh:
            json.dump(self, fh, indent=2)

    def run_and_quit(self, run, diagnostics=None, before_exit=None):
        """``run()``; an exception becomes ``error``/``traceback`` (+ ``diagnostics()``), never a modal dialog;
        then ``before_exit()`` (e.g. arm a watchdog) and quit QGIS without save prompts."""
        try:
            run()
        except Exception as exc:  # noqa: BLE001 - reported to the driver
            self["error"] = f"{type(exc).__name__}: {exc}"
            if diagnostics is not None:
                self["diagnostics"] = diagnostics()
            self["traceback"] = traceback.format_exc()
        self.step("finished")
        QgsSettings().setValue("askToSaveMemoryLayers", False, QgsSettings.Section.App)
        QgsProject.instance().setDirty(False)
        if before_exit is not None:
            before_exit()
        iface.actionExit().trigger()


def wait(pred, timeout, what, poll=0.005):
    """Process events until ``pred()`` is true; AssertionError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timeout after {timeout} s: {what}")
        QCoreApplication.processEvents()
        time.sleep(poll)


def settle(seconds=0.5):
    """Process events for ``seconds`` (lets queued signals and repaints run)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QCoreApplication.processEvents()
        time.sleep(0.02)


def wait_render(canvas, timeout=30):
    """Refresh the map canvas and wait until it has rendered."""
    done = []
    canvas.mapCanvasRefreshed.connect(lambda: done.append(1))
    canvas.refresh()
    wait(lambda: done, timeout, "canvas render")


def visible_windows(skip_main=False):
    """The visible top-level windows (class, object name, title, text): what blocks a quit or a step."""
    return [
        f"{type(w).__name__} {w.objectName()} {w.windowTitle()}" + (f": {w.text()}" if hasattr(w, "text") else "")
        for w in QApplication.topLevelWidgets()
        if w.isVisible() and not (skip_main and w is iface.mainWindow())
    ]


def prepare_main_window():
    """The main window at 1280 x 800 in the corner, the Browser and digitizing docks hidden (stable screenshots)."""
    win = iface.mainWindow()
    win.move(0, 0)
    win.resize(1280, 800)
    for dock_widget in win.findChildren(QDockWidget):
        if dock_widget.objectName() in ("Browser", "Browser2", "AdvancedDigitizingTools"):
            dock_widget.hide()
    return win


def rsitr_plugin():
    """The loaded rsitr_qgis plugin instance (AssertionError naming the loaded plugins otherwise)."""
    plugin = plugins.get("rsitr_qgis")
    assert plugin is not None, f"plugin not loaded; loaded: {sorted(plugins)}"
    return plugin
