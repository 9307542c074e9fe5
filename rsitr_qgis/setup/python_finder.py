"""Find a Python interpreter that can create the engine's venv.

Supported layouts (the user can always pick an interpreter in the setup dialog instead):
- Linux: ``python3`` on PATH, ``/usr/bin/python3``, ``/usr/local/bin/python3`` (and ``python3.X`` beside them);
  Debian/Ubuntu need the ``python3-venv`` package (``ensurepip``), which the probe checks.
- Windows, OSGeo4W (``C:\\OSGeo4W\\apps\\qgis[-ltr]``) and the standalone installer
  (``C:\\Program Files\\QGIS 3.x\\apps\\qgis[-ltr]``): QGIS's own Python in ``<root>\\apps\\Python3*\\python.exe``
  (``sys.exec_prefix`` inside QGIS points there; ``sys.executable`` is ``qgis-bin.exe``).
- macOS, the official ``QGIS.app``: ``QGIS.app/Contents/MacOS/bin/python3`` (``QgsApplication.prefixPath()`` is
  ``Contents/MacOS``); newer bundles keep it in ``Contents/Frameworks/Python.framework/Versions/3.*/bin/python3``.
A candidate is suitable when it runs, is Python >= 3.9 (or the engine wheel's ``Requires-Python``) and can import
``venv`` and ``ensurepip``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

MIN_VERSION = (3, 9)
PROBE_CODE = (
    "import json, sys\n"
    "ok = True\n"
    "why = ''\n"
    "try:\n"
    "    import venv, ensurepip\n"
    "except Exception as exc:\n"
    "    ok, why = False, f'cannot create a venv ({exc.__class__.__name__}: {exc})'\n"
    "print(json.dumps({'version': list(sys.version_info[:3]), 'venv': ok, 'why': why, 'executable': sys.executable}))\n"
)


@dataclass
class PythonCandidate:
    """One interpreter and what the probe found out about it."""

    path: str
    source: str  # where it was found ("PATH", "QGIS (OSGeo4W)", "chosen by you", ...)
    version: tuple[int, ...] = ()
    usable: bool = False
    why: str = ""  # one line: why it is not usable

    @property
    def version_text(self) -> str:
        return ".".join(str(v) for v in self.version) if self.version else "?"

    def label(self) -> str:
        state = "" if self.usable else f" - not usable: {self.why}"
        return f"Python {self.version_text} ({self.source}): {self.path}{state}"


@dataclass
class SearchContext:
    """What the search looks at (inputs, so tests can point it at any layout)."""

    platform: str = sys.platform
    path_env: str = field(default_factory=lambda: os.environ.get("PATH", ""))
    exec_prefix: str = sys.exec_prefix
    qgis_prefix: str = ""  # QgsApplication.prefixPath()


def probe_env() -> dict[str, str]:
    """Environment for running a foreign interpreter: without QGIS's PYTHONHOME/PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("PYTHON") and k.upper() != "VIRTUAL_ENV"}
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def probe(path: str, source: str = "chosen by you", min_version: tuple[int, ...] = MIN_VERSION) -> PythonCandidate:
    """Run ``path`` once and report its version and whether it can create a venv."""
    cand = PythonCandidate(path=path, source=source)
    try:
        out = subprocess.run(
            [path, "-I", "-c", PROBE_CODE], capture_output=True, text=True, timeout=30, env=probe_env(), check=False
        )
    except (OSError, subprocess.SubprocessError) as exc:
        cand.why = f"cannot run it ({exc.__class__.__name__}: {exc})"
        return cand
    try:
        data = json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        cand.why = f"not a working Python ({last})"
        return cand
    cand.version = tuple(int(v) for v in data["version"])
    if cand.version < tuple(min_version):
        cand.why = f"Python {cand.version_text} is too old (need {'.'.join(map(str, min_version))} or newer)"
    elif not data["venv"]:
        cand.why = data["why"] + (" - install python3-venv" if sys.platform.startswith("linux") else "")
    else:
        cand.usable = True
    return cand


def _glob_sorted(root: Path, pattern: str) -> list[Path]:
    try:
        return sorted(root.glob(pattern), reverse=True)  # newest Python first
    except OSError:
        return []


def candidate_paths(ctx: SearchContext) -> list[tuple[str, str]]:
    """(path, source) pairs to probe, best first, without duplicates; only files that exist."""
    found: list[tuple[str, str]] = []
    if ctx.platform.startswith("win"):
        exec_prefix = Path(ctx.exec_prefix)
        found.append((str(exec_prefix / "python.exe"), "QGIS's Python"))
        for base in [Path(ctx.qgis_prefix).parent.parent if ctx.qgis_prefix else None, exec_prefix.parent.parent]:
            if base is not None:  # <root>\apps\qgis -> <root>; <root>\apps\Python312 -> <root>
                for p in _glob_sorted(base / "apps", "Python3*/python.exe"):
                    found.append((str(p), "QGIS (OSGeo4W / standalone installer)"))
        for name in ("python.exe", "python3.exe"):
            hit = shutil.which(name, path=ctx.path_env)
            if hit:
                found.append((hit, "PATH"))
    elif ctx.platform == "darwin":
        prefixes = [Path(p) for p in (ctx.qgis_prefix, ctx.exec_prefix) if p]
        for prefix in prefixes:
            found.append((str(prefix / "bin" / "python3"), "QGIS.app"))
            contents = next((q for q in [prefix, *prefix.parents] if q.name == "Contents"), None)
            if contents is not None:
                found.append((str(contents / "MacOS" / "bin" / "python3"), "QGIS.app"))
                for p in _glob_sorted(contents / "Frameworks" / "Python.framework" / "Versions", "3.*/bin/python3"):
                    found.append((str(p), "QGIS.app"))
        hit = shutil.which("python3", path=ctx.path_env)
        if hit:
            found.append((hit, "PATH"))
    else:
        hit = shutil.which("python3", path=ctx.path_env)
        if hit:
            found.append((hit, "PATH"))
        for folder in ("/usr/bin", "/usr/local/bin"):
            found.append((f"{folder}/python3", "system"))
            for p in _glob_sorted(Path(folder), "python3.[0-9]*"):
                if p.name.replace("python3.", "").isdigit():
                    found.append((str(p), "system"))
    seen: set[str] = set()
    out = []
    for path, source in found:
        if path in seen or not Path(path).is_file():
            continue
        seen.add(path)
        out.append((path, source))
    return out


def find_pythons(
    ctx: SearchContext | None = None, min_version: tuple[int, ...] = MIN_VERSION, limit: int = 6
) -> list[PythonCandidate]:
    """Probe the candidates; usable ones first (in search order: QGIS's own, then PATH), then the unusable ones."""
    ctx = ctx or SearchContext()
    cands = [probe(path, source, min_version) for path, source in candidate_paths(ctx)[:limit]]
    return [c for c in cands if c.usable] + [c for c in cands if not c.usable]


def best_python(ctx: SearchContext | None = None, min_version: tuple[int, ...] = MIN_VERSION) -> PythonCandidate | None:
    found = find_pythons(ctx, min_version)
    return found[0] if found and found[0].usable else None
