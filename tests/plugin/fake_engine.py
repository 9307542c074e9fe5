"""A stdlib stand-in for ``python -m engine serve`` that follows docs/contracts.md section 3.

Used by the plugin tests only when the real engine (engine/api.py + tests/bundles.py) is not available,
so the plugin side can be tested against the contract. Run: ``python -m tests.plugin.fake_engine serve ...``.
Scores are deterministic functions of (query, tile). Reads raster geometry with GDAL (osgeo).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

STORES: dict[str, dict] = {}
JOBS: dict[str, dict] = {}
LOCK = threading.Lock()


def raster_info(path: str) -> dict:
    from osgeo import gdal, osr

    ds = gdal.Open(path)
    if ds is None:
        raise ValueError(f"cannot read raster {path}")
    srs = osr.SpatialReference(wkt=ds.GetProjection())
    srs.AutoIdentifyEPSG()
    code = srs.GetAuthorityCode(None)
    return {
        "width": ds.RasterXSize,
        "height": ds.RasterYSize,
        "gt": ds.GetGeoTransform(),
        "wkt": ds.GetProjection(),
        "authid": f"EPSG:{code}" if code else "",
    }


def tiles_for(path: str, tile: int, stride: int) -> list[dict]:
    info = raster_info(path)
    gt = info["gt"]
    out = []
    for row, y in enumerate(range(0, max(1, info["height"] - tile + 1), stride)):
        for col, x in enumerate(range(0, max(1, info["width"] - tile + 1), stride)):
            w, h = min(tile, info["width"] - x), min(tile, info["height"] - y)
            x0, y0 = gt[0] + x * gt[1], gt[3] + y * gt[5]
            x1, y1 = gt[0] + (x + w) * gt[1], gt[3] + (y + h) * gt[5]
            ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
            out.append(
                {
                    "tile_id": len(out),
                    "col": col,
                    "row": row,
                    "window": [x, y, w, h],
                    "geometry": {"type": "Polygon", "coordinates": [ring]},
                }
            )
    return [dict(t, wkt=info["wkt"], authid=info["authid"]) for t in out]


def stores_file() -> Path:
    return Path(os.environ.get("RSITR_CACHE") or Path.home() / ".cache" / "rsitr") / "fake_stores.json"


def save_stores() -> None:
    f = stores_file()
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(json.dumps(STORES))


def load_stores() -> None:
    if stores_file().is_file():
        STORES.update(json.loads(stores_file().read_text()))


def score(query: str, key: str) -> float:
    h = hashlib.sha1(f"{query}|{key}".encode()).digest()
    return round(int.from_bytes(h[:4], "big") / 2**32 * 0.5, 6)


class Handler(BaseHTTPRequestHandler):
    token = ""
    roots: list[str] = []
    delay = 0.0

    def log_message(self, fmt, *args):  # to stderr like uvicorn
        sys.stderr.write("fake-engine: " + fmt % args + "\n")

    def _send(self, code: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _auth(self) -> bool:
        if self.headers.get("Authorization") != f"Bearer {self.token}":
            self._send(401, {"detail": "missing or wrong token"})
            return False
        return True

    def _body(self) -> dict:
        n = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(n) or b"{}")

    def _raster_ok(self, path: str) -> str | None:
        real = os.path.realpath(path)
        if not os.path.isfile(real):
            return f"raster not found: {path}"
        if not any(real == r or real.startswith(r.rstrip("/") + "/") for r in self.roots):
            return f"raster outside the allowed roots: {path}"
        return None

    def do_GET(self):  # noqa: N802
        if not self._auth():
            return
        if self.path == "/health":
            self._send(
                200,
                {
                    "status": "ok",
                    "version": "fake",
                    "provider": "CPUExecutionProvider",
                    "model": {"name": "fake-model", "version": "0.0.1"},
                },
            )
        elif self.path == "/models":
            self._send(
                200,
                {
                    "models": [
                        {
                            "name": "fake-model",
                            "version": "0.0.1",
                            "path": "/x",
                            "embed_dim": 8,
                            "bytes": 31_400_000,
                            "test_mr": 22.18,
                            "default": True,
                        }
                    ]
                },
            )
        elif self.path == "/stores":
            self._send(
                200,
                {
                    "stores": [
                        {
                            "store_id": k,
                            "raster": v["raster"],
                            "model": "fake-model",
                            "n_tiles": len(v["tiles"]),
                            "state": "complete",
                            "bytes": 0,
                        }
                        for k, v in STORES.items()
                    ]
                },
            )
        elif self.path.startswith("/jobs/"):
            job = JOBS.get(self.path.split("/")[-1])
            self._send(200, job) if job else self._send(404, {"detail": "unknown job"})
        else:
            self._send(404, {"detail": "not found"})

    def do_DELETE(self):  # noqa: N802
        if not self._auth():
            return
        job = JOBS.get(self.path.split("/")[-1])
        if not job:
            return self._send(404, {"detail": "unknown job"})
        if job["state"] in ("queued", "running"):
            job["state"] = "cancelled"
        self._send(200, job)

    def do_POST(self):  # noqa: N802
        if not self._auth():
            return
        body = self._body()
        if self.path == "/index":
            err = self._raster_ok(body.get("raster", ""))
            if err:
                return self._send(400, {"detail": err})
            raster = os.path.realpath(body["raster"])
            tile, stride = int(body.get("tile", 256)), int(body.get("stride", 256))
            sid = hashlib.sha1(f"{raster}|{tile}|{stride}".encode()).hexdigest()[:16]
            jid = uuid.uuid4().hex
            JOBS[jid] = {
                "job_id": jid,
                "state": "running",
                "progress": 0.0,
                "done": 0,
                "total": 0,
                "store_id": sid,
                "error": None,
            }
            threading.Thread(target=self._run_index, args=(jid, sid, raster, tile, stride), daemon=True).start()
            return self._send(202, {"job_id": jid})
        if self.path == "/search":
            q = str(body.get("query", "")).strip()
            if not q:
                return self._send(422, {"detail": "query must not be empty"})
            time.sleep(self.delay)
            rasters = [os.path.realpath(r) for r in body.get("rasters") or []]
            stores = [s for s in STORES.values() if not rasters or s["raster"] in rasters]
            if not stores:
                return self._send(404, {"detail": "no index for these rasters: index them first"})
            res = []
            for s in stores:
                for t in s["tiles"]:
                    res.append(
                        {
                            "score": score(q, f"{s['store_id']}:{t['tile_id']}"),
                            "tile_id": t["tile_id"],
                            "store_id": s["store_id"],
                            "raster": s["raster"],
                            "window": t["window"],
                            "crs": t["wkt"],
                            "authid": t["authid"],
                            "geometry": t["geometry"],
                            "bbox_lonlat": [0, 0, 0, 0],
                        }
                    )
            res.sort(key=lambda r: -r["score"])
            thr = body.get("threshold")
            if thr is not None:
                res = [r for r in res if r["score"] >= thr]
            res = res[: int(body.get("k", 20))]
            for i, r in enumerate(res):
                r["rank"] = i + 1
            return self._send(200, {"query": q, "took_ms": 1.0, "results": res})
        if self.path == "/describe":
            store = STORES.get(body.get("store", ""))
            if store is None and body.get("raster"):
                raster = os.path.realpath(body["raster"])
                store = next((s for s in STORES.values() if s["raster"] == raster), None)
            if store is None:
                return self._send(404, {"detail": "raster or store not indexed"})
            if "tile_id" in body:
                tid = int(body["tile_id"])
            else:
                x, y = float(body["x"]), float(body["y"])
                tid = None
                for t in store["tiles"]:
                    ring = t["geometry"]["coordinates"][0]
                    xs, ys = [p[0] for p in ring], [p[1] for p in ring]
                    if min(xs) <= x <= max(xs) and min(ys) <= y <= max(ys):
                        tid = t["tile_id"]
                        break
                if tid is None:
                    return self._send(404, {"detail": "point outside the indexed tiles"})
            t = store["tiles"][tid]
            top = int(body.get("top", 5))
            classes = [
                {"name": n, "probability": p}
                for n, p in [("forest", 0.5), ("river", 0.3), ("farmland", 0.1), ("stadium", 0.06), ("port", 0.04)]
            ]
            return self._send(
                200,
                {
                    "tile_id": tid,
                    "store_id": store["store_id"],
                    "geometry": t["geometry"],
                    "authid": t["authid"],
                    "classes": classes[:top],
                    "descriptions": [{"text": f"some trees near tile {tid}", "score": 0.3}],
                    "captions": [],
                },
            )
        self._send(404, {"detail": "not found"})

    def _run_index(self, jid, sid, raster, tile, stride):
        tiles = tiles_for(raster, tile, stride)
        job = JOBS[jid]
        job["total"] = len(tiles)
        for i in range(len(tiles)):
            if job["state"] == "cancelled":
                return
            time.sleep(self.delay / max(1, len(tiles)))
            job.update(done=i + 1, progress=(i + 1) / len(tiles))
        STORES[sid] = {"store_id": sid, "raster": raster, "tiles": tiles}
        save_stores()
        job["state"] = "done"


def _watch_parent(pid: int, srv) -> None:
    """Like the real engine's ``--parent-pid``: stop serving once the parent process is gone."""
    import threading
    import time

    def run() -> None:
        while os.getppid() == pid:
            time.sleep(0.5)
        srv.shutdown()

    threading.Thread(target=run, daemon=True).start()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="fake_engine")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8765)
    s.add_argument("--token-file", default=str(Path.home() / ".config/rsitr/token"))
    s.add_argument("--allowed-root", action="append", default=[])
    s.add_argument("--model", default=None)
    s.add_argument("--delay", type=float, default=float(os.environ.get("FAKE_ENGINE_DELAY", "0")))
    s.add_argument("--parent-pid", type=int, default=None)
    a = p.parse_args(argv)
    tf = Path(a.token_file)
    tf.parent.mkdir(parents=True, exist_ok=True)
    if not tf.exists():
        tf.write_text(secrets.token_urlsafe(24))
        tf.chmod(0o600)
    Handler.token = tf.read_text().strip()
    Handler.roots = [os.path.realpath(r) for r in (a.allowed_root or [str(Path.home()), os.getcwd()])]
    Handler.delay = a.delay
    load_stores()
    srv = ThreadingHTTPServer((a.host, a.port), Handler)
    if a.parent_pid:
        _watch_parent(a.parent_pid, srv)
    print(json.dumps({"event": "ready", "url": f"http://{a.host}:{a.port}", "token_file": str(tf)}), flush=True)
    srv.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
