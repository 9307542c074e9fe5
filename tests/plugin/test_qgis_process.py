"""The Processing algorithms from the command line (qgis_process), engine child ended when it exits."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import pytest

from tests.conftest import PROJECT_ROOT

sys.path.insert(0, str(PROJECT_ROOT / "scripts"))

QGIS_PROCESS = shutil.which("qgis_process.bin") or shutil.which("qgis_process")


@pytest.mark.skipif(QGIS_PROCESS is None, reason="qgis_process not installed")
def test_qgis_process_index_and_search(tmp_path, plugin_settings, utm_raster):
    from qgis_profile import make_profile, qgis_env

    settings = {
        "model_dir": plugin_settings.get("model_dir"),
        "cache_dir": str(tmp_path / "cache"),
        "allowed_roots": str(utm_raster.parent),
    }
    make_profile(tmp_path / "profiles", settings, mode="link")
    # Debian's qgis_process wrapper adds --noversioncheck, which qgis_process rejects: call the binary
    env = qgis_env(
        {
            "QT_QPA_PLATFORM": "offscreen",
            "QGIS_CUSTOM_CONFIG_PATH": str(tmp_path / "profiles"),
            "HOME": str(tmp_path),
            "QGIS_OPTS": "",
        }
    )

    def run(*args):
        return subprocess.run(
            [QGIS_PROCESS, "run", *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240
        )

    out = run("rsitr:indexraster", "--", f"INPUT={utm_raster}", "TILE=256", "STRIDE=256")
    assert out.returncode == 0, out.stdout[-1500:] + out.stderr[-1500:]
    assert "N_TILES:\t4" in out.stdout
    gpkg = tmp_path / "found.gpkg"
    out = run("rsitr:searchtiles", "--", f"INPUT={utm_raster}", "QUERY=a river", "K=3", f"OUTPUT={gpkg}")
    assert out.returncode == 0, out.stdout[-1500:] + out.stderr[-1500:]
    from osgeo import ogr

    ds = ogr.Open(str(gpkg))
    lyr = ds.GetLayer(0)
    assert lyr.GetFeatureCount() == 3
    assert [f.GetField("rank") for f in lyr] == [1, 2, 3]
    ds = None
    # no engine child left behind by qgis_process
    token_dir = str(tmp_path / "profiles")
    deadline = time.monotonic() + 15  # SIGTERM sent at exit; uvicorn needs a moment to shut down
    while True:
        leftover = subprocess.run(["pgrep", "-f", f"token-file {token_dir}"], capture_output=True, text=True)
        if leftover.stdout.strip() == "" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert leftover.stdout.strip() == "", f"engine children left: {leftover.stdout}"
