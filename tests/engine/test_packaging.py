"""`pip install <repo>` (not editable) into a fresh venv gives a working engine with its runtime dependencies only.

The venv is made by the system Python without system site packages; pip installs from the pinned wheel folder
(tests/wheelhouse.py, filled from the package index once), builds the engine from a copy of the source tree, and
the installed engine then indexes and searches a real raster from a folder outside the checkout, finding its
model in the per-user models folder after `models install` of a release archive, never in the checkout.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.wheelhouse import engine_wheelhouse, scale_wheelhouse

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SOURCE_PARTS = ("pyproject.toml", "README.md", "LICENSE", "engine", "resources/prompts")
FORBIDDEN = ("torch", "torchvision", "open-clip-torch", "timm", "transformers", "onnxruntime-gpu")


def copy_source(dest: Path) -> Path:
    for part in SOURCE_PARTS:
        src = PROJECT_ROOT / part
        if src.is_dir():
            shutil.copytree(src, dest / part, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            (dest / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest / part)
    return dest


@pytest.fixture(scope="module")
def installed_engine(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    base = tmp_path_factory.mktemp("pkg")
    wheels = engine_wheelhouse()
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    src = copy_source(base / "src")
    run = subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--no-index", "--find-links", str(wheels), str(src)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    home = base / "home"
    home.mkdir()
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "HF_HUB_OFFLINE": "1",
    }
    return py, env


def engine(py: Path, env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(py), "-m", "engine", *args], capture_output=True, text=True, timeout=300, env=env, cwd=cwd
    )


def test_runtime_dependencies_only(installed_engine):
    py, env = installed_engine
    frozen = subprocess.run([str(py), "-m", "pip", "freeze"], capture_output=True, text=True, env=env).stdout
    names = {line.split("==")[0].split(" @ ")[0].lower() for line in frozen.splitlines()}
    assert "onnxruntime" in names and "rasterio" in names and "rsitr" in names
    assert not names & set(FORBIDDEN), names & set(FORBIDDEN)
    probe = "import importlib.util as u; print([m for m in ('torch','qgis','training') if u.find_spec(m)])"
    out = subprocess.run([str(py), "-c", probe], capture_output=True, text=True, env=env, cwd="/")
    assert out.stdout.strip() == "[]"


def test_installed_engine_indexes_and_searches_with_a_user_model(installed_engine, tmp_path, shared):
    py, env = installed_engine
    from engine import __version__

    work = tmp_path / "elsewhere"
    work.mkdir()
    assert engine(py, env, "--version", cwd=work).stdout.strip() == f"rsitr engine {__version__}"
    models_dir = engine(py, env, "models", "dir", cwd=work).stdout.strip()
    assert models_dir == str(Path(env["XDG_DATA_HOME"]) / "rsitr" / "models")
    no_model = engine(py, env, "index", str(shared / "rasters" / "naip_2020.tif"), cwd=work)
    assert no_model.returncode == 2 and "models install" in no_model.stderr
    assert len(no_model.stderr.strip().splitlines()) == 1

    # a release archive of the shipped bundle, as scripts/build_release.py makes it, installed from disk
    bundle = PROJECT_ROOT / "resources" / "models" / "pir-lite"
    archive = tmp_path / "pir-lite.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(bundle.iterdir()):
            zf.write(path, f"pir-lite/{path.name}")
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    inst = engine(py, env, "models", "install", "--url", str(archive), "--sha256", sha, cwd=work)
    assert inst.returncode == 0, inst.stderr
    raster = str(shared / "rasters" / "naip_2020.tif")
    idx = engine(py, env, "--json", "index", raster, "--quiet", cwd=work)
    assert idx.returncode == 0, idx.stderr
    assert json.loads(idx.stdout)["n_tiles"] > 0
    res = engine(py, env, "--json", "search", "a lake surrounded by farmland", "--raster", raster, "-k", "3", cwd=work)
    assert res.returncode == 0, res.stderr
    results = json.loads(res.stdout)["results"]
    assert [r["rank"] for r in results] == [1, 2, 3]
    assert results[0]["score"] >= results[-1]["score"] > 0
    assert os.path.commonpath([json.loads(idx.stdout)["path"], env["HOME"]]) == env["HOME"]


@pytest.mark.slow
def test_scale_extra_installs_into_the_engine_venv(installed_engine, tmp_path, shared):
    """Last in this module (it adds to the shared venv). Engine alone: ``--ray`` says how to get Ray (one line,
    exit 2); then ``pip install "rsitr[scale]"`` from the cached wheels gives a working Ray + Lance beside it."""
    py, env = installed_engine
    env = {**env, "RSITR_CACHE": str(tmp_path / "c")}
    raster = str(shared / "rasters" / "RGB.byte.tif")
    run = engine(py, env, "index-many", raster, "--catalog", "c", "--ray", cwd=tmp_path)
    assert run.returncode == 2 and 'pip install "rsitr[scale]"' in run.stderr, run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    src = py.parents[2] / "src"  # the source copy installed_engine installed
    links = ["--no-index", "--find-links", str(engine_wheelhouse()), "--find-links", str(scale_wheelhouse())]
    run = subprocess.run(
        [str(py), "-m", "pip", "install", "-q", *links, f"{src}[scale]"], capture_output=True, text=True, timeout=900
    )
    assert run.returncode == 0, run.stderr[-2000:]
    code = (
        "import ray, lance, pyarrow, pandas, numpy; from engine.ray_index import require_scale; "
        "require_scale(); print(ray.__version__, lance.__version__, numpy.__version__)"
    )
    run = subprocess.run([str(py), "-c", code], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert run.returncode == 0 and run.stdout.split()[:2] == ["2.60.0", "14.0.2"], run.stderr[-2000:]
