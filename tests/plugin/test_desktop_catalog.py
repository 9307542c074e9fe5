"""Desktop QGIS under Xvfb: the panel searches a catalog of 3 real rasters (scripts/qgis_catalog_check.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.conftest import PROJECT_ROOT


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("xvfb-run") is None or shutil.which("qgis") is None, reason="needs qgis + xvfb")
def test_desktop_panel_searches_a_catalog(tmp_path, shared):
    report, shot = tmp_path / "report.json", tmp_path / "catalog_search.png"
    cmd = [sys.executable, str(PROJECT_ROOT / "scripts" / "qgis_catalog_check.py")]
    cmd += ["--screenshot", str(shot), "--report", str(report), "--timeout", "400"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    data = json.loads(report.read_text())
    steps = {s["name"]: s for s in data["steps"]}
    assert data["ok"] and data["qgis_exit_code"] == 0
    assert "desktop" in steps["catalogs on engine start"]["catalogs"]
    every = steps["searched all"]
    assert every["n_features"] == data["catalog_summary"]["n_tiles"] == every["list_items"]
    assert all(n > 0 for n in every["per_raster"].values()) and len(every["per_raster"]) == 3  # ranked together
    assert every["scores_sorted"] and every["empty_geometries"] == 0 and "of 3 rasters" in every["message"]
    assert any(name in every["list_first"][0] for name in every["per_raster"])  # the list names each raster
    assert steps["zoomed to an unloaded raster's tile"]["canvas_center_in_tile"]
    extent = steps["searched map extent"]
    assert extent["n_features"] > 0 and extent["n_outside_extent"] == 0 and extent["rasters"] == ["naip_2020.tif"]
    assert extent["n_features"] < extent["n_same_raster_in_all"]  # tiles of the extent, not the whole raster
    assert extent["canvas_distinct_colours"] > 20 and shot.stat().st_size > 10_000
