"""Build rsitr_qgis.zip for the official QGIS plugin repository (stdlib only).

Layout: top folder ``rsitr_qgis/`` with the plugin's Python files, ``metadata.txt``, ``LICENSE``, the
resources the plugin uses (``resources/icons``, ``resources/styles``) and ``engine_dist/`` (the engine as a
pure-Python wheel, its pinned requirement files and ``release.json``, made by ``scripts/build_release.py``),
which the plugin's "Set up engine" installs into a private venv. No bytecode, no compiled code, no model weights.
Usage: python scripts/build_plugin_zip.py [--out rsitr_qgis.zip] [--engine-dist dist/release/engine_dist]
(``make plugin`` / ``make release`` run scripts/build_release.py, which calls this with a fresh engine_dist).
"""

from __future__ import annotations

import argparse
import io
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOP = "rsitr_qgis"
MAX_BYTES = 25 * 1024 * 1024
RESOURCE_GLOBS = ("icons/*.png", "icons/*.svg", "styles/*.qml")
FORBIDDEN_SUFFIXES = {
    ".pyc",
    ".pyo",
    ".onnx",
    ".npy",
    ".npz",
    ".pt",
    ".pth",
    ".safetensors",
    ".bin",
    ".ckpt",
    ".so",
    ".dll",
    ".dylib",
    ".exe",
    ".pyd",
    ".zip",
}
FORBIDDEN_PARTS = {"__pycache__", "__MACOSX", ".git", ".pytest_cache", ".ruff_cache"}
FIXED_TIME = (2024, 1, 1, 0, 0, 0)
ENGINE_DIST = "engine_dist"
ENGINE_DIST_FILES = ("requirements-engine.txt", "requirements-engine-gpu.txt", "release.json")
# what a pure-Python wheel may hold (anything else, e.g. .so/.pyd, is compiled code the repository rejects)
WHEEL_SUFFIXES = {".py", ".json", ".txt", ""}
WHEEL_META = {"METADATA", "RECORD", "WHEEL", "top_level.txt", "entry_points.txt", "LICENSE"}


def plugin_files(root: Path = ROOT, engine_dist: Path | None = None) -> list[tuple[Path, str]]:
    """(source file, name in the zip) pairs."""
    out: list[tuple[Path, str]] = []
    pkg = root / TOP
    for path in sorted(pkg.rglob("*")):
        rel = path.relative_to(pkg)
        if path.is_dir() or FORBIDDEN_PARTS & set(rel.parts) or path.suffix in FORBIDDEN_SUFFIXES:
            continue
        if any(p.startswith(".") for p in rel.parts):
            continue
        out.append((path, f"{TOP}/{rel.as_posix()}"))
    for name in ("metadata.txt", "LICENSE"):
        out.append((root / name, f"{TOP}/{name}"))
    for pattern in RESOURCE_GLOBS:
        for path in sorted((root / "resources").glob(pattern)):
            out.append((path, f"{TOP}/resources/{path.relative_to(root / 'resources').as_posix()}"))
    if engine_dist is not None:
        for path in sorted(engine_dist.iterdir()):
            if path.is_file():
                out.append((path, f"{TOP}/{ENGINE_DIST}/{path.name}"))
    return out


def build(out: Path, root: Path = ROOT, engine_dist: Path | None = None) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for src, name in plugin_files(root, engine_dist):
            if not src.is_file():
                raise SystemExit(f"build_plugin_zip: missing {src}")
            info = zipfile.ZipInfo(name, FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, src.read_bytes())
    tmp.replace(out)
    return out


def validate(path: Path) -> list[str]:
    """Problems that the plugin repository's upload validator (or our rules) would reject."""
    problems = []
    if path.stat().st_size >= MAX_BYTES:
        problems.append(f"zip is {path.stat().st_size} bytes (limit {MAX_BYTES})")
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        tops = {n.split("/", 1)[0] for n in names}
        if tops != {TOP}:
            problems.append(f"top-level entries {sorted(tops)}, expected only {TOP}/")
        for n in names:
            parts = n.split("/")
            if n.startswith("/") or ".." in parts:
                problems.append(f"unsafe path {n}")
            if FORBIDDEN_PARTS & set(parts):
                problems.append(f"forbidden folder in {n}")
            if Path(n).suffix.lower() in FORBIDDEN_SUFFIXES:
                problems.append(f"forbidden file type {n}")
        problems += _engine_dist_problems(zf, names)
        for required in ("__init__.py", "metadata.txt", "LICENSE"):
            if f"{TOP}/{required}" not in names:
                problems.append(f"missing {TOP}/{required}")
        meta = zf.read(f"{TOP}/metadata.txt").decode("utf-8") if f"{TOP}/metadata.txt" in names else ""
        icon = next((line.split("=", 1)[1].strip() for line in meta.splitlines() if line.startswith("icon=")), "")
        if not icon or f"{TOP}/{icon}" not in names:
            problems.append(f"icon {icon!r} from metadata.txt is not in the zip")
    return problems


def _engine_dist_problems(zf: zipfile.ZipFile, names: list[str]) -> list[str]:
    """The engine wheel must be there, alone and pure Python, with its requirement files and release.json."""
    prefix = f"{TOP}/{ENGINE_DIST}/"
    wheels = [n for n in names if n.startswith(prefix) and n.endswith(".whl")]
    problems = [f"missing {prefix}{f}" for f in ENGINE_DIST_FILES if prefix + f not in names]
    if len(wheels) != 1 or not wheels[0].endswith("-py3-none-any.whl"):
        return problems + [f"expected one pure-Python engine wheel in {prefix}, found {wheels}"]
    with zipfile.ZipFile(io.BytesIO(zf.read(wheels[0]))) as wheel:
        for inner in wheel.namelist():
            p = Path(inner)
            if p.suffix.lower() not in WHEEL_SUFFIXES or (p.suffix == "" and p.name not in WHEEL_META):
                problems.append(f"engine wheel holds a non-Python file {inner}")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "rsitr_qgis.zip", help="zip to write")
    parser.add_argument(
        "--engine-dist",
        type=Path,
        default=ROOT / "dist" / "release" / ENGINE_DIST,
        help="folder with the engine wheel, requirement files and release.json (made by build_release.py)",
    )
    args = parser.parse_args(argv)
    if not args.engine_dist.is_dir():
        print(
            f"build_plugin_zip: {args.engine_dist} missing; run `make plugin` (scripts/build_release.py)",
            file=sys.stderr,
        )
        return 2
    out = build(args.out, engine_dist=args.engine_dist)
    problems = validate(out)
    for p in problems:
        print(f"build_plugin_zip: {p}", file=sys.stderr)
    if problems:
        return 1
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
