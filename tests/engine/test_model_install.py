"""``python -m engine models install``: resumable download over real HTTP, checksum, atomic unpack, clear errors.

A synthetic bundle is zipped the way scripts/build_release.py zips the shipped one and served from a real HTTP
server on 127.0.0.1 (tests/http_files.py). Every failure must print one line, exit 2 and leave the models folder
exactly as it was (an earlier installed bundle included).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from engine.model_install import download, install_archive_url
from tests.http_files import closed_port_url, serve_files

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def zip_bundle(bundle: Path, out: Path, folder: str = "demo-model") -> tuple[Path, str]:
    archive = out / f"{folder}.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(bundle.iterdir()):
            if path.is_file():
                zf.write(path, f"{folder}/{path.name}")
    return archive, hashlib.sha256(archive.read_bytes()).hexdigest()


def run_cli(*args: str, models_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "engine", "models", *args, "--models-dir", str(models_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=PROJECT_ROOT,
    )


def snapshot(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file (the download folder's partial files excluded)."""
    if not folder.exists():
        return {}
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and ".downloads" not in p.parts
    }


@pytest.fixture()
def served(bundle_dir, tmp_path):
    files = tmp_path / "www"
    files.mkdir()
    archive, sha = zip_bundle(bundle_dir, files)
    with serve_files(files) as server:
        yield server, archive, sha


@pytest.fixture()
def installed(served, tmp_path) -> Path:
    """A models folder with the bundle already installed once (the 'earlier working install')."""
    server, archive, sha = served
    models = tmp_path / "models"
    res = run_cli("install", "--url", server.url + archive.name, "--sha256", sha, models_dir=models)
    assert res.returncode == 0, res.stderr
    return models


def test_install_list_remove_through_the_cli(served, tmp_path):
    server, archive, sha = served
    models = tmp_path / "models"
    res = run_cli("install", "--url", server.url + archive.name, "--sha256", sha, "--progress-json", models_dir=models)
    assert res.returncode == 0, res.stderr
    events = [json.loads(line) for line in res.stdout.splitlines()]
    assert events[-1]["event"] == "installed" and Path(events[-1]["path"]) == models / "demo-model"
    progress = [e for e in events if e["event"] == "progress"]
    assert progress and progress[-1]["done"] == progress[-1]["total"] == archive.stat().st_size
    assert (models / "demo-model" / "model.json").is_file()
    assert not list((models / ".downloads").iterdir())  # the archive is removed once unpacked
    listed = json.loads(run_cli("list", "--json", models_dir=models).stdout)["models"]
    assert [(m["name"], m["default"]) for m in listed] == [(events[-1]["name"], True)]
    assert run_cli("remove", "demo-model", models_dir=models).returncode == 0
    assert not (models / "demo-model").exists()
    gone = run_cli("remove", "demo-model", models_dir=models)
    assert gone.returncode == 2 and "no installed model named" in gone.stderr


def test_repeated_install_gives_the_same_files(served, installed):
    server, archive, sha = served
    before = snapshot(installed)
    res = run_cli("install", "--url", server.url + archive.name, "--sha256", sha, models_dir=installed)
    assert res.returncode == 0, res.stderr
    assert snapshot(installed) == before


@pytest.mark.parametrize(
    ("case", "expect"),
    [
        ("bad_checksum", "checksum mismatch"),
        ("http_404", "HTTP 404"),
        ("truncated", "download truncated"),
        ("no_network", "cannot reach"),
        ("not_a_bundle", "model.json"),
    ],
)
def test_failures_are_one_line_and_install_nothing(served, installed, tmp_path, case, expect):
    server, archive, sha = served
    url, want = server.url + archive.name, sha
    if case == "bad_checksum":
        want = "0" * 64
    elif case == "http_404":
        url = server.url + "missing-0.0.0.zip"
    elif case == "truncated":
        url += f"?cut={archive.stat().st_size // 2}"
    elif case == "no_network":
        url = closed_port_url() + archive.name
    elif case == "not_a_bundle":
        broken = archive.parent / "broken.zip"
        with zipfile.ZipFile(broken, "w") as zf:
            zf.writestr("demo-model/readme.txt", "no model here")
        url, want = server.url + broken.name, hashlib.sha256(broken.read_bytes()).hexdigest()
    before = snapshot(installed)
    res = run_cli("install", "--url", url, "--sha256", want, models_dir=installed)
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1 and expect in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
    assert snapshot(installed) == before
    assert sorted(p.name for p in installed.iterdir() if not p.name.startswith(".")) == ["demo-model"]


