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
    # issue 20: find similar from the results list and the canvas right-click, two refine rounds, a styled score map
    steps = {s["name"]: s for s in data["steps"]}
    assert steps["found similar"]["first_score"] > 0.99 and steps["found similar here"]["first_score"] > 0.99
    assert "RSITR: find similar tiles here" in steps["found similar here"]["menu"]
    assert steps["refined 1"]["layer"].endswith("(refined)") and steps["refined 2"]["layer"].endswith("(refined)")
    yes_no = steps["refined 2"]["ranks_yes_no"]
    assert max(yes_no[:2]) < min(yes_no[2:])
    smap = steps["score map"]
    assert smap["renderer"] == "singlebandpseudocolor" and smap["kind"] == "feedback" and 0 <= smap["min"] < smap["max"]
    assert steps["find similar screenshot"]["canvas_distinct_colours"] > 20
