"""HTTP client for the RSITR engine API (docs/contracts.md section 3).

* ``EngineClient``: blocking calls, for worker threads and Processing algorithms. It sends the request
  dataclasses of ``engine_requests`` (``SearchRequest``, ``IndexRequest``, ``DescribeRequest``).
* ``RequestTask`` / ``run_async``: the same call in a QgsTask, with the callback run in the main thread,
  so the UI thread never waits on the network; ``run_in_thread`` for light background calls.

Two transports, one error mapping (``EngineError``, one line):
* a remote engine (``Connection.via_qgis``) goes through QGIS's network stack (``QgsBlockingNetworkRequest`` on
  ``QgsNetworkAccessManager``), so QGIS's proxy, SSL (trusted CAs, per-host exceptions) and network timeout
  settings apply;
* the local engine child on 127.0.0.1 is called directly (urllib, never through a proxy: a proxy configured
  in QGIS must not catch loopback traffic, and the frequent local calls stay out of QGIS's network log).
"""

from __future__ import annotations

import json
import threading
import traceback
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from qgis.core import (
    Qgis,
    QgsApplication,
    QgsBlockingNetworkRequest,
    QgsFeedback,
    QgsMessageLog,
    QgsNetworkAccessManager,
    QgsTask,
)
from qgis.PyQt.QtCore import QObject, QUrl, pyqtSignal
from qgis.PyQt.QtNetwork import QNetworkRequest

from .errors import EngineError, one_line

if TYPE_CHECKING:
    from .engine_requests import DescribeRequest, IndexRequest, SearchRequest

__all__ = ["Connection", "EngineClient", "EngineError", "one_line", "request_sync", "run_async", "run_in_thread"]

# QGIS's per-thread network managers copy their proxy/SSL setup from the main one: make sure it exists
# (this module is imported in the main thread).
QgsNetworkAccessManager.instance()


@dataclass(frozen=True)
class Connection:
    url: str
    token: str = ""
    via_qgis: bool = False  # True: QGIS's network stack (remote engines); False: direct loopback calls

    def is_loopback(self) -> bool:
        host = urlparse(self.url).hostname or ""
        return host in ("127.0.0.1", "localhost", "::1")


# ---------------------------------------------------------------- error mapping (shared by both transports)


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


def _decode(status: int, raw: bytes, path: str, reason: str = "error") -> dict:
    """The JSON answer of a finished HTTP exchange, or EngineError for an error status or bad JSON."""
    if status >= 400:
        detail = _error_detail(raw, reason)
        if status in (401, 403):
            detail = f"engine refused the token ({detail})"
        raise EngineError(f"Engine error {status}: {detail}", status=status)
    try:
        return json.loads(raw.decode("utf-8")) if raw else {}
    except ValueError:
        raise EngineError(f"Engine sent invalid JSON for {path}") from None


def _timeout_error(conn: Connection, timeout: float) -> EngineError:
    return EngineError(f"Engine at {conn.url} did not answer within {timeout:.0f} s", unreachable=True)


# ---------------------------------------------------------------- transports: (status, body) or EngineError


def _headers(conn: Connection, has_body: bool) -> dict[str, str]:
    headers = {"Accept": "application/json"}
    if has_body:
        headers["Content-Type"] = "application/json"
    if conn.token:
        headers["Authorization"] = f"Bearer {conn.token}"
    return headers


def _send_direct(conn: Connection, method: str, url: str, data: bytes | None, timeout: float) -> tuple[int, bytes]:
    """urllib without any proxy (the local engine child)."""
    req = urllib.request.Request(url, data=data, method=method, headers=_headers(conn, data is not None))
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:  # the scheme is checked by request_sync: http(s) only, never file:// or custom schemes
        with opener.open(req, timeout=timeout) as resp:  # nosec B310
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, (exc.read() if hasattr(exc, "read") else b"")
    except urllib.error.URLError as exc:
        raise EngineError(f"Engine not reachable at {conn.url}: {exc.reason}", unreachable=True) from None
    except TimeoutError:
        raise _timeout_error(conn, timeout) from None
    except (ConnectionError, OSError) as exc:
        raise EngineError(f"Engine connection failed: {exc}", unreachable=True) from None


