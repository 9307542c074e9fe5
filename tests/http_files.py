"""A real HTTP file server on 127.0.0.1 for download tests: Range requests, 404, and deliberately cut transfers.

``serve_files(folder)`` is a context manager yielding the base URL (``http://127.0.0.1:PORT/``). Files are served
from ``folder``; a request path ending in ``?cut=N`` sends the full ``Content-Length`` but only ``N`` bytes and
closes (a truncated download); ``Range: bytes=a-`` / ``bytes=a-b`` gets ``206`` with those bytes; HEAD answers the
headers (size, ``Last-Modified``, ``Accept-Ranges``). Each served request is recorded in ``server.requests`` as
(path, range header or None).
"""

from __future__ import annotations

import contextlib
import http.server
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path


class _Handler(http.server.BaseHTTPRequestHandler):
    root: Path

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        parts = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(parts.query)
        path = (self.root / urllib.parse.unquote(parts.path).lstrip("/")).resolve()
        self.server.requests.append((parts.path, self.headers.get("Range")))
        if self.root not in path.parents or not path.is_file():
            self.send_error(404, "Not Found")
            return
        data = path.read_bytes()
        start, end = 0, len(data) - 1
        rng = self.headers.get("Range", "")
        first, _, last = rng[6:].partition("-")
        if rng.startswith("bytes=") and first.isdigit() and (last == "" or last.isdigit()):
            start, end = int(first), min(int(last) if last else end, end)
            if start >= len(data) or end < start:
                self.send_error(416, "Range Not Satisfiable")
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start : end + 1]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Last-Modified", self.date_time_string(int(path.stat().st_mtime)))
        self.end_headers()
        if self.command == "HEAD":
            return
        cut = int(query["cut"][0]) if "cut" in query else None
        self.wfile.write(body if cut is None else body[:cut])
        if cut is not None:
            self.wfile.flush()
            self.close_connection = True

    do_HEAD = do_GET  # noqa: N815 - http.server API: headers only (size, Last-Modified)


@contextlib.contextmanager
def serve_files(folder: Path) -> Iterator[http.server.ThreadingHTTPServer]:
    """Serve ``folder`` on a free loopback port; the server object has ``.url`` and ``.requests``."""
    handler = type("Handler", (_Handler,), {"root": Path(folder).resolve()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.requests = []
    server.url = f"http://127.0.0.1:{server.server_address[1]}/"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def closed_port_url() -> str:
    """A loopback URL where nothing listens (connection refused: "no network")."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"
