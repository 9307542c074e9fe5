"""Desktop test: real QGIS under Xvfb with the plugin enabled in an isolated profile.

Installs the plugin from the built zip (or as links to the checkout with --link), starts
``xvfb-run qgis --profiles-path P --code scripts/qgis_desktop_code.py``, which indexes a raster from
../shared/rasters and runs queries through the plugin's panel; then checks the JSON report, the screenshot
(not blank) and that the engine child is gone after QGIS quit. Exit code 0 when everything passed.
Usage: python scripts/qgis_desktop_check.py [--raster R] [--screenshot docs/screenshot.png]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from qgis_profile import engine_model_setting, make_profile, missing_desktop_tools, qgis_env, run_qgis_code  # noqa: E402

DEFAULT_QUERIES = ["a stadium next to a river", "many buildings and roads", "green trees in a forest"]


def shared_rasters() -> Path:
    return Path(os.environ.get("RSITR_SHARED", ROOT.parent / "shared")) / "rasters"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        return open(f"/proc/{pid}/stat").read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--raster", default=str(shared_rasters() / "cogeo.tif"))
    ap.add_argument("--screenshot", default=str(ROOT / "docs" / "screenshot.png"))
    ap.add_argument("--report", default=None, help="copy the JSON report here")
    ap.add_argument("--query", action="append", help="queries (default: three demo queries)")
    ap.add_argument("--model", help="model bundle folder (default: the shipped one, else a synthetic test bundle)")
    ap.add_argument("--link", action="store_true", help="link the checkout instead of installing the zip")
    ap.add_argument("--describe-top-n", type=int, default=None, help="override the panel's background describes")
    ap.add_argument("--keep", action="store_true", help="keep the temporary profile")
    ap.add_argument("--timeout", type=int, default=600)
    args = ap.parse_args(argv)

    if missing_desktop_tools("qgis_desktop_check"):
        return 2
    raster = Path(args.raster).resolve()
    if not raster.is_file():
        print(f"qgis_desktop_check: raster not found: {raster}", file=sys.stderr)
        return 2

    work = Path(tempfile.mkdtemp(prefix="rsitr-desktop-"))
    try:
        settings = {
            "cache_dir": str(work / "cache"),
            "model_dir": str(Path(args.model).resolve()) if args.model else engine_model_setting(work),
            "allowed_roots": str(raster.parent),
        }
        zip_path = None
        if not args.link:
            sys.path.insert(0, str(ROOT / "scripts"))
            import build_release

            try:  # the release zip exactly as `make plugin` builds it (engine wheel + manifest inside)
                build_release.build_release(work / "release", None)
            except SystemExit as exc:
                print(f"qgis_desktop_check: bad zip: {exc}", file=sys.stderr)
                return 1
            zip_path = work / "release" / "rsitr_qgis.zip"
            # an installed plugin does not know the checkout: point it at the engine's interpreter
            settings["interpreter"] = str(ROOT / ".venv" / "bin" / "python")
        make_profile(work / "profiles", settings, mode="link" if args.link else "zip", zip_path=zip_path)
        screenshot = work / "screenshot.png"
        report = work / "report.json"
        config = {
            "raster": str(raster),
            "queries": args.query or DEFAULT_QUERIES,
            "report": str(report),
            "helpers_dir": str(ROOT / "scripts"),
            "screenshot": str(screenshot),
            "k": 10,
            "repeats": 5,
        }
        if args.describe_top_n is not None:
            config["describe_top_n"] = args.describe_top_n
        (work / "config.json").write_text(json.dumps(config))
        env = qgis_env({"RSITR_CHECK_CONFIG": str(work / "config.json"), "HOME": str(work / "home")})
        (work / "home").mkdir()
        run = run_qgis_code(ROOT / "scripts" / "qgis_desktop_code.py", work / "profiles", env, work, args.timeout)
        if run.timed_out:
            print(f"qgis_desktop_check: QGIS did not quit within {args.timeout} s", file=sys.stderr)
        timed_out, wall = run.timed_out, run.wall_s
        if not report.exists():
            print(
                f"qgis_desktop_check: QGIS exited ({run.returncode}) without a report\n{run.stderr[-3000:]}",
                file=sys.stderr,
            )
            return 1
        data = json.loads(report.read_text())
        data["qgis_exit_code"] = run.returncode
        data["wall_s"] = round(wall, 1)
        pids = [s.get("engine_pid") for s in data["steps"] if s.get("engine_pid")]
        time.sleep(0.5)
        data["engine_stopped_on_exit"] = all(not pid_alive(p) for p in pids)
        if args.report:
            Path(args.report).write_text(json.dumps(data, indent=2))
        ok = data.get("ok") and data["engine_stopped_on_exit"] and screenshot.is_file() and not timed_out
        if screenshot.is_file() and data.get("ok"):
            Path(args.screenshot).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(screenshot, args.screenshot)
        for s in data["steps"]:
            print(f"- {s['name']}: " + ", ".join(f"{k}={v}" for k, v in s.items() if k not in ("name", "t", "runs")))
        if not ok:
            print(
                f"qgis_desktop_check: FAILED: {data.get('error', '')}\n{data.get('traceback', '')}"
                f"\nengine stopped on exit: {data['engine_stopped_on_exit']}\n{run.stderr[-2000:]}",
                file=sys.stderr,
            )
            return 1
        print(f"qgis_desktop_check: OK in {wall:.0f} s; screenshot {args.screenshot}")
        return 0
    finally:
        if args.keep:
            print(f"profile kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
