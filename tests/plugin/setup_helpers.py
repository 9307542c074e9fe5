"""Helpers for the engine-setup tests: hand-made wheels, a small engine_dist, a model release archive and a
local HTTP server (127.0.0.1) that can serve files normally, slowly, truncated or not at all."""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import threading
import time
import urllib.parse
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import PROJECT_ROOT

CHECKOUT_PYTHON = PROJECT_ROOT / ".venv" / "bin" / "python"


def make_wheel(folder: Path, dist: str, version: str, files: dict[str, str]) -> Path:
    """A pure-Python wheel with ``files`` (path in site-packages -> text), installable by pip."""
    folder.mkdir(parents=True, exist_ok=True)
    norm = dist.replace("-", "_")
    info = f"{norm}-{version}.dist-info"
    files = dict(files)
    files[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\nRequires-Python: >=3.9\n"
    files[f"{info}/WHEEL"] = "Wheel-Version: 1.0\nGenerator: rsitr-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(text.encode())}")
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = "\n".join(record) + "\n"
    path = folder / f"{norm}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return path


# The test engine: `--version` reports which runtime dependency pip installed (cpu or gpu); every other command
# runs the checkout's real engine CLI (models install: real download, checksum check and unpack; serve: real).
TEST_ENGINE_MAIN = """
import os, sys
if sys.argv[1:] == ["--version"]:
    try:
        import rsitr_testdep
        print("rsitr engine 0.0.1 test", rsitr_testdep.FLAVOUR)
    except ImportError as exc:
        sys.exit(f"broken: {exc}")
    sys.exit(0)
env = dict(os.environ, PYTHONPATH=%(root)r)
os.execve(%(python)r, [%(python)r, "-m", "engine", *sys.argv[1:]], env)
"""


def make_dist(folder: Path, model: dict | None = None, version: str = "0.0.1") -> tuple[Path, Path]:
    """``engine_dist/`` (test engine wheel + requirements + release.json) and the wheel folder for offline pip."""
    dist = folder / "engine_dist"
    wheels = folder / "wheels"
    dist.mkdir(parents=True, exist_ok=True)
    main = TEST_ENGINE_MAIN % {"root": str(PROJECT_ROOT), "python": str(CHECKOUT_PYTHON)}
    make_wheel(
        dist, "rsitr", version, {"engine/__init__.py": f"__version__ = {version!r}\n", "engine/__main__.py": main}
    )
    for flavour in ("cpu", "gpu"):
        make_wheel(wheels / flavour, "rsitr-testdep", "1.0", {"rsitr_testdep.py": f"FLAVOUR = {flavour!r}\n"})
        name = "requirements-engine.txt" if flavour == "cpu" else "requirements-engine-gpu.txt"
        (dist / name).write_text("rsitr-testdep==1.0\n")
    release = {
        "engine": {"version": version},
        "requirements": {"cpu": "requirements-engine.txt", "gpu": "requirements-engine-gpu.txt"},
        "models": [model] if model else [],
    }
    (dist / "release.json").write_text(json.dumps(release))
    return dist, wheels


def make_model_archive(folder: Path) -> dict:
    """A release archive of the synthetic bundle; returns its release.json entry."""
    from tests.bundles import build_synthetic_bundle

    bundle = build_synthetic_bundle(folder / "build" / "synthetic")
    data_path = folder / "synthetic.zip.tmp"
    with zipfile.ZipFile(data_path, "w") as zf:
        for f in sorted(Path(bundle).rglob("*")):
            if f.is_file():
                zf.write(f, f"synthetic/{f.relative_to(bundle).as_posix()}")
    sha = hashlib.sha256(data_path.read_bytes()).hexdigest()
    name = f"synthetic-0.0.1-{sha[:16]}.zip"
    (folder / "release").mkdir(exist_ok=True)
    final = folder / "release" / name
    data_path.replace(final)
    return {"name": "synthetic", "version": "0.0.1", "file": name, "sha256": sha, "size": final.stat().st_size}


@dataclass
class ServerState:
    root: Path
    mode: str = "normal"  # normal | truncate | slow
    delay_s: float = 0.1  # slow mode: 1 KiB per delay
    client_gone: list = field(default_factory=list)  # times a client dropped a slow transfer
    requests: list = field(default_factory=list)


def serve(state: ServerState) -> tuple[http.server.ThreadingHTTPServer, str]:
    """A threaded HTTP server on 127.0.0.1 serving ``state.root``; returns (server, base URL)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):  # noqa: N802
            state.requests.append(self.path)  # a proxy gets absolute URLs: "http://host/path"
            local = urllib.parse.urlsplit(self.path).path if "://" in self.path else self.path
            path = state.root / local.lstrip("/").split("?")[0]
            if not path.is_file():
                self.send_error(404, "Not Found")
                return
            data = path.read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if state.mode == "truncate":
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            step = 1024 if state.mode == "slow" else len(data)
            try:
                for i in range(0, len(data), step):
                    self.wfile.write(data[i : i + step])
                    if state.mode == "slow":
                        self.wfile.flush()
                        time.sleep(state.delay_s)
            except (BrokenPipeError, ConnectionResetError):
                state.client_gone.append(time.monotonic())

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"