def test_interrupted_download_resumes_with_a_range_request(served, tmp_path):
    server, archive, sha = served
    models = tmp_path / "models"
    half = archive.stat().st_size // 2
    with pytest.raises(Exception, match="truncated"):
        download(server.url + archive.name + f"?cut={half}", models / ".downloads" / archive.name)
    part = models / ".downloads" / (archive.name + ".part")
    assert part.stat().st_size == half
    seen: list[tuple[int, int]] = []
    res = install_archive_url(server.url + archive.name, sha, models, progress=lambda d, t: seen.append((d, t)))
    assert res.resumed_from == half
    assert server.requests[-1][1] == f"bytes={half}-"
    assert seen[-1] == (archive.stat().st_size, archive.stat().st_size)
    assert (res.path / "model.json").is_file()


def test_release_manifest_and_local_archive(bundle_dir, tmp_path):
    """Offline users: install from a release.json next to the archive on disk."""
    folder = tmp_path / "usb"
    folder.mkdir()
    archive, sha = zip_bundle(bundle_dir, folder)
    (folder / "release.json").write_text(json.dumps({"models": [{"file": archive.name, "sha256": sha}]}))
    models = tmp_path / "models"
    res = run_cli("install", "--release", str(folder / "release.json"), models_dir=models)
    assert res.returncode == 0, res.stderr
    assert (models / "demo-model" / "model.json").is_file()
    bad = run_cli("install", "--url", str(archive), models_dir=models)
    assert bad.returncode == 2 and "--sha256" in bad.stderr


def test_version_and_default_model_lookup(tmp_path, bundle_dir, monkeypatch):
    from engine import __version__
    from engine.config import default_model_dir, require_model_dir

    res = subprocess.run([sys.executable, "-m", "engine", "--version"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.strip() == f"rsitr engine {__version__}"
    monkeypatch.delenv("RSITR_MODEL", raising=False)
    monkeypatch.setenv("RSITR_MODELS_DIR", str(tmp_path / "empty"))
    assert default_model_dir() is None
    with pytest.raises(Exception, match="models install"):
        require_model_dir(None)
    models = tmp_path / "models"
    archive, sha = zip_bundle(bundle_dir, tmp_path)
    assert install_archive_url(str(archive), sha, models).path.is_dir()
    monkeypatch.setenv("RSITR_MODELS_DIR", str(models))
    assert default_model_dir() == models / "demo-model"


def test_only_http_https_and_file_urls(tmp_path):
    res = run_cli("install", "--url", "ftp://127.0.0.1/pir-lite.zip", "--sha256", "0" * 64, models_dir=tmp_path)
    assert res.returncode == 2 and "http(s)://" in res.stderr and not (tmp_path / "pir-lite").exists()


def test_models_list_rows_are_the_api_rows(bundle_dir, tmp_path, cache, monkeypatch):
    """`models list --json` and `GET /models` (Engine.models) give the same row per bundle, and the row reports
    the image encoder's orientations from model.json (1 when absent)."""
    import shutil

    from engine.service import Engine

    models = tmp_path / "models"
    plain, rotated = models / "plain", models / "rotated"
    shutil.copytree(bundle_dir, plain)
    shutil.copytree(bundle_dir, rotated)
    meta = json.loads((rotated / "model.json").read_text())
    meta.update(name="rotated", image_orientations=4)
    (rotated / "model.json").write_text(json.dumps(meta))
    monkeypatch.setenv("RSITR_MODEL", str(plain))  # the default, for the CLI's listing and the server alike
    res = run_cli("list", "--json", models_dir=models)
    assert res.returncode == 0, res.stderr
    cli_rows = {m["name"]: m for m in json.loads(res.stdout)["models"]}
    monkeypatch.setenv("RSITR_MODELS_DIR", str(models))
    api_rows = {m["name"]: m for m in Engine(default_model=plain, root=cache).models()}
    plain_name = json.loads((plain / "model.json").read_text())["name"]
    assert api_rows.keys() == cli_rows.keys() == {plain_name, "rotated"}
    for name, row in api_rows.items():
        assert row == cli_rows[name]
    assert api_rows["rotated"]["image_orientations"] == 4
    assert api_rows[plain_name]["image_orientations"] == 1
    text = run_cli("list", models_dir=models).stdout
    assert "4 orientations" in text and text.count("orientations") == 1
