"""Engine setup through the real QgsTask, real venvs, real pip (offline from a wheel folder) and the engine's
real `models install` against a local HTTP server: success, failures that install nothing, cancel, a repeated
setup that changes nothing, removal, and the panel / Processing offering setup when there is no engine."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from qgis.core import QgsApplication, QgsSettings
from qgis.PyQt.QtCore import QSettings

from rsitr_qgis.setup import installer, offer, plan  # noqa: E402
from rsitr_qgis.setup.task import SetupTask  # noqa: E402
from tests.plugin.conftest import wait_until
from tests.plugin.setup_helpers import ServerState, make_dist, make_model_archive, serve


@pytest.fixture(scope="module")
def world(tmp_path_factory, qgis_app):
    base = tmp_path_factory.mktemp("setup")
    model = make_model_archive(base)
    dist_dir, wheels = make_dist(base, model)
    # an update of the model (same bundle, another archive and checksum): what the failure tests try to install
    data = (base / "release" / model["file"]).read_bytes() + b""
    import hashlib
    import zipfile

    update = base / "release" / "update.zip"
    update.write_bytes(data)
    with zipfile.ZipFile(update, "a") as zf:
        zf.comment = b"update"
    sha = hashlib.sha256(update.read_bytes()).hexdigest()
    model2 = dict(model, file=f"synthetic-0.0.2-{sha[:16]}.zip", sha256=sha, size=update.stat().st_size)
    update.rename(base / "release" / model2["file"])
    state = ServerState(base / "release")
    server, url = serve(state)
    yield {
        "base": base,
        "dist": plan.load_dist(dist_dir),
        "wheels": wheels,
        "model": model,
        "model2": model2,
        "state": state,
        "url": url,
    }
    server.shutdown()


def run_task(p: plan.Plan, cancel_when=None, timeout: float = 180):
    got = []
    task = SetupTask(p, lambda result, error: got.append((result, error)))
    QgsApplication.taskManager().addTask(task)
    if cancel_when is not None:
        wait_until(lambda: cancel_when(task) or got, timeout, "the point to cancel")
        task.cancel()
    wait_until(lambda: got, timeout, "setup task")
    return got[0]


def options(world, engine_dir: Path, **kw) -> plan.SetupOptions:
    base = dict(
        engine_dir=engine_dir,
        python=str(Path("/usr/bin/python3")),
        wheel_dir=str(world["wheels"] / kw.pop("flavour", "cpu")),
        release_url=world["url"],
    )
    base.update(kw)
    return plan.SetupOptions(**base)


def snapshot(engine_dir: Path) -> dict:
    """What must stay unchanged when a setup fails: the venv (inode, python), the record, the models."""
    venv = engine_dir / "venv"
    return {
        "venv_inode": venv.stat().st_ino,
        "venv_mtime": venv.stat().st_mtime_ns,
        "record": (engine_dir / "install.json").read_text(),
        "models": sorted(p.name for p in (engine_dir / "models").iterdir() if not p.name.startswith(".")),
        "entries": sorted(p.name for p in engine_dir.iterdir()),
    }


def engine_version(engine_dir: Path) -> str:
    py = plan.venv_python(engine_dir / "venv")
    out = subprocess.run([str(py), "-m", "engine", "--version"], capture_output=True, text=True, cwd=engine_dir)
    return out.stdout


@pytest.fixture(scope="module")
def installed(world, tmp_path_factory):
    """A first successful setup (the "earlier working engine" of the failure tests)."""
    engine_dir = tmp_path_factory.mktemp("profile") / "rsitr" / "engine"
    p = plan.build_plan(options(world, engine_dir), world["dist"])
    t0 = time.monotonic()
    result, error = run_task(p)
    assert error == "", error
    world["first_setup_s"] = time.monotonic() - t0
    return engine_dir, result


def test_setup_installs_engine_and_model(installed, world):
    engine_dir, result = installed
    assert result.changed and result.interpreter == str(engine_dir / "venv" / "bin" / "python")
    assert "rsitr engine 0.0.1 test cpu" in engine_version(engine_dir)  # the CPU requirements were installed
    bundle = Path(result.model_dir)
    assert bundle == engine_dir / "models" / "synthetic" and json.loads((bundle / "model.json").read_text())["name"]
    record = json.loads((engine_dir / "install.json").read_text())
    assert record["model"]["sha256"] == world["model"]["sha256"] and record["venv"]["device"] == "cpu"
    assert sorted(p.name for p in engine_dir.iterdir()) == ["install.json", "models", "venv"]  # no staging left


def test_repeated_setup_changes_nothing(installed, world):
    engine_dir, _ = installed
    before = snapshot(engine_dir)
    n_requests = len(world["state"].requests)
    result, error = run_task(plan.build_plan(options(world, engine_dir), world["dist"]))
    assert error == "" and not result.changed and "up to date" in result.message
    assert snapshot(engine_dir) == before and len(world["state"].requests) == n_requests  # no download either


@pytest.mark.parametrize(
    "case, expect",
    [
        ("checksum", "checksum mismatch"),
        ("truncated", "truncated"),
        ("http404", "HTTP 404"),
        ("no_network", "cannot reach"),
    ],
)
def test_failed_model_download_installs_nothing(installed, world, case, expect):
    engine_dir, _ = installed
    before = snapshot(engine_dir)
    model = dict(world["model2"])
    release_url = world["url"]
    if case == "checksum":
        model["sha256"] = "0" * 64
    elif case == "http404":
        model["file"] = "missing-0.0.1-0000000000000000.zip"
    elif case == "no_network":
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            release_url = f"http://127.0.0.1:{s.getsockname()[1]}"  # closed port once the socket is gone
    dist = plan.EngineDist(**{**world["dist"].__dict__, "models": [plan.ModelRelease(**model)]})
    world["state"].mode = "truncate" if case == "truncated" else "normal"
    try:
        result, error = run_task(plan.build_plan(options(world, engine_dir, release_url=release_url), dist))
    finally:
        world["state"].mode = "normal"
    assert result is None and expect in error and "\n" not in error and error.startswith("install the model"), error
    assert snapshot(engine_dir) == before
    assert "rsitr engine 0.0.1 test cpu" in engine_version(engine_dir)


def test_failed_rebuild_keeps_the_earlier_venv(installed, world):
    """Repair (force) with a GPU switch: the new venv is built in staging, the model then fails; the old venv
    (CPU) is still the one in place and works."""
    engine_dir, _ = installed
    before = snapshot(engine_dir)
    model = dict(world["model"], sha256="1" * 64)
    dist = plan.EngineDist(**{**world["dist"].__dict__, "models": [plan.ModelRelease(**model)]})
    logged = []
    p = plan.build_plan(options(world, engine_dir, device="gpu", flavour="gpu", force=True), dist)
    with pytest.raises(plan.SetupError, match="checksum mismatch"):
        installer.install(p, installer.Hooks(log=logged.append))
    assert any("requirements-engine-gpu.txt" in line for line in logged)  # the GPU venv really was built (in staging)
    assert snapshot(engine_dir) == before and "test cpu" in engine_version(engine_dir)


def test_cancel_halfway_kills_the_download_and_installs_nothing(installed, world):
    engine_dir, _ = installed
    before = snapshot(engine_dir)
    world["state"].mode = "slow"  # 1 KiB every 100 ms: the download takes about 7 s
    n_requests = len(world["state"].requests)
    seen = []

    def downloading_for_a_second(task) -> bool:
        if len(world["state"].requests) > n_requests and not seen:
            seen.append(time.monotonic())
        return bool(seen) and time.monotonic() - seen[0] > 1.0

    try:
        t0 = time.monotonic()
        p = plan.build_plan(options(world, engine_dir, force=True), world["dist"])
        result, error = run_task(p, cancel_when=downloading_for_a_second)  # halfway through the model download
        t_cancel = time.monotonic()
        wait_until(lambda: world["state"].client_gone, 10, "the download to be dropped")
    finally:
        world["state"].mode = "normal"
    assert result is None and error == "setup cancelled"
    assert world["state"].client_gone[-1] - t_cancel < 5 and t_cancel - t0 < 120
    assert snapshot(engine_dir) == before and "test cpu" in engine_version(engine_dir)
    assert not list(engine_dir.glob(".staging-*"))


def test_removal_deletes_engine_and_models_and_resets_settings(world, tmp_path):
    from rsitr_qgis.engine_process import EngineManager
    from rsitr_qgis.settings import Settings
    from rsitr_qgis.setup.dialog import SetupController

    settings = Settings(QgsSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    engine_dir = tmp_path / "engine"
    settings.set("engine_dir", str(engine_dir))
    settings.set("start_timeout_s", 60)
    manager = EngineManager(settings)
    manager.token_file = str(tmp_path / "token")
    controller = SetupController(None, manager, dist_dir=world["dist"].folder)
    finished = []
    controller.setupFinished.connect(lambda r, e: finished.append((r, e)))
    controller.start(options(world, engine_dir))
    wait_until(lambda: finished, 180, "setup through the controller")
    result, error = finished[0]
    assert error == ""
    assert settings.get("interpreter") == str(engine_dir / "venv" / "bin" / "python") == settings.interpreter()
    assert settings.get("model_dir") == str(engine_dir / "models" / "synthetic")
    program, args = manager.command(1, str(tmp_path / "token"))  # (the desktop e2e test starts it for real)
    assert program == str(engine_dir / "venv" / "bin" / "python") and str(engine_dir / "models" / "synthetic") in args
    manager.stop()  # the controller started it; in a checkout, cwd = checkout, so it would run the checkout's engine
    message = controller.remove(confirm=False)
    assert "removed" in message and not engine_dir.exists()
    assert settings.get("interpreter") == "" and settings.get("model_dir") == ""
    assert settings.interpreter() != str(engine_dir / "venv" / "bin" / "python")
    with pytest.raises(plan.SetupError, match="not created by RSITR setup"):
        (tmp_path / "other").mkdir()
        installer.remove(tmp_path / "other")


def test_no_engine_offers_setup(tmp_path):
    assert offer.engine_missing("engine exited during start: /usr/bin/python3: No module named engine")
    assert offer.engine_missing("cannot start the engine interpreter '/x/python' (set it in the RSITR settings)")
    assert not offer.engine_missing("engine not reachable at http://127.0.0.1:1")
    msg = offer.processing_message("engine exited during start: /usr/bin/python3: No module named engine")
    assert "\n" not in msg and msg.endswith("run Raster > RSITR text search > Set up engine…")
    assert offer.processing_message("not reachable").startswith("RSITR engine unavailable")


INTERRUPTED_SETUP = """
import pickle, sys
from rsitr_qgis.setup import installer
plan = pickle.load(open(sys.argv[1], "rb"))
installer.install(plan, installer.Hooks(log=lambda line: print(line, flush=True)))
"""


def test_interrupted_setup_keeps_the_earlier_engine_and_is_cleaned_up(installed, world, tmp_path):
    """QGIS killed in the middle of a setup (SIGKILL while the new venv is being built): the earlier engine still
    works, and the next setup removes the half-built staging folder and succeeds."""
    import os
    import pickle
    import signal
    import sys

    from tests.conftest import PROJECT_ROOT

    engine_dir, _ = installed
    before = snapshot(engine_dir)
    p = plan.build_plan(options(world, engine_dir, force=True), world["dist"], staging_name=".staging-999999")
    (tmp_path / "plan.pkl").write_bytes(pickle.dumps(p))
    (tmp_path / "run.py").write_text(INTERRUPTED_SETUP)
    proc = subprocess.Popen(
        [sys.executable, str(tmp_path / "run.py"), str(tmp_path / "plan.pkl")], cwd=str(PROJECT_ROOT),
        stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=str(PROJECT_ROOT)),
    )  # fmt: skip
    for line in proc.stdout:
        if line.startswith("RSITR setup: install the engine's dependencies"):
            break  # the staging venv exists now
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    staging = engine_dir / ".staging-999999"
    assert staging.is_dir() and (staging / "venv").is_dir()  # what the killed setup left
    time.sleep(3)  # the orphaned pip finishes or dies
    assert "test cpu" in engine_version(engine_dir)
    assert {k: v for k, v in snapshot(engine_dir).items() if k != "entries"} == {
        k: v for k, v in before.items() if k != "entries"
    }
    result, error = run_task(plan.build_plan(options(world, engine_dir), world["dist"]))
    assert error == "" and not staging.exists() and not result.changed  # cleaned up; the engine was up to date


def test_qgis_proxy_setting_reaches_pip_and_the_model_download(installed, world, tmp_path):
    """QGIS's proxy (Options > Network) becomes HTTP(S)_PROXY for the setup's commands: pip asks the proxy for the
    package index, the engine fetches the model archive through it (host names that do not resolve)."""
    from rsitr_qgis.setup.proxy import proxy_env, qgis_proxy_env

    proxy_state = ServerState(world["state"].root)
    proxy, proxy_url = serve(proxy_state)  # forwards nothing: serves the release folder for any host
    s = QgsSettings()
    values = {"proxyEnabled": True, "proxyType": "HttpProxy", "proxyHost": "127.0.0.1",
              "proxyPort": proxy.server_address[1], "proxyUser": "me", "proxyPassword": "p@ss"}  # fmt: skip
    for key, value in values.items():
        s.setValue(f"proxy/{key}", value)
    try:
        env = qgis_proxy_env()
        assert env["HTTPS_PROXY"] == f"http://me:p%40ss@127.0.0.1:{proxy.server_address[1]}"
        engine_dir, _ = installed
        before = snapshot(engine_dir)
        model = plan.ModelRelease(**world["model2"])
        dist = plan.EngineDist(**{**world["dist"].__dict__, "models": [model]})
        opts = options(world, engine_dir, wheel_dir="", index_url="http://pypi.example.invalid/simple",
                       release_url="http://models.example.invalid", force=True)  # fmt: skip
        got = []
        task = SetupTask(plan.build_plan(opts, dist), lambda r, e: got.append((r, e)), env)
        QgsApplication.taskManager().addTask(task)
        wait_until(lambda: got, 180, "setup through the proxy")
        assert got[0][0] is None and "rsitr-testdep" in got[0][1], got[0][1]  # the proxy has no package index
        assert any(r.startswith("http://pypi.example.invalid/simple/rsitr-testdep") for r in proxy_state.requests)
        assert snapshot(engine_dir) == before

        opts.force, opts.index_url, opts.wheel_dir = False, "", str(world["wheels"] / "cpu")  # venv up to date
        got.clear()
        task = SetupTask(plan.build_plan(opts, dist), lambda r, e: got.append((r, e)), env)
        QgsApplication.taskManager().addTask(task)
        wait_until(lambda: got, 180, "model through the proxy")
        assert got[0][1] == "" and got[0][0].changed
        assert f"http://models.example.invalid/{model.file}" in proxy_state.requests
    finally:
        for key in values:
            s.remove(f"proxy/{key}")
        proxy.shutdown()
    assert proxy_env({"proxyEnabled": "false", "proxyHost": "h"}) == {}
    assert proxy_env({"proxyEnabled": "true", "proxyType": "DefaultProxy", "proxyHost": "h"}) == {}
    socks = proxy_env({"proxyEnabled": "true", "proxyType": "Socks5Proxy", "proxyHost": "h", "proxyPort": "1080",
                       "noProxyUrls": ["https://intranet.example.org/x"]})  # fmt: skip
    assert socks["https_proxy"] == "socks5://h:1080" and socks["NO_PROXY"] == "127.0.0.1,localhost,intranet.example.org"
