"""Engine setup, the parts without a running setup: python finder, GPU detection, the plan, the atomic swap."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from rsitr_qgis.setup import installer, plan, python_finder  # noqa: E402
from tests.plugin.setup_helpers import make_dist


def _exe(path: Path, text: str = "#!/bin/sh\nexit 0\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def test_finder_finds_a_usable_python_on_this_machine():
    found = python_finder.find_pythons()
    assert found and found[0].usable, [c.label() for c in found]
    best = found[0]
    assert best.version >= (3, 9)
    out = subprocess.run(
        [best.path, "-c", "import venv, ensurepip, sys; print(sys.version_info[0])"],
        check=True,
        capture_output=True,
        text=True,
    )
    assert out.stdout.strip() == "3"
    assert best.path == shutil.which("python3") or best.source == "system"


def test_finder_rejects_what_cannot_make_a_venv(tmp_path):
    missing = python_finder.probe(str(tmp_path / "nope"))
    assert not missing.usable and "cannot run" in missing.why
    liar = python_finder.probe(str(_exe(tmp_path / "python3", "#!/bin/sh\necho hello\n")))
    assert not liar.usable and "not a working Python" in liar.why
    old = python_finder.probe(sys.executable, min_version=(3, 99))
    assert not old.usable and "too old" in old.why and old.version[:2] == sys.version_info[:2]
    chosen = python_finder.probe(sys.executable)
    assert chosen.usable and chosen.source == "chosen by you"


def test_finder_knows_the_windows_and_macos_layouts(tmp_path):
    """The QGIS installer layouts (files only; the probe itself runs on the real platform)."""
    root = tmp_path / "OSGeo4W"
    py312 = _exe(root / "apps" / "Python312" / "python.exe")
    _exe(root / "apps" / "Python39" / "python.exe")
    ctx = python_finder.SearchContext(
        platform="win32",
        path_env="",
        exec_prefix=str(root / "apps" / "Python312"),
        qgis_prefix=str(root / "apps" / "qgis-ltr"),
    )
    paths = [p for p, _src in python_finder.candidate_paths(ctx)]
    assert paths[0] == str(py312)  # sys.exec_prefix inside QGIS = its Python folder
    assert str(root / "apps" / "Python39" / "python.exe") in paths

    app = tmp_path / "QGIS.app" / "Contents"
    macos_py = _exe(app / "MacOS" / "bin" / "python3")
    fw_py = _exe(app / "Frameworks" / "Python.framework" / "Versions" / "3.12" / "bin" / "python3")
    ctx = python_finder.SearchContext(platform="darwin", path_env="", exec_prefix="", qgis_prefix=str(app / "MacOS"))
    paths = [p for p, _src in python_finder.candidate_paths(ctx)]
    assert paths[0] == str(macos_py) and str(fw_py) in paths


def test_gpu_detection_uses_nvidia_smi(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    monkeypatch.setenv("PATH", str(bin_dir))
    assert plan.detect_gpu() == []  # no nvidia-smi at all
    _exe(bin_dir / "nvidia-smi", "#!/bin/sh\necho 'NVIDIA H200, 143771 MiB'\necho 'NVIDIA H200, 143771 MiB'\n")
    assert plan.detect_gpu() == ["NVIDIA H200, 143771 MiB"] * 2
    _exe(bin_dir / "nvidia-smi", "#!/bin/sh\necho 'NVIDIA-SMI has failed: no driver' >&2\nexit 9\n")
    assert plan.detect_gpu() == []


MODEL = {"name": "m", "version": "1.0", "file": "m-1.0-0123456789abcdef.zip", "sha256": "ab" * 32, "size": 37_000_000}


def test_plan_commands_sizes_and_summary(tmp_path):
    dist_dir, wheels = make_dist(tmp_path, MODEL)
    dist = plan.load_dist(dist_dir)
    assert dist.engine_version == "0.0.1" and dist.requires_python == (3, 9) and dist.default_model.size == 37e6
    engine_dir = tmp_path / "profile" / "rsitr" / "engine"
    opts = plan.SetupOptions(engine_dir, sys.executable, wheel_dir=str(wheels / "cpu"), release_url="http://h/r/")
    p = plan.build_plan(opts, dist, staging_name=".staging-x")
    keys = [s.key for s in p.steps]
    assert keys == ["venv", "requirements", "engine", "check", "model"]
    staging_py = str(engine_dir / ".staging-x" / "venv" / "bin" / "python")
    req = p.steps[1].argv
    assert req[0] == staging_py and req[-2:] == ["-r", str(dist_dir / "requirements-engine.txt")]
    assert req[req.index("--find-links") + 1] == str((wheels / "cpu").resolve()) and "--no-index" in req
    assert p.steps[2].argv[-2:] == ["--no-deps", str(dist.wheel)]
    model = p.steps[4].argv
    assert model[model.index("--url") + 1] == "http://h/r/" + MODEL["file"]
    assert model[model.index("--sha256") + 1] == MODEL["sha256"]
    assert model[model.index("--models-dir") + 1] == str(engine_dir / "models") and "--progress-json" in model
    assert p.download_mb == pytest.approx(37.0)  # packages come from the folder: only the model is downloaded
    text = p.summary()
    assert str(engine_dir / "venv") in text and "37 MB" in text and "onnxruntime (CPU)" in text and "offline" in text

    gpu = plan.build_plan(
        plan.SetupOptions(engine_dir, "py", device="gpu", index_url="https://idx/simple", release_url="http://h/r"),
        dist,
    )
    assert gpu.steps[1].argv[-1].endswith("requirements-engine-gpu.txt") and "--index-url" in gpu.steps[1].argv
    assert "--no-index" not in gpu.steps[1].argv and "onnxruntime-gpu" in gpu.summary()
    assert gpu.download_mb > p.download_mb + plan.ESTIMATED_MB["gpu"]["download"] - 1
    assert gpu.fingerprint != p.fingerprint  # device and requirements differ: a switch rebuilds the venv
    assert "--trusted-host" not in gpu.steps[1].argv
    mirror = plan.build_plan(
        plan.SetupOptions(engine_dir, "py", index_url="http://mirror.lan:8080/simple", model_source="keep"), dist
    )
    assert mirror.steps[1].argv[-4:-2] == ["--trusted-host", "mirror.lan"]  # a plain-HTTP mirror the user typed

    folder = tmp_path / "offline_model"
    folder.mkdir()
    with pytest.raises(plan.SetupError, match="holds no model bundle"):
        plan.build_plan(plan.SetupOptions(engine_dir, "py", model_source="folder", model_folder=str(folder)), dist)
    (folder / MODEL["file"]).write_bytes(b"x")
    offline = plan.build_plan(
        plan.SetupOptions(engine_dir, "py", model_source="folder", model_folder=str(folder)), dist
    )
    url = offline.steps[-1].argv[offline.steps[-1].argv.index("--url") + 1]
    assert url.startswith("file://") and url.endswith(MODEL["file"]) and offline.download_mb > 0
    (folder / "model.json").write_text("{}")
    in_place = plan.build_plan(
        plan.SetupOptions(engine_dir, "py", model_source="folder", model_folder=str(folder)), dist
    )
    assert [s.key for s in in_place.steps][-1] == "check"
    with pytest.raises(plan.SetupError, match="wheel folder not found"):
        plan.build_plan(plan.SetupOptions(engine_dir, "py", wheel_dir=str(tmp_path / "none")), dist)
    with pytest.raises(plan.SetupError, match="carries no engine"):
        plan.load_dist(tmp_path / "nothing")


def test_swap_is_atomic_and_an_interrupted_swap_is_undone(tmp_path):
    engine_dir = tmp_path / "engine"
    (engine_dir / "venv").mkdir(parents=True)
    (engine_dir / "venv" / "marker").write_text("old")
    new = engine_dir / ".staging-1" / "venv"
    new.mkdir(parents=True)
    (new / "marker").write_text("new")
    installer.swap_into_place(new, engine_dir / "venv")
    assert (engine_dir / "venv" / "marker").read_text() == "new"
    assert sorted(p.name for p in engine_dir.iterdir()) == [".staging-1", "venv"]  # the old one is gone
    # an interruption after the first rename: no venv, the old one aside, the staging folder of a dead setup left;
    # the staging folder of a setup still running in another process (a second QGIS) is left alone
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    os.replace(engine_dir / ".staging-1", engine_dir / f".staging-{dead.pid}")
    (engine_dir / f".staging-{os.getppid()}").mkdir()
    os.replace(engine_dir / "venv", engine_dir / ".old-venv-abc")
    installer.clean_leftovers(engine_dir)
    assert (engine_dir / "venv" / "marker").read_text() == "new"
    assert sorted(p.name for p in engine_dir.iterdir()) == [f".staging-{os.getppid()}", "venv"]


def test_failure_line_picks_the_telling_line():
    pip_tail = ["Looking in links: /w", "ERROR: Could not find a version that satisfies the requirement x==1"]
    assert installer.failure_line(pip_tail) == "Could not find a version that satisfies the requirement x==1"
    engine_tail = ['{"event": "progress", "done": 1, "total": 2}', "rsitr: checksum mismatch for m.zip"]
    assert installer.failure_line(engine_tail) == "rsitr: checksum mismatch for m.zip"


def test_release_url_setting_env_and_release_default(tmp_path, monkeypatch, qgis_app):
    from qgis.core import QgsSettings
    from qgis.PyQt.QtCore import QSettings

    from rsitr_qgis.settings import PROJECT_RELEASE_URL, Settings

    s = Settings(QgsSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    monkeypatch.delenv("RSITR_RELEASE_URL", raising=False)
    assert s.release_url() == PROJECT_RELEASE_URL
    assert s.release_url("https://example.org/v1/") == "https://example.org/v1"  # release.json base_url
    monkeypatch.setenv("RSITR_RELEASE_URL", "http://127.0.0.1:9/mirror/")
    assert s.release_url("https://example.org/v1/") == "http://127.0.0.1:9/mirror"
    s.set("release_url", "file:///srv/models")
    assert s.release_url("https://example.org/v1/") == "file:///srv/models"
    assert s.engine_dir().parts[-2:] == ("rsitr", "engine")
