"""``make stress``: slow reliability checks that stay out of ``make test`` (issue 8).

Loopback only (127.0.0.1), bounded loops. Each check prints one line; a JSON summary goes to
``--out`` (default ``$TMPDIR/rsitr_stress.json``). Exit status 1 when a check fails.

Checks:
  load          N client threads POST /search for D seconds against a real ``serve``: requests/s, latency, errors
  kill-index    SIGKILL ``serve`` while /index runs (several trials): restart time, resume, embeddings equal
                to an uninterrupted run, no store left complete early
  kill-search   SIGKILL ``serve`` under search load: store files unchanged, next request after restart works
  disk-full     index into a 256 KiB tmpfs (real ENOSPC; skipped without mount rights): one-line error, partial
  parent-death  SIGKILL the parent of ``serve --parent-pid``: time until the engine is gone
  plugin-crash  the plugin's EngineManager: time to detect a SIGKILLed engine and to restart it (needs QGIS)
  fuzz          schemathesis over the OpenAPI schema (many examples per operation), hypothesis over the grid
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tests.bundles import build_synthetic_bundle  # noqa: E402
from tests.engine.rasters import colour_quadrants, rgb_pattern, write_raster  # noqa: E402


class Serve:
    """A real ``python -m engine serve`` on a free loopback port."""

    def __init__(self, work: Path, bundle: Path, *extra: str) -> None:
        self.env = dict(
            os.environ, RSITR_CACHE=str(work / "cache"), RSITR_CONFIG=str(work / "cfg"), PYTHONPATH=str(ROOT)
        )
        self.argv = [
            sys.executable,
            "-m",
            "engine",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--model",
            str(bundle),
            "--allowed-root",
            str(work),
            *extra,
        ]
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.headers: dict[str, str] = {}

    def start(self, timeout: float = 120) -> float:
        """Start and wait for the ready line; returns the seconds it took."""
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            self.argv, env=self.env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        box: list[str] = []
        reader = threading.Thread(target=lambda: box.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if not box or not box[0].strip():
            self.kill()
            raise RuntimeError("serve printed no ready line")
        ready = json.loads(box[0])
        self.url = ready["url"]
        self.headers = {"Authorization": "Bearer " + Path(ready["token_file"]).read_text().strip()}
        return time.monotonic() - t0

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def post(self, path: str, body: dict, timeout: float = 60):
        import httpx

        return httpx.post(self.url + path, json=body, headers=self.headers, timeout=timeout)

    def get(self, path: str, timeout: float = 60):
        import httpx

        return httpx.get(self.url + path, headers=self.headers, timeout=timeout)

    def wait_job(self, job_id: str, timeout: float = 600) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.get(f"/jobs/{job_id}").json()
            if job["state"] in ("done", "failed", "cancelled"):
                return job
            time.sleep(0.1)
        raise RuntimeError(f"job {job_id} did not finish")


def _digest(store: Path) -> dict[str, str]:
    return {p.name: hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(store.iterdir()) if p.is_file()}


# --------------------------------------------------------------------------- checks
def check_load(work: Path, bundle: Path, seconds: float, clients: int) -> dict:
    import httpx

    raster = write_raster(work / "load.tif", rgb_pattern(1024, 1024, seed=1))
    srv = Serve(work, bundle)
    srv.start()
    try:
        job = srv.wait_job(srv.post("/index", {"raster": str(raster), "tile": 64}).json()["job_id"])
        assert job["state"] == "done", job
        words = ["red", "a river", "green fields", "blue water", "a dense forest", "houses", "roads", "bare soil"]
        lat: list[float] = []
        codes: dict[int, int] = {}
        errors: list[str] = []
        lock = threading.Lock()
        stop_at = time.monotonic() + seconds

        def worker(n: int) -> None:
            with httpx.Client(timeout=30, headers=srv.headers) as c:
                i = 0
                while time.monotonic() < stop_at and i < 100_000:
                    q = f"{words[(n + i) % len(words)]} {i % 50}"  # varied: the query cache is not enough
                    t0 = time.perf_counter()
                    try:
                        r = c.post(srv.url + "/search", json={"query": q, "rasters": [str(raster)], "k": 20})
                        with lock:
                            lat.append(time.perf_counter() - t0)
                            codes[r.status_code] = codes.get(r.status_code, 0) + 1
                    except httpx.HTTPError as exc:
                        with lock:
                            errors.append(type(exc).__name__)
                    i += 1

        t0 = time.monotonic()
        threads = [threading.Thread(target=worker, args=(n,)) for n in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(seconds + 60)
        took = time.monotonic() - t0
        health = srv.get("/health").status_code
    finally:
        srv.stop()
    lat.sort()
    n = len(lat)
    res = {
        "clients": clients,
        "seconds": round(took, 1),
        "tiles": job["total"],
        "requests": n,
        "req_per_s": round(n / took, 1),
        "p50_ms": round(1000 * lat[n // 2], 1) if n else None,
        "p95_ms": round(1000 * lat[int(n * 0.95)], 1) if n else None,
        "status": codes,
        "transport_errors": len(errors),
        "health_after": health,
    }
    res["ok"] = n > 0 and set(codes) == {200} and not errors and health == 200
    return res


def check_kill_index(work: Path, bundle: Path, trials: int) -> dict:
    import numpy as np

    from engine.indexer import IndexParams, index_raster
    from engine.service import Engine
    from engine.store import open_store

    raster = write_raster(work / "kill.tif", rgb_pattern(1024, 1024, seed=5))
    ref_root = work / "reference"
    enc = Engine(default_model=bundle, root=ref_root, threads=1).encoder()
    ref = index_raster(raster, enc, IndexParams(tile=32), ref_root)
    ref_store = open_store(ref.store_id, ref_root)
    out = {"trials": [], "tiles": ref.n_tiles}
    ok = True
    for trial in range(trials):
        tw = work / f"kill{trial}"
        tw.mkdir()
        srv = Serve(tw, bundle, "--allowed-root", str(work))  # a fresh cache per trial, the same raster
        srv.start()
        job_id = srv.post("/index", {"raster": str(raster), "tile": 32}).json()["job_id"]
        target = (trial + 1) / (trials + 1)  # kill at different points of the run
        deadline = time.monotonic() + 300
        done = 0
        while time.monotonic() < deadline:
            job = srv.get(f"/jobs/{job_id}").json()
            done = job["done"]
            if job["total"] and done >= target * job["total"] or job["state"] != "running" and done:
                break
            time.sleep(0.02)
        t_kill = time.monotonic()
        srv.kill()
        states = [json.loads(m.read_text())["state"] for m in (tw / "cache" / "stores").glob("*/manifest.json")]
        restart_s = srv.start()
        job = srv.wait_job(srv.post("/index", {"raster": str(raster), "tile": 32}).json()["job_id"])
        total_s = time.monotonic() - t_kill
        store = open_store(job["store_id"], tw / "cache" / "stores")
        same = bool(
            np.array_equal(store.windows, ref_store.windows)
            and np.allclose(store.embeddings.astype(np.float32), ref_store.embeddings.astype(np.float32), atol=2e-3)
        )
        search = srv.post("/search", {"query": "red", "rasters": [str(raster)], "k": 5}).status_code
        srv.stop()
        trial_ok = job["state"] == "done" and same and search == 200 and "complete" not in states
        ok &= trial_ok
        out["trials"].append(
            {
                "killed_at_done": done,
                "states_after_kill": states,
                "restart_s": round(restart_s, 2),
                "kill_to_resumed_done_s": round(total_s, 2),
                "equal_to_uninterrupted": same,
                "search_after": search,
                "ok": trial_ok,
            }
        )
    out["ok"] = ok
    return out


def check_kill_search(work: Path, bundle: Path) -> dict:
    import httpx

    tw = work / "ks"
    tw.mkdir()
    raster = write_raster(tw / "quad.tif", colour_quadrants(64))
    srv = Serve(tw, bundle)
    srv.start()
    job = srv.wait_job(srv.post("/index", {"raster": str(raster), "tile": 64}).json()["job_id"])
    store = tw / "cache" / "stores" / job["store_id"]
    before = _digest(store)
    answered, errors = [], []

    def hammer() -> None:
        with httpx.Client(timeout=10, headers=srv.headers) as c:
            for i in range(10_000):
                try:
                    answered.append(
                        c.post(srv.url + "/search", json={"query": f"q{i}", "rasters": [str(raster)]}).status_code
                    )
                except httpx.HTTPError as exc:
                    errors.append(type(exc).__name__)
                    return

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(2)
    srv.kill()
    for t in threads:
        t.join(30)
    unchanged = _digest(store) == before
    restart_s = srv.start()
    r = srv.post("/search", {"query": "blue", "rasters": [str(raster)], "k": 1})
    srv.stop()
    ok = unchanged and set(answered) == {200} and r.status_code == 200 and r.json()["results"][0]["tile_id"] == 2
    return {
        "answered_before_kill": len(answered),
        "client_errors_at_kill": sorted(set(errors)),
        "store_unchanged": unchanged,
        "restart_s": round(restart_s, 2),
        "search_after": r.status_code,
        "ok": ok,
    }


def check_disk_full(work: Path, bundle: Path) -> dict:
    """A real full filesystem: a 256 KiB tmpfs as RSITR_CACHE (needs mount rights, else skipped)."""
    mnt = work / "tmpfs"
    mnt.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)],  # noqa: S607
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        return {"skipped": f"cannot mount a tmpfs here: {mounted.stderr.strip()[:100]}", "ok": True}
    try:
        raster = write_raster(work / "df.tif", rgb_pattern(1024, 1024, seed=3))
        env = dict(os.environ, RSITR_CACHE=str(mnt), RSITR_CONFIG=str(work / "cfg"), PYTHONPATH=str(ROOT))
        r = subprocess.run(
            [sys.executable, "-m", "engine", "index", str(raster), "--model", str(bundle), "--tile", "16", "--quiet"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        states = [json.loads(m.read_text())["state"] for m in (mnt / "stores").glob("*/manifest.json")]
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        ok = (
            r.returncode == 2
            and len(lines) == 1
            and "disk full" in lines[0]
            and "Traceback" not in r.stderr
            and "complete" not in states
        )
        return {"exit": r.returncode, "stderr": r.stderr.strip()[:200], "store_states": states, "ok": ok}
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)  # noqa: S607


_PARENT = """
import subprocess, sys, time, os
argv = {argv!r} + ["--parent-pid", str(os.getpid())]
child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
print(child.pid, flush=True)
time.sleep(300)
"""


def check_parent_death(work: Path, bundle: Path, trials: int) -> dict:
    from engine.lifeline import pid_alive

    times = []
    for trial in range(trials):
        tw = work / f"pd{trial}"
        tw.mkdir()
        srv = Serve(tw, bundle)
        parent = subprocess.Popen(
            [sys.executable, "-c", _PARENT.format(argv=srv.argv)],
            env=srv.env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        child = int(parent.stdout.readline())
        json.loads(parent.stdout.readline())  # ready
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        t0 = time.monotonic()
        while pid_alive(child) and time.monotonic() - t0 < 15:
            time.sleep(0.02)
        times.append(round(time.monotonic() - t0, 2))
        if pid_alive(child):
            os.kill(child, signal.SIGKILL)
    return {"exit_after_parent_kill_s": times, "max_s": max(times), "ok": max(times) < 5}


_PLUGIN = """
import json, os, signal, sys, time
from pathlib import Path
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, {root!r})
from qgis.core import QgsApplication, QgsSettings
from qgis.PyQt.QtCore import QCoreApplication, QSettings
app = QgsApplication([], False)
app.initQgis()
from rsitr_qgis.engine_process import EngineManager
from rsitr_qgis.settings import Settings
base = Path({base!r})
settings = Settings(QgsSettings(str(base / "settings.ini"), QSettings.Format.IniFormat))
settings.set("cache_dir", str(base / "cache"))
settings.set("model_dir", {bundle!r})
m = EngineManager(settings)
m.token_file = str(base / "token")
out = []
for trial in range({trials}):
    t0 = time.monotonic()
    m.ensure_running(timeout=120)
    start = time.monotonic() - t0
    pid = m.pid()
    os.kill(pid, signal.SIGKILL)
    t0 = time.monotonic()
    while m.state == "running" and time.monotonic() - t0 < 30:
        QCoreApplication.processEvents()
        time.sleep(0.005)
    detect = time.monotonic() - t0
    state = m.state
    t0 = time.monotonic()
    m.ensure_running(timeout=120)
    restart = time.monotonic() - t0
    out.append({{"start_s": round(start, 2), "state_after_kill": state, "detect_s": round(detect, 3),
                "restart_s": round(restart, 2), "new_pid": m.pid() != pid}})
