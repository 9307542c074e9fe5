"""Desktop QGIS under Xvfb with the plugin installed from the zip (scripts/qgis_desktop_check.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.conftest import PROJECT_ROOT


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("xvfb-run") is None or shutil.which("qgis") is None, reason="needs qgis + xvfb")
def test_desktop_qgis_indexes_searches_and_screenshots(tmp_path, shared, plugin_settings):
    report = tmp_path / "report.json"
    shot = tmp_path / "screenshot.png"
    cmd = [
        sys.executable,
        str(PROJECT_ROOT / "scripts" / "qgis_desktop_check.py"),
        "--raster",
        str(shared / "rasters" / "cogeo.tif"),
        "--screenshot",
        str(shot),
        "--report",
        str(report),
        "--timeout",
        "300",
    ]
    if plugin_settings.get("model_dir"):
        cmd += ["--model", plugin_settings.get("model_dir")]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    data = json.loads(report.read_text())
    assert data["ok"] and data["engine_stopped_on_exit"] and data["qgis_exit_code"] == 0
    searched = next(s for s in data["steps"] if s["name"] == "searched")
    assert searched["n_features"] > 0 and all(isinstance(s, float) for s in searched["scores"])
    assert shot.stat().st_size > 10_000
