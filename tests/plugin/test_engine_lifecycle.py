"""The engine child: started by the plugin, stopped by unload(), restarted after it is killed mid-search."""

from __future__ import annotations

import os
import signal

from qgis.core import QgsApplication, QgsProject, QgsRasterLayer

from rsitr_qgis import engine_process
from rsitr_qgis.dock import SearchDock
from tests.plugin.conftest import wait_until


def pid_exists(pid: int) -> bool:
    """The pid names a process, running or zombie (not yet reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead too
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_engine_reports_health(manager, engine_kind):
    conn = manager.ensure_running()
    assert conn.url.startswith("http://127.0.0.1:") and conn.token
    assert manager.health["status"] == "ok"
    assert manager.health["provider"].endswith("ExecutionProvider")
    assert manager.pid() and pid_alive(manager.pid())


def test_plugin_unload_stops_the_engine_child(qgis_iface, manager, project):
    from rsitr_qgis.plugin import RsitrPlugin

    own = engine_process.EngineManager(manager.settings, module=manager.module)
    own.token_file = manager.token_file
    engine_process.set_manager(own)  # the plugin's own manager, deleted by unload()
    plugin = RsitrPlugin(qgis_iface)
    plugin.initGui()
    registry = QgsApplication.processingRegistry()
    assert registry.providerById("rsitr") is not None
    ours = plugin.provider is not None  # False when another test's provider was registered first
    assert plugin.dock.objectName() == "rsitr_search_dock"
    # canvas right-click menu gets the describe entry
    from unittest.mock import MagicMock

    from qgis.core import QgsPointXY
    from qgis.PyQt.QtWidgets import QMenu

    menu = QMenu()
    event = MagicMock()
    event.mapPoint.return_value = QgsPointXY(1.0, 2.0)
    plugin._on_context_menu(menu, event)
    assert [a.text() for a in menu.actions()] == ["RSITR: describe tile here"]
    menu.deleteLater()
    engine_process.get_manager().ensure_running()
    pid = own.pid()
    assert pid and pid_alive(pid)
    plugin.unload()
    assert not pid_alive(pid), "engine child still running after unload()"
    if ours:
        assert registry.providerById("rsitr") is None
    assert engine_process._MANAGER is None
    engine_process.set_manager(manager)


def test_killed_engine_mid_search_shows_error_then_next_search_restarts(manager, qgis_iface, indexed_raster, project):
    dock = SearchDock(manager, qgis_iface)
    try:
        layer = QgsRasterLayer(str(indexed_raster), "utm")
        QgsProject.instance().addMapLayer(layer)
        dock.layer_combo.setLayer(layer)
        manager.ensure_running()
        old_pid = manager.pid()
        got = []
        dock.searchFinished.connect(lambda lyr, err: got.append((lyr, err)))
        dock.query_edit.setText("a river")
        dock.search()
        os.kill(old_pid, signal.SIGKILL)  # while the search request is in flight
        wait_until(lambda: got, 60, "search after kill")
        lyr, err = got[0]
        assert lyr is None and err and "\n" not in err  # the engine died before answering
        assert dock.message_label.text() and "Traceback" not in dock.message_label.text()
        wait_until(lambda: not pid_alive(old_pid) and manager.state != "running", 30, "crash detection")
        assert manager.state == "crashed"
        assert "restarts" in dock.status_label.text() or "crashed" in dock.status_label.text()

        got.clear()
        dock.search()
        wait_until(lambda: got, 120, "search after restart")
        lyr, err = got[0]
        assert err == "" and lyr is not None and lyr.featureCount() > 0, err
        assert manager.pid() != old_pid and pid_alive(manager.pid())
    finally:
        dock.stop_jobs()
        dock.deleteLater()


def test_bad_interpreter_is_a_clear_error(plugin_settings, tmp_path):
    from rsitr_qgis.client import EngineError

    m = engine_process.EngineManager(plugin_settings)
    plugin_settings.set("interpreter", str(tmp_path / "no-python"))
    try:
        try:
            m.ensure_running(timeout=20)
            raise AssertionError("should have failed")
        except EngineError as exc:
            assert "interpreter" in str(exc) or "exited" in str(exc)
            assert "\n" not in str(exc)
    finally:
        plugin_settings.set("interpreter", "")
        m.stop()
        m.deleteLater()


def test_child_killed_just_now_is_not_answered_from_the_health_cache(manager, engine_kind):
    """A child SIGKILLed right after a healthy answer, before any event loop pass: the next ``ensure_async`` must
    notice the exit and start a new child, not hand out the dead one's connection from the health cache.

    Qt learns of a child's exit in its SIGCHLD handler, which reaps the child at once (a zombie is a child whose
    handler has not run yet: nobody in this process can know of the exit then). So the test waits until the pid is
    gone, not merely a zombie: waiting for the zombie made it flaky under load (CI, stop 24)."""
    import time

    manager.ensure_running()  # healthy answer: the cache is fresh
    answered_at = time.monotonic()
    old_pid = manager.pid()
    os.kill(old_pid, signal.SIGKILL)
    while pid_exists(old_pid) and time.monotonic() - answered_at < engine_process.HEALTH_TTL_S / 2:
        time.sleep(0.01)  # no Qt events processed here
    assert not pid_exists(old_pid), "Qt's SIGCHLD handler did not reap the killed child"
    assert time.monotonic() - answered_at < engine_process.HEALTH_TTL_S / 2  # the cache is still fresh: not vacuous
    got = []
    manager.ensure_async(lambda conn, err: got.append((conn, err)))
    wait_until(lambda: got, 120, "ensure_async after the kill")
    conn, err = got[0]
    assert err is None and conn is not None, err
    assert manager.pid() != old_pid and pid_alive(manager.pid())
