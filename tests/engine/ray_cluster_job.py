"""Distributed indexing runs for tests/engine/test_ray_indexing.py, executed inside the network + PID namespace
the test creates (``unshare --net --pid --fork --mount-proc``): a real 2-node Ray cluster on loopback only (head
and a second node, one logical CPU each, fractional CPUs per task/actor), then

1. ``python -m engine index-many ... --ray 127.0.0.1:PORT`` (the CLI, a Ray client of its own);
2. ``Engine.index_many(..., ray=RayParams(...))`` cancelled from its progress callback after the first commit;
3. the same job resumed while a thread SIGKILLs one encoder actor's process (found in Ray's actor table) after a
   further commit; when the job fails for it, it is resumed once more.

Everything the test asserts on is written to the JSON file ``argv[1]``; the cluster ends with the namespace.
Usage: ``python -m tests.engine.ray_cluster_job OUT.json SPEC.json`` (SPEC: rasters, params, cache folders).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

PORT = 6390
ADDRESS = f"127.0.0.1:{PORT}"
ACTOR_CLASS = "ChunkEmbedder"


def _ray_start(args: list[str], log: Path) -> None:
    ray = Path(sys.executable).with_name("ray")
    cmd = [str(ray), "start", "--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats", *args]
    with open(log, "a") as fh:
        subprocess.run(cmd, check=True, stdout=fh, stderr=subprocess.STDOUT, timeout=120)


def start_cluster(temp: Path, logs: Path) -> float:
    """Head + second node on 127.0.0.1 (this namespace has only ``lo``); returns the seconds it took."""
    t0 = time.perf_counter()
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    head = [f"--port={PORT}", "--head", f"--temp-dir={temp}", "--include-dashboard=false"]
    _ray_start(head, logs / "head.log")
    _ray_start([f"--address={ADDRESS}"], logs / "node2.log")
    return time.perf_counter() - t0


def cli_run(spec: dict) -> dict:
    p = spec["params"]
    cmd = [sys.executable, "-m", "engine", "--json", "index-many", *spec["rasters"], "--catalog", "cat"]
    cmd += ["--tile", str(p["tile"]), "--chunk-tiles", str(p["chunk_tiles"]), "--batch-size", str(p["batch_size"])]
    cmd += ["--ray", ADDRESS, "--ray-commit-chunks", str(spec["cli_commit_chunks"])]
    env = {**os.environ, "RSITR_CACHE": spec["ray_cache"]}
    t0 = time.perf_counter()
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    return {"rc": run.returncode, "stdout": run.stdout, "stderr": run.stderr[-3000:], "s": time.perf_counter() - t0}


def _actors() -> list[dict]:
    from ray._private import state

    return [
        a for a in state.actors().values() if ACTOR_CLASS in a.get("ActorClassName", "") and a.get("State") == "ALIVE"
    ]


def killer(table_path: Path, after_version: int, out: dict, stop: threading.Event) -> None:
    """SIGKILL one encoder actor's process once the table has a commit beyond ``after_version``."""
    from engine.tile_table import TileTable

    table = TileTable(table_path)
    while not stop.is_set():
        if table.version > after_version:
            actors = _actors()
            if actors:
                a = actors[0]
                os.kill(int(a["Pid"]), signal.SIGKILL)
                out.update(pid=int(a["Pid"]), node=a["Address"]["NodeID"], at_version=table.version)
                return
        time.sleep(0.05)


def api_runs(spec: dict) -> dict:
    """Cancel after the first commit, then resume while one actor is killed (then resume again if needed)."""
    import ray

    from engine.errors import EngineError
    from engine.indexer import IndexParams
    from engine.ray_index import RayParams
    from engine.service import Engine
    from engine.tile_table import TileTable

    os.environ["RSITR_CACHE"] = spec["kill_cache"]
    ray.init(address=ADDRESS, logging_level="ERROR", log_to_driver=False)
    eng = Engine(root=Path(spec["kill_cache"]) / "stores")
    params = IndexParams(**spec["params"])
    rp = RayParams(address=ADDRESS, chunks_per_commit=spec["commit_chunks"])
    table = TileTable(Path(spec["kill_cache"]) / "catalogs" / "kill" / "rows.lance")
    out: dict = {"progress": []}
    cancel = threading.Event()

    def progress(done: int, total: int) -> None:
        out["progress"].append([done, total])
        if len(out["progress"]) >= 2:  # the first call reports the start, the second the first commit
            cancel.set()

    try:
        eng.index_many(spec["rasters"], "kill", params, progress=progress, cancel=cancel, ray=rp)
        out["cancel"] = "not cancelled"
    except EngineError as exc:
        out["cancel"] = f"{type(exc).__name__}: {exc.message}"
    out["version_after_cancel"] = table.version
    out["chunks_after_cancel"] = sum(len(v) for v in table.done_chunks(eng_store_ids(eng, spec, params)).values())
    kill: dict = {}
    stop = threading.Event()
    th = threading.Thread(target=killer, args=(table.path, table.version, kill, stop), daemon=True)
    th.start()
    attempts = []
    for _ in range(2):
        t0 = time.perf_counter()
        try:
            m = eng.index_many(spec["rasters"], "kill", params, ray=rp)
            attempts.append({"ok": True, "s": time.perf_counter() - t0, "table": m["table"], "version": m["version"]})
            break
        except Exception as exc:  # noqa: BLE001 - a killed worker may fail the job; it is resumed once
            attempts.append({"ok": False, "s": time.perf_counter() - t0, "error": " ".join(str(exc).split())[:300]})
    stop.set()
    th.join(timeout=5)
    out.update(kill=kill, attempts=attempts, final_version=table.version)
    return out


def eng_store_ids(eng, spec: dict, params) -> list[str]:
    from engine.indexer import plan_index

    enc = eng.encoder()
    return [plan_index(r, enc, params).store_id for r in spec["rasters"]]


def main() -> int:
    out_path, spec = Path(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text())
    work = Path(spec["work"])
    result: dict = {}
    try:
        result["cluster_s"] = start_cluster(Path(spec["ray_temp"]), work)
        result["cli"] = cli_run(spec)
        result["api"] = api_runs(spec)
    except Exception:  # noqa: BLE001 - reported to the test, which fails with it
        result["error"] = traceback.format_exc()[-3000:]
    out_path.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
