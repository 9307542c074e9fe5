"""HTTP client for the RSITR engine API (docs/contracts.md section 3).

* ``request_sync`` / ``EngineClient``: blocking calls (urllib), for worker threads and Processing algorithms.
* ``RequestTask`` / ``run_async``: the same call in a QgsTask, with the callback run in the main thread,
  so the UI thread never waits on the network.
Errors are ``EngineError`` with a one-line message.
"""

from __future__ import annotations

import json
import threading
import traceback
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlparse

from qgis.core import Qgis, QgsApplication, QgsMessageLog, QgsTask
from qgis.PyQt.QtCore import QObject, pyqtSignal

MAX_QUERY_CHARS = 1000
MAX_K = 1000


class EngineError(Exception):
    """A one-line, user-facing error from (or about) the engine."""

    def __init__(self, message: str, status: int | None = None, unreachable: bool = False):
        super().__init__(one_line(message))
        self.status = status
        self.unreachable = unreachable


def one_line(text: object, limit: int = 300) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


@dataclass(frozen=True)
class Connection:
    url: str
    token: str = ""

    def is_loopback(self) -> bool:
        host = urlparse(self.url).hostname or ""
        return host in ("127.0.0.1", "localhost", "::1")


# ---------------------------------------------------------------- request builders (pure, tested)


def build_search_request(
    query: str,
    rasters=None,
    stores=None,
    k: int = 20,
    threshold=None,
    model: str | None = None,
    aoi: dict | None = None,
) -> dict:
    q = (query or "").strip()
    if not q:
        raise EngineError("Type a query first")
    if len(q) > MAX_QUERY_CHARS:
        raise EngineError(f"Query too long ({len(q)} characters, at most {MAX_QUERY_CHARS})")
    k = int(k)
    if not 1 <= k <= MAX_K:
        raise EngineError(f"k must be between 1 and {MAX_K}, got {k}")
    body: dict = {"query": q, "k": k}
    if rasters:
        body["rasters"] = [str(r) for r in rasters]
    if stores:
        body["stores"] = list(stores)
    if threshold is not None and float(threshold) > 0:
        body["threshold"] = float(threshold)
    if model:
        body["model"] = model
    if aoi:
        body["aoi"] = aoi
    return body


def build_index_request(
    raster: str, tile: int = 256, stride: int = 256, model: str | None = None, bands=None, gsd: float | None = None
) -> dict:
    tile, stride = int(tile), int(stride)
    if tile < 16:
        raise EngineError(f"Tile size must be at least 16 px, got {tile}")
    if stride < 1:
        raise EngineError(f"Stride must be positive, got {stride}")
    body: dict = {"raster": str(raster), "tile": tile, "stride": stride}
    if model:
        body["model"] = model
    if bands:
        body["bands"] = [int(b) for b in bands]
    if gsd:
        body["gsd"] = float(gsd)
    return body


def build_describe_request(
    raster: str | None = None,
    x: float | None = None,
    y: float | None = None,
    crs: str | None = None,
    store: str | None = None,
    tile_id: int | None = None,
    top: int = 5,
) -> dict:
    body: dict = {"top": int(top)}
    if store is not None and tile_id is not None:
        body.update(store=store, tile_id=int(tile_id))
        return body
    if raster is None or x is None or y is None:
        raise EngineError("describe needs a raster and a point, or a store and a tile id")
    body.update(raster=str(raster), x=float(x), y=float(y))
    if crs:
        body["crs"] = crs
    return body


# ---------------------------------------------------------------- blocking transport


def _error_detail(raw: bytes, fallback: str) -> str:
    try:
        data = json.loads(raw.decode("utf-8", "replace"))
    except ValueError:
        return one_line(raw.decode("utf-8", "replace")) or fallback
    detail = data.get("detail", fallback) if isinstance(data, dict) else fallback
    if isinstance(detail, list):  # FastAPI validation errors
        parts = []
        for item in detail[:3]:
            if isinstance(item, dict):
                loc = ".".join(str(p) for p in item.get("loc", [])[1:])
                parts.append(f"{loc}: {item.get('msg', '')}" if loc else str(item.get("msg", "")))
            else:
                parts.append(str(item))
        detail = "; ".join(parts)
    return one_line(detail)


def request_sync(conn: Connection, method: str, path: str, body: dict | None = None, timeout: float = 120.0) -> dict:
    """One blocking JSON request; returns the decoded JSON or raises EngineError (one line)."""
    if urlparse(conn.url).scheme not in ("http", "https"):
        raise EngineError(f"Engine URL must start with http:// or https://, got {conn.url!r}")
    url = conn.url.rstrip("/") + path
    data = json.dumps(body).encode("utf-8") if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Accept", "application/json")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if conn.token:
        req.add_header("Authorization", f"Bearer {conn.token}")
    # never send loopback traffic through a proxy; remote engines use the environment's proxy settings
    handlers = [urllib.request.ProxyHandler({})] if conn.is_loopback() else []
    opener = urllib.request.build_opener(*handlers)
    try:  # the scheme is checked above: http(s) only, never file:// or custom schemes
        with opener.open(req, timeout=timeout) as resp:  # nosec B310
            raw = resp.read()
    except urllib.error.HTTPError as exc:
        raw = exc.read() if hasattr(exc, "read") else b""
        detail = _error_detail(raw, exc.reason or "error")
        if exc.code == 401 or exc.code == 403:
            detail = f"engine refused the token ({detail})"
        raise EngineError(f"Engine error {exc.code}: {detail}", status=exc.code) from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        raise EngineError(f"Engine not reachable at {conn.url}: {reason}", unreachable=True) from None
    except TimeoutError:
        raise EngineError(f"Engine at {conn.url} did not answer within {timeout:.0f} s", unreachable=True) from None
    except (ConnectionError, OSError) as exc:
        raise EngineError(f"Engine connection failed: {exc}", unreachable=True) from None
    try:
        return json.loads(raw.decode("utf-8")) if raw else {}
    except ValueError:
        raise EngineError(f"Engine sent invalid JSON for {path}") from None