def _send_qgis(conn: Connection, method: str, url: str, data: bytes | None, timeout: float) -> tuple[int, bytes]:
    """QgsBlockingNetworkRequest (QGIS's proxy, SSL and timeout settings); any thread.

    ``timeout`` cancels the request through a QgsFeedback; QGIS's own network timeout applies as well.
    """
    request = QNetworkRequest(QUrl(url))
    for name, value in _headers(conn, data is not None).items():
        request.setRawHeader(name.encode("ascii"), value.encode("utf-8"))
    blocking = QgsBlockingNetworkRequest()
    feedback = QgsFeedback()
    lock = threading.Lock()
    state = {"done": False, "timed_out": False}

    def expire() -> None:
        with lock:
            if not state["done"]:
                state["timed_out"] = True
                feedback.cancel()

    timer = threading.Timer(timeout, expire)
    timer.daemon = True
    timer.start()
    try:
        if method == "GET":
            code = blocking.get(request, True, feedback)
        elif method == "POST":
            code = blocking.post(request, data or b"", True, feedback)
        elif method == "DELETE":
            code = blocking.deleteResource(request, feedback)
        else:
            raise EngineError(f"unsupported method {method}")
    finally:
        with lock:
            state["done"] = True
        timer.cancel()
    reply = blocking.reply()
    status = reply.attribute(QNetworkRequest.Attribute.HttpStatusCodeAttribute)
    if status is not None and not state["timed_out"]:
        return int(status), bytes(reply.content())
    if state["timed_out"]:
        raise _timeout_error(conn, timeout)
    if code == QgsBlockingNetworkRequest.ErrorCode.TimeoutError:
        seconds = QgsNetworkAccessManager.timeout() / 1000
        raise EngineError(
            f"Engine at {conn.url} did not answer within QGIS's network timeout ({seconds:.0f} s)", unreachable=True
        )
    reason = blocking.errorMessage() or "no answer"
    raise EngineError(f"Engine not reachable at {conn.url}: {reason}", unreachable=True)


def request_sync(conn: Connection, method: str, path: str, body: dict | None = None, timeout: float = 120.0) -> dict:
    """One blocking JSON request; returns the decoded JSON or raises EngineError (one line)."""
    if urlparse(conn.url).scheme not in ("http", "https"):
        raise EngineError(f"Engine URL must start with http:// or https://, got {conn.url!r}")
    url = conn.url.rstrip("/") + path
    data = json.dumps(body).encode("utf-8") if body is not None else None
    send = _send_qgis if conn.via_qgis else _send_direct
    status, raw = send(conn, method, url, data, timeout)
    return _decode(status, raw, path)


class EngineClient:
    """Blocking client bound to one connection (usable from any thread)."""

    def __init__(self, conn: Connection, timeout: float = 120.0):
        if urlparse(conn.url).scheme not in ("http", "https"):
            raise EngineError(f"Engine URL must start with http:// or https://, got {conn.url!r}")
        self.conn = conn
        self.timeout = timeout

    def _call(self, method: str, path: str, body: dict | None = None, timeout: float | None = None) -> dict:
        return request_sync(self.conn, method, path, body, self.timeout if timeout is None else timeout)

    def health(self, timeout: float = 10.0) -> dict:
        return self._call("GET", "/health", timeout=timeout)

    def models(self) -> list[dict]:
        return self._call("GET", "/models").get("models", [])

    def stores(self) -> list[dict]:
        return self._call("GET", "/stores").get("stores", [])

    def catalogs(self) -> list[dict]:
        """``GET /catalogs``: name, n_rasters, n_tiles, model ("name@version"), version, index of each catalog."""
        return self._call("GET", "/catalogs").get("catalogs", [])

    def index(self, request: IndexRequest) -> str:
        """Start an index job; returns its id (poll ``job``)."""
        return self._call("POST", request.PATH, request.to_json())["job_id"]

    def job(self, job_id: str) -> dict:
        return self._call("GET", f"/jobs/{job_id}")

    def cancel(self, job_id: str) -> dict:
        return self._call("DELETE", f"/jobs/{job_id}")

    def search(self, request: SearchRequest) -> dict:
        return self._call("POST", request.PATH, request.to_json())

    def describe(self, request: DescribeRequest) -> dict:
        return self._call("POST", request.PATH, request.to_json())

    def send(self, request) -> dict:
        """POST any request dataclass with ``PATH`` and ``to_json()`` (e.g. those of ``similar_requests``)."""
        return self._call("POST", request.PATH, request.to_json())


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

    For background calls to the local engine child (result descriptions): unlike QgsTask it does not
    take a slot of QGIS's global thread pool, which map rendering needs (2 threads on a 2-core machine).
    Calls through QGIS's network stack (remote engines) belong in ``run_async``: QGIS's network timeout timers
    need a QThread. Must be called from the main thread.
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


def run_background(conn: Connection, fn, callback) -> None:
    """``run_async`` for connections through QGIS's network stack, else ``run_in_thread``."""
    if conn.via_qgis:
        run_async("RSITR background request", fn, callback)
    else:
        run_in_thread(fn, callback)
