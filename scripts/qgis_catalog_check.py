"""Desktop test of the panel's catalog search: real QGIS under Xvfb, the real engine on loopback, real rasters.

Builds a catalog of real rasters with ``python -m engine index-many`` into a temporary cache, starts
``xvfb-run qgis --code scripts/qgis_catalog_code.py`` with the plugin linked into an isolated profile (the panel
then searches the catalog: all its rasters, and the rasters in the map extent) and checks its JSON report.
Exit code 0 when everything passed.
Usage: python scripts/qgis_catalog_check.py [--raster R]... [--screenshot docs/catalog_search.png] [--report F]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from qgis_profile import engine_model_setting, make_profile, missing_desktop_tools, qgis_env, run_qgis_code  # noqa: E402

DEFAULT_RASTERS = ("cogeo.tif", "naip_2020.tif", "RGB.byte.tif")
CATALOG = "desktop"


def shared_rasters() -> Path:
    return Path(os.environ.get("RSITR_SHARED", ROOT.parent / "shared")) / "rasters"


def build_catalog(rasters: list[Path], cache: Path, model_dir: str) -> dict:
    """``python -m engine --json index-many RASTERS --catalog desktop`` into ``cache``; its JSON summary."""
    argv = [sys.executable, "-m", "engine", "--json", "index-many", *map(str, rasters), "--catalog", CATALOG, "--quiet"]
    if model_dir:
        argv += ["--model", model_dir]
    out = subprocess.run(
        argv, cwd=ROOT, env={**os.environ, "RSITR_CACHE": str(cache)}, capture_output=True, text=True, timeout=900
    )
    if out.returncode != 0:
        raise SystemExit(f"qgis_catalog_check: index-many failed: {out.stderr.strip()[-500:]}")
    return json.loads(out.stdout)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--raster", action="append", help="rasters of the catalog (default: 3 of ../shared/rasters)")
    ap.add_argument("--screenshot", default=str(ROOT / "docs" / "catalog_search.png"))
    ap.add_argument("--report", default=None, help="copy the JSON report here")
    ap.add_argument("--model", help="model bundle folder (default: the shipped one, else a synthetic test bundle)")
    ap.add_argument("--timeout", type=int, default=400)
    args = ap.parse_args(argv)
    if missing_desktop_tools("qgis_catalog_check"):
        return 2
    rasters = [Path(r).resolve() for r in args.raster or [shared_rasters() / n for n in DEFAULT_RASTERS]]
    missing = [str(r) for r in rasters if not r.is_file()]
    if missing or len(rasters) < 2:
        print(f"qgis_catalog_check: needs >= 2 existing rasters (missing: {missing})", file=sys.stderr)
        return 2

    work = Path(tempfile.mkdtemp(prefix="rsitr-catalog-"))
    try:
        model_dir = str(Path(args.model).resolve()) if args.model else engine_model_setting(work)
        t0 = time.monotonic()
        summary = build_catalog(rasters, work / "cache", model_dir)
        index_s = time.monotonic() - t0
        settings = {
            "cache_dir": str(work / "cache"),
            "model_dir": model_dir,
            "allowed_roots": os.pathsep.join(sorted({str(r.parent) for r in rasters})),
        }
        make_profile(work / "profiles", settings, mode="link")
        report = work / "report.json"
        config = {
            "catalog": CATALOG,
            "rasters": [str(r) for r in rasters],
            "n_tiles": summary["n_tiles"],
            "report": str(report),
            "screenshot": str(work / "catalog_search.png"),
            "helpers_dir": str(ROOT / "scripts"),
        }
        (work / "config.json").write_text(json.dumps(config))
        (work / "home").mkdir()
        env = qgis_env({"RSITR_CHECK_CONFIG": str(work / "config.json"), "HOME": str(work / "home")})
        run = run_qgis_code(ROOT / "scripts" / "qgis_catalog_code.py", work / "profiles", env, work, args.timeout)
        err = run.stderr
        if run.timed_out:
            print(f"qgis_catalog_check: QGIS did not quit within {args.timeout} s", file=sys.stderr)
        if not report.exists():
            print(
                f"qgis_catalog_check: QGIS exited ({run.returncode}) without a report\n{err[-3000:]}", file=sys.stderr
            )
            return 1
        data = json.loads(report.read_text())
        data.update(qgis_exit_code=run.returncode, index_many_s=round(index_s, 1), qgis_s=round(run.wall_s, 1))
        data["catalog_summary"] = {k: summary[k] for k in ("n_rasters", "n_tiles", "index") if k in summary}
        if args.report:
            Path(args.report).write_text(json.dumps(data, indent=2))
        shot = Path(config["screenshot"])
        ok = bool(data.get("ok")) and run.returncode == 0 and shot.is_file()
        if ok:
            Path(args.screenshot).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shot, args.screenshot)
        for s in data["steps"]:
            print(f"- {s['name']}: " + ", ".join(f"{k}={v}" for k, v in s.items() if k not in ("name", "t")))
        if not ok:
            print(f"qgis_catalog_check: FAILED: {data.get('error', '')}\n{data.get('traceback', '')}\n{err[-2000:]}")
            return 1
        print(f"qgis_catalog_check: OK (index-many {index_s:.0f} s, QGIS {data['qgis_s']:.0f} s); {args.screenshot}")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