m.stop()
print(json.dumps(out), flush=True)
app.exitQgis()
"""


def check_plugin_crash(work: Path, bundle: Path, trials: int) -> dict:
    try:
        import qgis.core  # noqa: F401
    except ImportError:
        return {"skipped": "python3-qgis not installed", "ok": True}
    tw = work / "plugin"
    tw.mkdir()
    script = _PLUGIN.format(root=str(ROOT), base=str(tw), bundle=str(bundle), trials=trials)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, cwd=ROOT)
    try:
        rows = json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": r.stderr[-500:], "ok": False}
    ok = all(x["state_after_kill"] == "crashed" and x["new_pid"] for x in rows)
    return {
        "trials": rows,
        "detect_s_max": max(x["detect_s"] for x in rows),
        "restart_s_median": statistics.median(x["restart_s"] for x in rows),
        "ok": ok,
    }


def check_fuzz(work: Path, bundle: Path, examples: int) -> dict:
    import itertools

    import schemathesis
    from fastapi.testclient import TestClient
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from schemathesis import GenerationMode

    from engine.api import create_app
    from engine.service import Engine
    from tests.engine import test_grid

    token = "s" * 24
    data = work / "fuzz"
    data.mkdir()
    write_raster(data / "quad.tif", colour_quadrants(64))
    app = create_app(Engine(default_model=bundle, root=work / "fuzzcache", threads=1), token, [data])
    statuses: dict[int, int] = {}
    failures: list[str] = []
    t0 = time.monotonic()
    with TestClient(app, raise_server_exceptions=False) as client:
        client.post(
            "/index", json={"raster": str(data / "quad.tif"), "tile": 64}, headers={"Authorization": f"Bearer {token}"}
        )
        schema = schemathesis.openapi.from_asgi(
            "/openapi.json", client.app, headers={"Authorization": f"Bearer {token}"}
        )
        ops = [r.ok() for r in schema.get_all_operations()]
        for op, mode in itertools.product(ops, GenerationMode):

            @given(case=op.as_strategy(generation_mode=mode))
            @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            def check(case):
                r = case.call(headers={"Authorization": f"Bearer {token}"})
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                if r.status_code >= 500:
                    failures.append(f"{case.method} {case.path}: {r.status_code} {r.text[:200]}")

            check()
    api_s = time.monotonic() - t0
    t0 = time.monotonic()
    grid = given(
        w=st.integers(1, 3000),
        h=st.integers(1, 3000),
        tile=st.integers(1, 600),
        frac=st.floats(0.1, 1.0),
        scale=st.sampled_from([0.5, 1.0, 1.5, 4.0]),
    )(
        settings(max_examples=examples * 20, deadline=None, database=None)(
            test_grid.test_grid_properties.hypothesis.inner_test
        )
    )
    grid_error = ""
    try:
        grid()
    except Exception as exc:  # noqa: BLE001 - reported, the run goes on
        grid_error = f"{type(exc).__name__}: {exc}"[:300]
    return {
        "api_requests": sum(statuses.values()),
        "api_statuses": dict(sorted(statuses.items())),
        "api_5xx": failures[:5],
        "api_s": round(api_s, 1),
        "grid_examples": examples * 20,
        "grid_s": round(time.monotonic() - t0, 1),
        "grid_error": grid_error,
        "ok": not failures and not grid_error,
    }


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="*", help="run only these checks")
    p.add_argument("--seconds", type=float, default=20.0, help="load test duration")
    p.add_argument("--clients", type=int, default=4, help="load test client threads")
    p.add_argument("--trials", type=int, default=3, help="kill/restart trials")
    p.add_argument("--examples", type=int, default=100, help="schemathesis examples per operation and mode")
    p.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "rsitr_stress.json"))
    args = p.parse_args(argv)
    checks: dict[str, Callable[[Path, Path], dict]] = {
        "load": lambda w, b: check_load(w, b, args.seconds, args.clients),
        "kill-index": lambda w, b: check_kill_index(w, b, args.trials),
        "kill-search": check_kill_search,
        "disk-full": check_disk_full,
        "parent-death": lambda w, b: check_parent_death(w, b, args.trials),
        "plugin-crash": lambda w, b: check_plugin_crash(w, b, args.trials),
        "fuzz": lambda w, b: check_fuzz(w, b, args.examples),
    }
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="rsitr_stress_") as tmp:
        work = Path(tmp)
        bundle = build_synthetic_bundle(work / "bundle", hashes=True)
        for name, fn in checks.items():
            if args.only and name not in args.only:
                continue
            cw = work / name
            cw.mkdir()
            t0 = time.monotonic()
            try:
                res = fn(cw, bundle)
            except Exception as exc:  # noqa: BLE001 - one failed check does not stop the others
                res = {"error": f"{type(exc).__name__}: {exc}"[:500], "ok": False}
            res["took_s"] = round(time.monotonic() - t0, 1)
            results[name] = res
            print(f"{'ok  ' if res['ok'] else 'FAIL'} {name}: {json.dumps(res, default=str)}", flush=True)
    Path(args.out).write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"summary written to {args.out}")
    return 0 if all(r["ok"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
