"""4. HTTP service under load: 8 concurrent clients on 127.0.0.1 for 30 s of POST /search.

A real ``python -m engine serve`` subprocess (uvicorn, bearer token file, isolated cache/config) indexes a
mosaic through ``POST /index`` (polling ``GET /jobs/{id}``), then 8 client threads (one keep-alive
``httpx.Client`` each) send searches with distinct generated queries (``rasters: [mosaic]``, k = 20) until
the deadline. Clients and server share this machine's cores. Latency is client-side wall time per request;
errors are non-200 answers and transport errors. Server RSS (VmRSS from /proc) is read after a warm-up
("before") and after the load ("after"), and sampled every second in between. Figures: whole run and the
median over the three 10 s windows (quick: shorter).
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path

from bench.common import PY, Ctx, bench_env, fmt, median, model_meta, proc_rss_mb, summarise

NAME = "http"
TITLE = "HTTP service under load (8 clients, loopback)"
CLIENTS = 8
DURATION = 30.0
WINDOWS = 3
GOAL_GROWTH = 0.05

_ADJ = (
    "green",
    "dense",
    "small",
    "large",
    "white",
    "dark",
    "bare",
    "curved",
    "busy",
    "quiet",
    "old",
    "new",
    "red",
    "sandy",
    "rocky",
    "flooded",
    "snowy",
    "empty",
    "crowded",
    "long",
)
_NOUN = (
    "forest",
    "river",
    "bridge",
    "road",
    "parking lot",
    "harbour",
    "airport",
    "farmland",
    "lake",
    "stadium",
    "church",
    "school",
    "industrial area",
    "beach",
    "desert",
    "meadow",
    "mountain",
    "pond",
    "railway station",
    "residential area",
    "square",
    "storage tanks",
    "viaduct",
    "park",
    "playground",
    "port",
    "resort",
    "baseball field",
    "center",
    "commercial area",
)
_REL = ("near", "next to", "with", "beside", "surrounded by")


def query_texts():
    """Endless, deterministic stream of distinct natural-language queries (20*30*5*30 = 90,000 before repeating)."""
    for adj, n1, rel, n2 in itertools.cycle(itertools.product(_ADJ, _NOUN, _REL, _NOUN)):
        yield f"a {adj} {n1} {rel} a {n2}"


def start_server(ctx: Ctx, roots: list[Path], timeout: float = 180) -> tuple[subprocess.Popen, str, str]:
    token_file = ctx.work / "http" / "token"
    token_file.parent.mkdir(parents=True, exist_ok=True)
    env = bench_env(
        RSITR_CACHE=str(ctx.work / "http" / "cache"),
        RSITR_CONFIG=str(ctx.work / "http" / "config"),
        RSITR_CACHE_MAX_GB="1000",
    )
    env.pop("RSITR_TOKEN", None)
    cmd = [
        PY,
        "-m",
        "engine",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--token-file",
        str(token_file),
        "--model",
        str(ctx.model),
    ]
    for r in roots:
        cmd += ["--allowed-root", str(r)]
    err = open(ctx.work / "http" / "server.stderr", "w")  # noqa: SIM115 - closed with the process
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env, start_new_session=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in p.stdout], daemon=True).start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            if p.poll() is not None:
                break
            continue
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if ev.get("event") == "ready":
            return p, ev["url"], token_file.read_text().strip()
    stop_server(p)
    raise RuntimeError(f"engine serve did not become ready: {(ctx.work / 'http' / 'server.stderr').read_text()[-500:]}")


def stop_server(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.send_signal(signal.SIGINT)
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(5)


def index_via_api(client, raster: Path, timeout: float = 1800) -> dict:
    r = client.post("/index", json={"raster": str(raster)})
    r.raise_for_status()
    job = r.json()["job_id"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        j = client.get(f"/jobs/{job}").json()
        if j["state"] in ("done", "failed", "cancelled"):
            if j["state"] != "done":
                raise RuntimeError(f"index job {j['state']}: {j.get('error')}")
            return j
        time.sleep(0.5)
    raise RuntimeError("index job timed out")


def load(url: str, token: str, raster: Path, duration: float, clients: int) -> tuple[list, float]:
    """Run the clients until ``duration`` elapsed; returns [(t_rel_start, latency_s, ok, status)] and t0."""
    import httpx

    texts = query_texts()
    lock = threading.Lock()
    records: list[tuple[float, float, bool, str]] = []
    t0 = time.perf_counter()
    deadline = t0 + duration

    def client_loop() -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as c:
            while True:
                with lock:
                    q = next(texts)
                start = time.perf_counter()
                if start >= deadline:
                    return
                try:
                    r = c.post("/search", json={"query": q, "rasters": [str(raster)], "k": 20})
                    ok = r.status_code == 200 and "results" in r.json()
                    status = str(r.status_code)
                except httpx.HTTPError as exc:
                    ok, status = False, type(exc).__name__
                end = time.perf_counter()
                with lock:
                    records.append((start - t0, end - start, ok, status))

    threads = [threading.Thread(target=client_loop, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(duration + 60)
    return records, time.perf_counter() - t0


def window_stats(records: list, duration: float, windows: int) -> list[dict]:
    out = []
    w = duration / windows
    for i in range(windows):
        rec = [r for r in records if i * w <= r[0] < (i + 1) * w]
        lat = [r[1] * 1000 for r in rec if r[2]]
        s = summarise(lat)
        out.append(
            {
                "window": i,
                "requests": len(rec),
                "rps": len(rec) / w,
                "errors": sum(1 for r in rec if not r[2]),
                **{k: s.get(k) for k in ("p50", "p95", "p99")},
            }
        )
    return out


def run(ctx: Ctx) -> dict:
    import httpx

    from bench.indexing import MOSAIC_DIR
    from bench.mosaic import cached_mosaic, image_pool

    meta = model_meta(ctx.model)
    side = 1024 if ctx.quick else 5000
    duration = 6.0 if ctx.quick else DURATION
    pool, src = image_pool(600)
    raster = cached_mosaic(MOSAIC_DIR, side, pool, src, float(meta.get("gsd_m") or 0.5)).resolve()
    p, url, token = start_server(ctx, [raster.parent])
    try:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as c:
            health = c.get("/health").json()
            job = index_via_api(c, raster)
            ctx.log(f"http: server ready at {url}, indexed {job['total']} windows")
            unauth = httpx.post(f"{url}/search", json={"query": "x"}, timeout=10).status_code
        load(url, token, raster, 2.0 if ctx.quick else 5.0, CLIENTS)  # warm-up (not counted)
        rss_before = proc_rss_mb(p.pid)
        samples: list[tuple[float, float]] = []
        stop = threading.Event()

        def sampler() -> None:
            t0 = time.perf_counter()
            while not stop.wait(1.0):
                r = proc_rss_mb(p.pid)
                if r is not None:
                    samples.append((round(time.perf_counter() - t0, 1), round(r, 1)))

        th = threading.Thread(target=sampler, daemon=True)
        th.start()
        records, elapsed = load(url, token, raster, duration, CLIENTS)
        stop.set()
        th.join(2)
        rss_after = proc_rss_mb(p.pid)
        alive = p.poll() is None
    finally:
        stop_server(p)
    lat = [r[1] * 1000 for r in records if r[2]]
    errors = [r for r in records if not r[2]]
    wins = window_stats(records, duration, WINDOWS)
    overall = summarise(lat)
    growth = (rss_after - rss_before) / rss_before if rss_before and rss_after else None
    res = {
        "clients": CLIENTS,
        "duration_s": duration,
        "elapsed_s": elapsed,
        "requests": len(records),
        "errors": len(errors),
        "error_kinds": sorted({r[3] for r in errors}),
        "rps": len(records) / duration,
        "latency_ms": overall,
        "windows": wins,
        "rps_window_median": median([w["rps"] for w in wins]),
        "p50_window_median": median([w["p50"] for w in wins if w["p50"] is not None] or [0]),
        "p95_window_median": median([w["p95"] for w in wins if w["p95"] is not None] or [0]),
        "p99_window_median": median([w["p99"] for w in wins if w["p99"] is not None] or [0]),
        "server_rss_before_mb": rss_before,
        "server_rss_after_mb": rss_after,
        "rss_growth": growth,
        "rss_samples": samples,
        "server_alive_after": alive,
        "unauthenticated_status": unauth,
        "store_tiles": job["total"],
        "raster_side_px": side,
        "provider": health.get("provider"),
        "request": "POST /search {query: distinct generated text, rasters: [mosaic], k: 20}",
    }
    res["goals"] = [
        {"goal": "0 errors under load", "value": str(len(errors)), "met": len(errors) == 0},
        {
            "goal": f"no server RSS growth (after <= before + {GOAL_GROWTH:.0%})",
            "value": f"{fmt(rss_before, 0)} -> {fmt(rss_after, 0)} MB ({fmt((growth or 0) * 100, 1)} %)",
            "met": growth is not None and growth <= GOAL_GROWTH,
        },
    ]
    ctx.log(f"http: {res['rps']:.1f} req/s, p50 {overall.get('p50', 0):.1f} ms, errors {len(errors)}")
    return res


def markdown(res: dict) -> list[str]:
    lat = res["latency_ms"]
    win = res["duration_s"] / len(res["windows"])
    lines = [
        f"| figure | whole run | median of {len(res['windows'])} windows of {win:g} s |",
        "| --- | --- | --- |",
        f"| requests/s | {res['rps']:.1f} | {res['rps_window_median']:.1f} |",
        f"| p50 latency (ms) | {fmt(lat.get('p50'))} | {fmt(res['p50_window_median'])} |",
        f"| p95 latency (ms) | {fmt(lat.get('p95'))} | {fmt(res['p95_window_median'])} |",
        f"| p99 latency (ms) | {fmt(lat.get('p99'))} | {fmt(res['p99_window_median'])} |",
        f"| requests / errors | {res['requests']} / {res['errors']} | - |",
        f"| server RSS before / after (MB) | {fmt(res['server_rss_before_mb'], 0)} / "
        f"{fmt(res['server_rss_after_mb'], 0)} | - |",
        "",
        f"{res['clients']} client threads, {res['duration_s']:g} s after a warm-up, store of "
        f"{res['store_tiles']} tiles ({res['raster_side_px']} px mosaic indexed through POST /index), provider "
        f"{res['provider']}; request: {res['request']}. Unauthenticated request answered "
        f"{res['unauthenticated_status']}.",
    ]
    if res["error_kinds"]:
        lines.append(f"Error kinds: {', '.join(res['error_kinds'])}.")
    return lines


def plot(res: dict, path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 2.6), dpi=90)
    w = res["windows"]
    axes[0].bar(
        [f"{x['window'] * res['duration_s'] / len(w):.0f} s" for x in w], [x["rps"] for x in w], color="#3b7dd8"
    )
    axes[0].set_ylabel("requests/s per window")
    s = res["rss_samples"]
    if s:
        axes[1].plot([x[0] for x in s], [x[1] for x in s], color="#c44")
    axes[1].set_xlabel("seconds under load")
    axes[1].set_ylabel("server RSS (MB)")
    axes[1].set_ylim(bottom=0)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True