class EngineClient:
    """Blocking client bound to one connection (usable from any thread)."""

    def __init__(self, conn: Connection, timeout: float = 120.0):
        if urlparse(conn.url).scheme not in ("http", "https"):
            raise EngineError(f"Engine URL must start with http:// or https://, got {conn.url!r}")
        self.conn = conn
        self.timeout = timeout

    def _call(self, method, path, body=None, timeout=None):
        return request_sync(self.conn, method, path, body, self.timeout if timeout is None else timeout)

    def health(self, timeout: float = 10.0) -> dict:
        return self._call("GET", "/health", timeout=timeout)

    def models(self) -> list[dict]:
        return self._call("GET", "/models").get("models", [])

    def stores(self) -> list[dict]:
        return self._call("GET", "/stores").get("stores", [])

    def index(self, **kwargs) -> str:
        return self._call("POST", "/index", build_index_request(**kwargs))["job_id"]

    def job(self, job_id: str) -> dict:
        return self._call("GET", f"/jobs/{job_id}")

    def cancel(self, job_id: str) -> dict:
        return self._call("DELETE", f"/jobs/{job_id}")

    def search(self, **kwargs) -> dict:
        return self._call("POST", "/search", build_search_request(**kwargs))

    def describe(self, **kwargs) -> dict:
        return self._call("POST", "/describe", build_describe_request(**kwargs))


# ---------------------------------------------------------------- non-blocking (QgsTask)


class RequestTask(QgsTask):
    """Runs ``fn()`` in a worker thread; ``callback(result, error)`` runs in the main thread."""

    def __init__(self, description: str, fn, callback=None):
        super().__init__(description, QgsTask.Flag.CanCancel)
        self._fn = fn
        self._callback = callback
        self.result_value = None
        self.error: str | None = None

    def run(self) -> bool:  # worker thread: no QObject/GUI access here
        try:
            self.result_value = self._fn()
            return True
        except EngineError as exc:
            self.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - shown as one line, never a traceback
            self.error = one_line(f"{type(exc).__name__}: {exc}")
        return False

    def finished(self, ok: bool) -> None:  # main thread
        if self._callback is None:
            return
        if not ok and self.error is None:
            self.error = "cancelled"
        try:
            self._callback(self.result_value if ok else None, None if ok else self.error)
        except RuntimeError as exc:  # a widget of the callback was deleted meanwhile (plugin unloaded)
            QgsMessageLog.logMessage(f"{self.description()}: result dropped ({exc})", "RSITR", Qgis.MessageLevel.Info)
        except Exception:  # noqa: BLE001 - never let an exception abort QGIS from a C++ virtual
            QgsMessageLog.logMessage(
                f"{self.description()}: {traceback.format_exc()}", "RSITR", Qgis.MessageLevel.Critical
            )


_RUNNING: set = set()  # keep Python references to tasks until they finish


def run_async(description: str, fn, callback=None) -> RequestTask:
    """Start ``fn`` in a QgsTask; ``callback(result, error)`` is called in the main thread."""

    def done(result, error):
        _RUNNING.discard(task)
        if callback is not None:
            callback(result, error)

    task = RequestTask(description, fn, done)
    _RUNNING.add(task)
    QgsApplication.taskManager().addTask(task)
    return task


# ---------------------------------------------------------------- light background calls (no QThreadPool)


class _Relay(QObject):
    """Lives in the main thread; a signal emitted from a worker thread is delivered there (queued)."""

    done = pyqtSignal(object, object, object)  # callback, result, error


_RELAY: list = []


def _relay() -> _Relay:
    if not _RELAY:
        relay = _Relay()
        relay.done.connect(_deliver)
        _RELAY.append(relay)
    return _RELAY[0]


def _deliver(callback, result, error) -> None:
    try:
        callback(result, error)
    except RuntimeError:  # the widget went away meanwhile
        pass
    except Exception:  # noqa: BLE001 - log, never abort QGIS from a slot
        QgsMessageLog.logMessage(traceback.format_exc(), "RSITR", Qgis.MessageLevel.Critical)


def run_in_thread(fn, callback) -> threading.Thread:
    """Run ``fn`` in a daemon Python thread and ``callback(result, error)`` in the main thread.

    For frequent or background calls (job polling, result descriptions): unlike QgsTask it does not
    take a slot of QGIS's global thread pool, which map rendering needs (2 threads on a 2-core machine).
    Must be called from the main thread.
    """
    relay = _relay()

    def work():
        try:
            relay.done.emit(callback, fn(), None)
        except EngineError as exc:
            relay.done.emit(callback, None, str(exc))
        except Exception as exc:  # noqa: BLE001
            relay.done.emit(callback, None, one_line(f"{type(exc).__name__}: {exc}"))

    thread = threading.Thread(target=work, name="rsitr-request", daemon=True)
    thread.start()
    return thread
