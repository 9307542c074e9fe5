"""Plugin settings stored in QgsSettings under ``rsitr/`` (pure helpers are testable without a GUI)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from qgis.core import QgsSettings

PREFIX = "rsitr/"
PLUGIN_DIR = Path(__file__).resolve().parent
RELEASE_URL_ENV = "RSITR_RELEASE_URL"
PROJECT_RELEASE_URL = "https://github.com/rsitr/rsitr-qgis/releases/latest/download"

MODE_LOCAL = "local"
MODE_REMOTE = "remote"

# name -> default value; the type of the default is the type returned by Settings.get()
DEFAULTS: dict[str, object] = {
    "mode": MODE_LOCAL,  # "local": the plugin starts the engine; "remote": url + token
    "interpreter": "",  # empty: auto (checkout .venv, else python3 on PATH)
    "url": "http://127.0.0.1:8765",
    "token": "",  # legacy plain token: moved into the QGIS auth database on first use (remote_token.py)
    "authcfg": "",  # QGIS auth config id holding the remote engine token
    "cache_dir": "",  # empty: the engine's default (RSITR_CACHE or its user cache dir)
    "model_dir": "",  # empty: the engine's default model
    "model": "",  # model name sent with requests; empty: the engine's default
    "catalog": "",  # the catalog the panel searched last (Search in: a catalog)
    "caption_bank": "",  # a caption bank .npz (python -m engine caption-bank build) for describe; empty: none
    "allowed_roots": "",  # extra raster roots (os.pathsep separated) for the local engine
    "k": 20,
    "threshold": 0.0,
    "tile": 256,
    "stride": 256,
    "start_timeout_s": 120,
    "request_timeout_s": 120,
    "engine_dir": "",  # empty: <QGIS profile>/rsitr/engine (where "Set up engine" installs venv + models)
    "release_url": "",  # empty: $RSITR_RELEASE_URL, else the project's release download URL
}


def default_engine_dir() -> Path:
    """``<QGIS profile folder>/rsitr/engine`` (falls back to ``~/.rsitr/engine`` outside QGIS)."""
    from qgis.core import QgsApplication

    base = QgsApplication.qgisSettingsDirPath()
    return (Path(base) if base else Path.home() / ".rsitr") / "rsitr" / "engine"


def engine_venv_python(engine_dir: Path) -> Path:
    """The interpreter of the venv that "Set up engine" creates in ``engine_dir``."""
    if sys.platform.startswith("win"):
        return engine_dir / "venv" / "Scripts" / "python.exe"
    return engine_dir / "venv" / "bin" / "python"


def checkout_root(plugin_dir: Path = PLUGIN_DIR) -> Path | None:
    """The source checkout holding the plugin (``<root>/rsitr_qgis`` beside ``<root>/engine``), or None."""
    root = plugin_dir.resolve().parent
    if (root / "engine" / "__init__.py").is_file():
        return root
    return None


def venv_python(root: Path) -> Path:
    if sys.platform.startswith("win"):
        return root / ".venv" / "Scripts" / "python.exe"
    return root / ".venv" / "bin" / "python"


def default_interpreter(plugin_dir: Path = PLUGIN_DIR, engine_dir: Path | None = None) -> str:
    """The venv set up by "Set up engine" in ``engine_dir`` if it exists, else the checkout's ``.venv`` Python
    when running from a source checkout, else python3 on PATH."""
    if engine_dir is not None and engine_venv_python(engine_dir).exists():
        return str(engine_venv_python(engine_dir))
    root = checkout_root(plugin_dir)
    if root is not None and venv_python(root).exists():
        return str(venv_python(root))
    return shutil.which("python3") or shutil.which("python") or "python3"


def coerce(name: str, value: object) -> object:
    """Convert a raw QgsSettings value (often a string) to the type of the default."""
    default = DEFAULTS[name]
    if value is None or value == "":
        return default if not isinstance(default, str) else (value or default)
    try:
        if isinstance(default, bool):
            return str(value).lower() in ("1", "true", "yes", "on")
        if isinstance(default, int):
            return int(float(value))
        if isinstance(default, float):
            return float(value)
    except (TypeError, ValueError):
        return default
    return str(value)


class Settings:
    """Typed access to the plugin's QgsSettings keys."""

    def __init__(self, settings: QgsSettings | None = None):
        self._s = settings or QgsSettings()

    def get(self, name: str):
        if name not in DEFAULTS:
            raise KeyError(name)
        return coerce(name, self._s.value(PREFIX + name, DEFAULTS[name]))

    def set(self, name: str, value) -> None:
        if name not in DEFAULTS:
            raise KeyError(name)
        self._s.setValue(PREFIX + name, value)

    def reset(self, name: str) -> None:
        self._s.remove(PREFIX + name)

    def sync(self) -> None:
        """Write pending changes to disk now (e.g. after removing a secret)."""
        self._s.sync()

    def interpreter(self) -> str:
        return self.get("interpreter") or default_interpreter(engine_dir=self.engine_dir())

    def engine_dir(self) -> Path:
        value = self.get("engine_dir")
        return Path(value).expanduser() if value else default_engine_dir()

    def release_url(self, release_base_url: str = "") -> str:
        """The setting, else ``$RSITR_RELEASE_URL``, else the release's own ``base_url``, else the project's."""
        value = self.get("release_url") or os.environ.get(RELEASE_URL_ENV, "").strip()
        return (value or release_base_url or PROJECT_RELEASE_URL).rstrip("/")

    def allowed_roots(self) -> list[str]:
        raw = self.get("allowed_roots")
        return [p for p in raw.split(os.pathsep) if p.strip()]

    def as_dict(self) -> dict:
        return {name: self.get(name) for name in DEFAULTS}


def resources_dir(plugin_dir: Path = PLUGIN_DIR) -> Path:
    """Icons and styles: ``rsitr_qgis/resources`` in the installed zip, ``<checkout>/resources`` in a checkout."""
    for candidate in (plugin_dir / "resources", plugin_dir.resolve().parent / "resources"):
        if (candidate / "styles").is_dir() or (candidate / "icons").is_dir():
            return candidate
    return plugin_dir / "resources"


def resource_path(*parts: str) -> str:
    return str(resources_dir().joinpath(*parts))
