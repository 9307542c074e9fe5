"""HTTP API: auth, limits, allowed roots, jobs, search/describe, schemathesis fuzzing, real `serve`."""

from __future__ import annotations

import itertools
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings

from engine.api import create_app
from engine.service import Engine
from tests.engine.rasters import colour_quadrants, rgb_pattern, write_raster
from tests.engine.serving import serve_argv

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "t" * 20 + "-secret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def api(tmp_path, bundle_dir, cache):
    data = tmp_path / "data"
    data.mkdir()
    write_raster(data / "quad.tif", colour_quadrants(64))
    app = create_app(Engine(default_model=bundle_dir, root=cache, threads=1), TOKEN, [data])
    with TestClient(app, raise_server_exceptions=False) as client:
        client.headers.update(AUTH)
        yield client, data


def _wait(client, job_id, states=("done", "failed", "cancelled"), timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = client.get(f"/jobs/{job_id}").json()
        if job["state"] in states:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job stuck: {job}")


def test_auth_required_everywhere(api):
    client, _ = api
    for method, path in [
        ("get", "/health"),
        ("get", "/models"),
        ("get", "/stores"),
        ("get", "/openapi.json"),
        ("post", "/search"),
        ("post", "/index"),
        ("get", "/jobs/x"),
        ("delete", "/jobs/x"),
        ("post", "/describe"),
    ]:
        for headers in ({"Authorization": ""}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
            r = getattr(client, method)(path, headers=headers)
            assert r.status_code == 401, (method, path, headers)
            assert r.json() == {"detail": "missing or wrong bearer token"}
    assert client.get("/health").json()["provider"] == "CPUExecutionProvider"
    assert client.get("/models").json()["models"][0]["default"] is True


def test_no_cors(api):
    client, _ = api
    r = client.options("/search", headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in {k.lower() for k in r.headers}


@pytest.mark.parametrize(
    "body",
    [
        {"query": "red", "stores": ["0123456789abcdef"], "k": 0},
        {"query": "red", "stores": ["0123456789abcdef"], "k": 1001},
        {"query": "", "stores": ["0123456789abcdef"]},
        {"query": "   ", "stores": ["0123456789abcdef"]},
        {"query": "x" * 1001, "stores": ["0123456789abcdef"]},
        {"query": "red", "stores": ["0123456789abcdef"], "k": -5},
        {"query": "red", "bogus": 1},
    ],
)
def test_limits_422(api, body):
    client, _ = api
    r = client.post("/search", json=body)
    assert r.status_code == 422 and isinstance(r.json()["detail"], str) and "\n" not in r.json()["detail"]


def test_body_limit_413(api):
    client, _ = api
    r = client.post("/search", content=b"{" + b" " * (1 << 20) + b"}", headers={"Content-Type": "application/json"})
    assert r.status_code == 413


def test_paths_403_404(api, tmp_path):
    client, data = api
    outside = write_raster(tmp_path / "outside.tif", rgb_pattern(32, 32))
    (data / "link.tif").symlink_to(outside)
    cases = [
        (str(outside), 403),
        (str(data / ".." / "outside.tif"), 403),
        (str(data / "link.tif"), 403),
        ("/etc/passwd", 403),
        (str(data / "missing.tif"), 404),
    ]
    for path, code in cases:
        for ep, body in [
            ("/index", {"raster": path}),
            ("/search", {"query": "red", "rasters": [path]}),
            ("/describe", {"raster": path, "x": 1, "y": 1}),
        ]:
            r = client.post(ep, json=body)
            assert r.status_code == code, (ep, path, r.text)
    assert client.post("/search", json={"query": "red", "stores": ["0123456789abcdef"]}).status_code == 404
    assert client.post("/index", json={"raster": str(data / "quad.tif"), "model": "nope"}).status_code == 404
    assert client.get("/jobs/nope").status_code == 404


def test_bad_rasters_are_4xx(api):
    client, data = api
    (data / "zero.tif").write_bytes(b"")
    (data / "text.tif").write_text("not a raster")
    for name in ("zero.tif", "text.tif"):
        job = client.post("/index", json={"raster": str(data / name)}).json()
        done = _wait(client, job["job_id"])
        assert done["state"] == "failed" and name in done["error"]
        r = client.post("/describe", json={"raster": str(data / name), "x": 1, "y": 1})
        assert r.status_code == 400 and name in r.json()["detail"]


def test_index_job_search_describe(api):
    client, data = api
    r = client.post("/index", json={"raster": str(data / "quad.tif"), "tile": 64})
    assert r.status_code == 202
    job = _wait(client, r.json()["job_id"])
    assert job["state"] == "done" and job["progress"] == 1.0 and job["total"] == 4 and job["store_id"]
    s = client.post("/search", json={"query": "blue", "rasters": [str(data / "quad.tif")], "k": 2}).json()
    assert [x["rank"] for x in s["results"]] == [1, 2] and s["results"][0]["tile_id"] == 2
    assert s["results"][0]["window"] == [0, 64, 64, 64] and s["results"][0]["authid"] == "EPSG:32633"
    s2 = client.post("/search", json={"query": "blue", "stores": [job["store_id"]], "k": 1}).json()
    assert s2["results"][0]["tile_id"] == 2
    d = client.post("/describe", json={"store": job["store_id"], "tile_id": 0, "top": 3}).json()
    assert d["tile_id"] == 0 and len(d["classes"]) == 3 and len(d["descriptions"]) == 3
    d2 = client.post("/describe", json={"raster": str(data / "quad.tif"), "x": 500_010, "y": 4_999_990}).json()
    assert d2["tile_id"] == 0
    assert client.get("/stores").json()["stores"][0]["state"] == "complete"


def test_job_cancel_and_queue(api):
    client, data = api
    write_raster(data / "big.tif", rgb_pattern(1024, 1024))
    a = client.post("/index", json={"raster": str(data / "big.tif"), "tile": 16}).json()["job_id"]
    b = client.post("/index", json={"raster": str(data / "quad.tif"), "tile": 64}).json()["job_id"]
    assert client.get(f"/jobs/{b}").json()["state"] == "queued"
    assert client.delete(f"/jobs/{b}").json()["state"] == "cancelled"
    running = _wait(client, a, states=("running",))
    deadline = time.time() + 30
    while client.get(f"/jobs/{a}").json()["done"] == 0 and time.time() < deadline:
        time.sleep(0.05)
    assert client.delete(f"/jobs/{a}").status_code == 200
    job = _wait(client, a)
    assert running["state"] == "running" and job["state"] == "cancelled" and 0 < job["progress"] < 1
    assert client.get(f"/jobs/{b}").json()["state"] == "cancelled"


def test_concurrent_searches(api):
    from concurrent.futures import ThreadPoolExecutor

    client, data = api
    job = _wait(client, client.post("/index", json={"raster": str(data / "quad.tif"), "tile": 64}).json()["job_id"])

    def one(q):
        return client.post("/search", json={"query": q, "stores": [job["store_id"]], "k": 1}).json()

    with ThreadPoolExecutor(4) as ex:
        out = list(ex.map(one, ["red", "green", "blue"] * 5))
    assert [o["results"][0]["tile_id"] for o in out] == [0, 1, 2] * 5


def test_fuzz_no_5xx(api):
    """Schemathesis over the OpenAPI schema: bounded examples per operation, never a 5xx."""
    from hypothesis import given

    client, _ = api
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app, headers=AUTH)
    ops = [r.ok() for r in schema.get_all_operations()]
    assert {f"{o.method.upper()} {o.path}" for o in ops} >= {
        "POST /search",
        "POST /index",
        "POST /describe",
        "GET /jobs/{job_id}",
        "GET /health",
    }
    seen = []
    from schemathesis import GenerationMode

    for op, mode in itertools.product(ops, GenerationMode):

        @given(case=op.as_strategy(generation_mode=mode))
        @settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case):
            r = case.call(headers=AUTH)
            seen.append(r.status_code)
            assert r.status_code < 500, f"{case.method} {case.path}: {r.status_code} {r.text[:200]}"

        check()
    assert len(seen) >= 50 and {200, 422} <= set(seen)
    print("fuzz statuses", sorted(set(seen)))


def test_serve_subprocess(tmp_path, bundle_dir):
    env = dict(os.environ, RSITR_CACHE=str(tmp_path / "c"), RSITR_CONFIG=str(tmp_path / "cfg"), PYTHONPATH=str(ROOT))
    token_file = tmp_path / "cfg" / "token"
    refused = subprocess.run(
        [sys.executable, "-m", "engine", "serve", "--host", "0.0.0.0", "--model", str(bundle_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert refused.returncode == 2 and "refusing to bind" in refused.stderr and "Traceback" not in refused.stderr
    proc = subprocess.Popen(
        serve_argv(bundle_dir, tmp_path),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        line = proc.stdout.readline()
        ready = json.loads(line)
        assert ready["event"] == "ready" and ready["url"].startswith("http://127.0.0.1:")
        assert Path(ready["token_file"]) == token_file
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text().strip()
        import httpx

        assert httpx.get(ready["url"] + "/health", timeout=10).status_code == 401
        r = httpx.get(ready["url"] + "/health", headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert r.status_code == 200 and r.json()["model"]["name"] == "synthetic"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
