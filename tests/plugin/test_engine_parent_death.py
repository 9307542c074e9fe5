"""QGIS killed with SIGKILL (no unload, no exit handlers): the engine child started by the plugin exits by
itself (``--parent-pid``), within a few seconds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from tests.conftest import PROJECT_ROOT
from tests.plugin.conftest import real_engine_available
from tests.plugin.test_engine_lifecycle import pid_alive

_HOST = """
import os, sys, time
from pathlib import Path
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, {root!r})
from qgis.core import QgsApplication, QgsSettings
from qgis.PyQt.QtCore import QSettings
app = QgsApplication([], False)
app.initQgis()
from rsitr_qgis.engine_process import EngineManager
from rsitr_qgis.settings import Settings
from tests.bundles import build_synthetic_bundle
base = Path({base!r})
settings = Settings(QgsSettings(str(base / "settings.ini"), QSettings.Format.IniFormat))
settings.set("cache_dir", str(base / "cache"))
settings.set("model_dir", str(build_synthetic_bundle(base / "bundle")))
m = EngineManager(settings, module={module!r})
m.token_file = str(base / "token")
m.ensure_running(timeout=120)
print(m.pid(), flush=True)
time.sleep(300)
"""


def test_engine_child_exits_when_qgis_is_killed(tmp_path, qgis_app):
    module = "engine" if real_engine_available() else "tests.plugin.fake_engine"
    script = _HOST.format(root=str(PROJECT_ROOT), base=str(tmp_path), module=module)
    host = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=PROJECT_ROOT
    )
    child = 0
    try:
        line = host.stdout.readline()
        assert line.strip().isdigit(), host.stderr.read()[-2000:]
        child = int(line)
        assert pid_alive(child)
        host.send_signal(signal.SIGKILL)  # no unload(), no atexit handlers
        host.wait(timeout=10)
        t0 = time.monotonic()
        while pid_alive(child) and time.monotonic() - t0 < 10:
            time.sleep(0.05)
        gone_after = time.monotonic() - t0
        assert not pid_alive(child), "engine child survived QGIS by 10 s"
        assert gone_after < 5, gone_after
    finally:
        if host.poll() is None:
            host.kill()
        if child and pid_alive(child):
            os.kill(child, signal.SIGKILL)
