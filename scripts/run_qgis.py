"""make qgis: desktop QGIS with an isolated profile (.qgis-profile/), the plugin enabled (linked to this
checkout, so edits show up on restart), the demo raster loaded and the search panel open.

Needs a display (DISPLAY or WAYLAND_DISPLAY); headless machines: use scripts/qgis_desktop_check.py.
Usage: python scripts/run_qgis.py [--raster R] [--profile-dir .qgis-profile]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from qgis_profile import engine_model_setting, make_profile, qgis_env  # noqa: E402

OPEN_PANEL = """
from qgis.PyQt.QtCore import QTimer
from qgis.utils import plugins


def _open_panel():
    plugin = plugins.get("rsitr_qgis")
    if plugin is not None and plugin.dock is not None:
        plugin.dock.show()
        plugin.dock.raise_()


QTimer.singleShot(1000, _open_panel)
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--raster", default=str(Path(os.environ.get("RSITR_SHARED", ROOT.parent / "shared")) / "rasters" / "cogeo.tif")
    )
    ap.add_argument("--profile-dir", type=Path, default=ROOT / ".qgis-profile")
    args = ap.parse_args(argv)
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        print(
            "make qgis: no display; run `python scripts/qgis_desktop_check.py` for the headless check", file=sys.stderr
        )
        return 2
    if shutil.which("qgis") is None:
        print("make qgis: 'qgis' not found (apt-get install qgis)", file=sys.stderr)
        return 2
    work = args.profile_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    raster = Path(args.raster).resolve()
    settings = {"model_dir": engine_model_setting(work), "allowed_roots": str(raster.parent)}
    make_profile(work / "profiles", settings, mode="link")
    code = work / "open_panel.py"
    code.write_text(OPEN_PANEL)
    cmd = ["qgis", "--noversioncheck", "--profiles-path", str(work / "profiles"), "--code", str(code)]
    if raster.is_file():
        cmd.append(str(raster))
    print(" ".join(cmd))
    return subprocess.call(cmd, env=qgis_env())


if __name__ == "__main__":
    sys.exit(main())
