"""An isolated QGIS profile with the rsitr_qgis plugin enabled (used by make qgis and the desktop check)."""

from __future__ import annotations

import configparser
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def install_plugin(plugins: Path, mode: str = "link", zip_path: Path | None = None) -> Path:
    """Put the plugin into ``plugins/rsitr_qgis``.

    ``link``: a folder of symlinks to the checkout's files (+ metadata.txt and resources), so edits show up
    on restart and the plugin sees the checkout (default interpreter: ``.venv``).
    ``zip``: extract the built plugin zip, as the Plugin Manager does (set the interpreter explicitly).
    """
    target = plugins / "rsitr_qgis"
    if target.is_symlink() or target.is_file():
        target.unlink()
    elif target.is_dir():
        shutil.rmtree(target)
    plugins.mkdir(parents=True, exist_ok=True)
    if mode == "zip":
        with zipfile.ZipFile(zip_path) as zf:
            zf.extractall(plugins)
        return target
    target.mkdir()
    for entry in sorted((ROOT / "rsitr_qgis").iterdir()):
        if entry.name in ("__pycache__",) or entry.suffix == ".pyc":
            continue
        (target / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    (target / "metadata.txt").symlink_to(ROOT / "metadata.txt")
    return target


def make_profile(
    profiles_path: Path, settings: dict[str, str] | None = None, mode: str = "link", zip_path: Path | None = None
) -> Path:
    """Create ``profiles_path/profiles/default`` with the plugin installed and enabled.

    ``settings`` are written under ``[rsitr]`` (the plugin's QgsSettings keys). Returns the profile folder.
    """
    profile = profiles_path / "profiles" / "default"
    install_plugin(profile / "python" / "plugins", mode, zip_path)
    ini_path = profile / "QGIS" / "QGIS3.ini"
    ini_path.parent.mkdir(parents=True, exist_ok=True)
    ini = configparser.ConfigParser(interpolation=None)
    ini.optionxform = str
    if ini_path.exists():
        ini.read(ini_path, encoding="utf-8")
    for section in ("PythonPlugins", "rsitr", "qgis", "app"):
        if not ini.has_section(section):
            ini.add_section(section)
    ini["PythonPlugins"]["rsitr_qgis"] = "true"
    ini["PythonPlugins"]["processing"] = "true"
    ini["qgis"]["checkVersion"] = "false"
    ini["qgis"]["allowVersionCheck"] = "false"
    ini["qgis"]["showTips322"] = "false"
    ini["qgis"]["askToSaveProjectChanges"] = "false"
    ini["app"]["askToSaveMemoryLayers"] = "false"  # else quitting asks about the (memory) result layers
    for key, value in (settings or {}).items():
        ini["rsitr"][key] = str(value)
    with ini_path.open("w", encoding="utf-8") as fh:
        ini.write(fh, space_around_delimiters=False)
    return profile


def qgis_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for the desktop qgis: no venv on PYTHONPATH/PATH (the plugin needs only the engine's
    interpreter, which it starts itself), a real display platform."""
    env = dict(os.environ)
    for key in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "QT_QPA_PLATFORM", "PYTHONDONTWRITEBYTECODE"):
        env.pop(key, None)
    venv_bin = str(ROOT / ".venv" / "bin")
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p and p != venv_bin)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra or {})
    return env


def engine_model_setting(work: Path) -> str:
    """The model bundle for the engine: the shipped default if there is one, else a synthetic test bundle."""
    try:
        from engine.config import default_model_dir

        found = default_model_dir()
        if found is not None and (found / "model.json").is_file():
            return ""  # the engine picks it itself
    except ImportError:
        pass
    from tests.bundles import build_synthetic_bundle

    return str(build_synthetic_bundle(work / "synthetic_bundle"))


@dataclass
class QgisRun:
    """How a ``qgis --code`` run under Xvfb ended."""

    returncode: int | None
    stderr: str
    wall_s: float
    timed_out: bool


def run_qgis_code(code: Path, profiles: Path, env: dict[str, str], cwd: Path, timeout: float) -> QgisRun:
    """Desktop QGIS under ``xvfb-run`` with the profiles folder, running ``code`` (a file that reports and quits);
    after ``timeout`` s xvfb-run, Xvfb and qgis (one process session) get SIGTERM."""
    cmd = ["xvfb-run", "-a", "-s", "-screen 0 1280x800x24", "qgis", "--nologo", "--noversioncheck"]
    cmd += ["--profiles-path", str(profiles), "--code", str(code)]
    t0 = time.monotonic()
    proc = subprocess.Popen(
        cmd, env=env, cwd=str(cwd), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    timed_out = False
    try:
        _out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    killed = timed_out or proc.returncode is None or proc.returncode < 0
    return QgisRun(proc.returncode, err, time.monotonic() - t0, killed)


def missing_desktop_tools(who: str) -> bool:
    """Print one line and return True when ``xvfb-run`` or ``qgis`` is not installed."""
    for tool in ("xvfb-run", "qgis"):
        if shutil.which(tool) is None:
            print(f"{who}: '{tool}' not found (apt-get install qgis xvfb xauth)", file=sys.stderr)
            return True
    return False
