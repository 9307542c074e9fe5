"""Build rsitr_qgis.zip for the official QGIS plugin repository (stdlib only).

Layout: top folder ``rsitr_qgis/`` with the plugin's Python files, ``metadata.txt``, ``LICENSE`` and the
resources the plugin uses (``resources/icons``, ``resources/styles``). No bytecode, no model weights.
Usage: python scripts/build_plugin_zip.py [--out rsitr_qgis.zip]
"""

from __future__ import annotations

import argparse
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


def plugin_files(root: Path = ROOT) -> list[tuple[Path, str]]:
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
    return out


def build(out: Path, root: Path = ROOT) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for src, name in plugin_files(root):
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
        for required in ("__init__.py", "metadata.txt", "LICENSE"):
            if f"{TOP}/{required}" not in names:
                problems.append(f"missing {TOP}/{required}")
        meta = zf.read(f"{TOP}/metadata.txt").decode("utf-8") if f"{TOP}/metadata.txt" in names else ""
        icon = next((line.split("=", 1)[1].strip() for line in meta.splitlines() if line.startswith("icon=")), "")
        if not icon or f"{TOP}/{icon}" not in names:
            problems.append(f"icon {icon!r} from metadata.txt is not in the zip")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "rsitr_qgis.zip")
    args = parser.parse_args(argv)
    out = build(args.out)
    problems = validate(out)
    for p in problems:
        print(f"build_plugin_zip: {p}", file=sys.stderr)
    if problems:
        return 1
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
