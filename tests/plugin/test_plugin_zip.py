"""make plugin / make release: the zip follows the plugin repository rules, carries the engine (pure-Python wheel +
pinned requirements + release manifest, no weights) and the plugin finds its resources inside it."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import subprocess
import sys
import zipfile

from tests.conftest import PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "scripts" / "build_plugin_zip.py"
RELEASE = PROJECT_ROOT / "scripts" / "build_release.py"


def load_builder():
    spec = importlib.util.spec_from_file_location("build_plugin_zip", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_zip_follows_repository_rules(tmp_path):
    out = tmp_path / "rsitr_qgis.zip"
    dist = tmp_path / "release"
    run = subprocess.run(
        [sys.executable, str(RELEASE), "--out", str(dist), "--plugin-out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    manifest = json.loads((dist / "release.json").read_text())
    model = manifest["models"][0]
    archive = dist / model["file"]
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == model["sha256"]
    assert model["file"] == f"{model['name']}-{model['version']}-{model['sha256'][:16]}.zip"
    assert out.stat().st_size < 25 * 1024 * 1024
    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
    assert {n.split("/")[0] for n in names} == {"rsitr_qgis"}
    for required in (
        "__init__.py",
        "metadata.txt",
        "LICENSE",
        "plugin.py",
        "resources/icons/rsitr.png",
        "resources/styles/search_results.qml",
        "processing/provider.py",
    ):
        assert f"rsitr_qgis/{required}" in names, required
    assert not [n for n in names if n.endswith((".pyc", ".pyo")) or "__pycache__" in n]
    assert not [n for n in names if n.endswith((".onnx", ".npy", ".npz", ".pt", ".pth", ".safetensors"))]
    dist_files = sorted(n.split("/", 2)[2] for n in names if n.startswith("rsitr_qgis/engine_dist/"))
    wheel = manifest["engine"]["wheel"]
    assert dist_files == sorted([wheel, "release.json", "requirements-engine.txt", "requirements-engine-gpu.txt"])
    with zipfile.ZipFile(out) as zf:
        cpu = zf.read("rsitr_qgis/engine_dist/requirements-engine.txt").decode()
        gpu = zf.read("rsitr_qgis/engine_dist/requirements-engine-gpu.txt").decode()
        with zipfile.ZipFile(io.BytesIO(zf.read(f"rsitr_qgis/engine_dist/{wheel}"))) as whl:
            inner = whl.namelist()
    pins = [line for line in cpu.splitlines() if line and not line.startswith("#")]
    assert pins and all("==" in line for line in pins)
    assert "onnxruntime==" in cpu and "onnxruntime-gpu" not in cpu
    assert "onnxruntime-gpu==" in gpu and "\nonnxruntime==" not in gpu  # never both ONNX Runtime builds
    assert "engine/cli.py" in inner and "engine/prompts/scene_classes.json" in inner
    assert not [n for n in inner if n.startswith("training/") or n.endswith((".so", ".pyd", ".onnx"))]
    assert load_builder().validate(out) == []


def test_plugin_zip_script_needs_the_engine_dist(tmp_path):
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(tmp_path / "p.zip"), "--engine-dist", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2 and "make plugin" in run.stderr


def test_validator_rejects_bad_zips(tmp_path):
    builder = load_builder()
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("other/__init__.py", "")
        zf.writestr("rsitr_qgis/__pycache__/x.cpython-311.pyc", b"\0")
        zf.writestr("rsitr_qgis/model/image_encoder.onnx", b"\0")
        wheel = io.BytesIO()
        with zipfile.ZipFile(wheel, "w") as whl:
            whl.writestr("engine/_speedups.cpython-311-x86_64-linux-gnu.so", b"\0")
        zf.writestr("rsitr_qgis/engine_dist/rsitr-0.0.0-py3-none-any.whl", wheel.getvalue())
    problems = " ".join(builder.validate(bad))
    assert "top-level" in problems and "forbidden folder" in problems
    assert ".onnx" in problems and "missing rsitr_qgis/metadata.txt" in problems
    assert "non-Python file engine/_speedups" in problems and "missing rsitr_qgis/engine_dist/release.json" in problems


def test_installed_plugin_finds_resources_inside_the_zip(tmp_path):
    out = load_builder().build(tmp_path / "p.zip")
    with zipfile.ZipFile(out) as zf:
        zf.extractall(tmp_path / "plugins")
    plugin_dir = tmp_path / "plugins" / "rsitr_qgis"
    from rsitr_qgis import settings

    assert settings.checkout_root(plugin_dir) is None
    res = settings.resources_dir(plugin_dir)
    assert res == plugin_dir / "resources"
    assert (res / "styles" / "search_results.qml").is_file() and (res / "icons" / "rsitr.svg").is_file()
