"""make plugin: the zip follows the plugin repository rules and the plugin finds its resources inside it."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import zipfile

from tests.conftest import PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "scripts" / "build_plugin_zip.py"


def load_builder():
    spec = importlib.util.spec_from_file_location("build_plugin_zip", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_zip_follows_repository_rules(tmp_path):
    out = tmp_path / "rsitr_qgis.zip"
    run = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
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
    assert load_builder().validate(out) == []


def test_validator_rejects_bad_zips(tmp_path):
    builder = load_builder()
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("other/__init__.py", "")
        zf.writestr("rsitr_qgis/__pycache__/x.cpython-311.pyc", b"\0")
        zf.writestr("rsitr_qgis/model/image_encoder.onnx", b"\0")
    problems = " ".join(builder.validate(bad))
    assert "top-level" in problems and "forbidden folder" in problems
    assert ".onnx" in problems and "missing rsitr_qgis/metadata.txt" in problems


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
