"""Remote mode through QGIS's network stack (QgsBlockingNetworkRequest): answers and errors as one line,
timeouts, worker threads, QGIS's proxy setting, and the token kept in QGIS's authentication database."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from qgis.core import QgsAuthMethodConfig, QgsNetworkAccessManager, QgsSettings
from qgis.PyQt.QtCore import QSettings

from rsitr_qgis import remote_token
from rsitr_qgis.client import Connection, EngineClient, EngineError, run_async, run_background
from rsitr_qgis.engine_requests import SearchRequest
from rsitr_qgis.settings import Settings
from rsitr_qgis.settings_dialog import TOKEN_STORED_HINT, SettingsDialog
from tests.plugin.conftest import wait_until


class _Handler(BaseHTTPRequestHandler):
    """A tiny stand-in HTTP server: answers by path and records every request it saw."""

    seen: list[dict] = []

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _answer(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length) if length else b""
        self.seen.append(
            {
                "method": method,
                "path": self.path,
                "auth": self.headers.get("Authorization"),
                "agent": self.headers.get("User-Agent", ""),
                "body": json.loads(data) if data else None,
            }
        )
        path = self.path.rsplit("/", 1)[-1] if "://" in self.path else self.path
        if path.endswith("/slow"):
            time.sleep(4)
        if path.endswith("/401"):
            self._answer(401, b'{"detail": "invalid token"}')
        elif path.endswith("/422"):
            detail = [{"loc": ["body", "k"], "msg": "must be >= 1"}, {"loc": ["body", "query"], "msg": "too long"}]
            self._answer(422, json.dumps({"detail": detail}).encode())
        elif path.endswith("/html"):
            self._answer(200, b"<html>\n not json \n</html>", "text/html")
        else:
            self._answer(200, json.dumps({"ok": True, "method": method, "echo": self.seen[-1]["body"]}).encode())

    def do_GET(self):  # noqa: N802
        self._handle("GET")

    def do_POST(self):  # noqa: N802
        self._handle("POST")

    def do_DELETE(self):  # noqa: N802
        self._handle("DELETE")


@pytest.fixture
def server():
    _Handler.seen = []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.handle_error = lambda request, address: None  # a client that gave up (timeout test) is expected
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_qgis_transport_answers_and_maps_errors_to_one_line(qgis_app, server):
    client = EngineClient(Connection(server, "secret-token", via_qgis=True), timeout=10)
    assert client.health()["ok"] is True
    answer = client.search(SearchRequest("a river", k=3, rasters=("/r.tif",)))
    assert answer["method"] == "POST" and answer["echo"] == {"query": "a river", "k": 3, "rasters": ["/r.tif"]}
    assert client.cancel("job1")["method"] == "DELETE"
    seen = _Handler.seen
    assert [s["path"] for s in seen] == ["/health", "/search", "/jobs/job1"]
    assert all(s["auth"] == "Bearer secret-token" for s in seen)
    assert all("QGIS/" in s["agent"] for s in seen), seen  # QGIS's network access manager sent them

    with pytest.raises(EngineError) as err:
        client._call("GET", "/401")
    assert err.value.status == 401 and "refused the token (invalid token)" in str(err.value)
    with pytest.raises(EngineError) as err:
        client._call("POST", "/422", {"k": 0})
    assert str(err.value) == "Engine error 422: k: must be >= 1; query: too long"
    with pytest.raises(EngineError) as err:
        client._call("GET", "/html")
    assert "invalid JSON for /html" in str(err.value)

    direct = EngineClient(Connection(server, "secret-token"), timeout=10)
    assert direct.health()["ok"] is True
    assert "QGIS/" not in _Handler.seen[-1]["agent"]  # the local engine child is called directly


def test_qgis_transport_timeout_and_unreachable_are_one_line(qgis_app, server):
    client = EngineClient(Connection(server, via_qgis=True), timeout=1)
    t0 = time.monotonic()
    with pytest.raises(EngineError) as err:
        client._call("GET", "/slow")
    assert time.monotonic() - t0 < 3.5
    assert err.value.unreachable and "did not answer within 1 s" in str(err.value)

    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(EngineError) as err:
        EngineClient(Connection(url, via_qgis=True)).health(timeout=5)
    message = str(err.value)
    assert err.value.unreachable and message.startswith(f"Engine not reachable at {url}") and "\n" not in message
    assert "refused" in message.lower()


def test_qgis_transport_from_worker_threads(qgis_app, server):
    """QgsTask threads (run_async) and the panel's background helper both reach the server."""
    conn = Connection(server, "t", via_qgis=True)
    answers: list = []
    for _ in range(3):
        run_async("test request", lambda: EngineClient(conn).health(), lambda res, err: answers.append((res, err)))
    run_background(conn, lambda: EngineClient(conn).health(), lambda res, err: answers.append((res, err)))
    wait_until(lambda: len(answers) == 4, 30, "four answers")
    assert all(err is None and res["ok"] for res, err in answers), answers


@pytest.fixture
def qgis_proxy(server):
    """QGIS's own proxy setting (Settings > Options > Network) pointing at the stand-in server."""
    settings = QgsSettings()
    keys = ("proxy/proxyEnabled", "proxy/proxyType", "proxy/proxyHost", "proxy/proxyPort")
    before = {k: settings.value(k) for k in keys}
    port = server.rsplit(":", 1)[1]
    for key, value in zip(keys, (True, "HttpProxy", "127.0.0.1", port), strict=True):
        settings.setValue(key, value)
    QgsNetworkAccessManager.instance().setupDefaultProxyAndCache()
    yield
    for key, value in before.items():
        settings.remove(key) if value is None else settings.setValue(key, value)
    QgsNetworkAccessManager.instance().setupDefaultProxyAndCache()


def test_remote_requests_follow_qgis_proxy_setting(qgis_app, server, qgis_proxy):
    """A remote engine is reached through the proxy configured in QGIS (the request line carries the full URL)."""
    remote = EngineClient(Connection("http://engine.invalid:8765", "t", via_qgis=True), timeout=10)
    assert remote.health()["ok"] is True
    assert _Handler.seen[-1]["path"] == "http://engine.invalid:8765/health"


def test_plain_token_moves_into_auth_database_once(auth_db, tmp_path):
    settings = Settings(QgsSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    settings.set("token", "legacy-token-123")
    try:
        assert remote_token.remote_token(settings) == "legacy-token-123"
        authcfg = settings.get("authcfg")
        assert authcfg and settings.get("token") == ""
        assert "legacy-token-123" not in (tmp_path / "s.ini").read_text()
        config = QgsAuthMethodConfig()
        auth_db.loadAuthenticationConfig(authcfg, config, True)
        assert config.config("password") == "legacy-token-123" and config.name() == remote_token.CONFIG_NAME
        remote_token._CACHE.clear()  # read back from the database, not the session cache
        assert remote_token.remote_token(settings) == "legacy-token-123"
        assert not remote_token.migrate_plain_token(settings)  # nothing left to migrate
        remote_token.save_token(settings, "new-token")  # replacing keeps the same config
        assert settings.get("authcfg") == authcfg and remote_token.remote_token(settings) == "new-token"
    finally:
        remote_token.forget_token(settings)
    assert settings.get("authcfg") == "" and authcfg not in auth_db.configIds()


def test_settings_dialog_stores_token_in_auth_database(auth_db, tmp_path, qgis_parent):
    ini = tmp_path / "dialog.ini"
    settings = Settings(QgsSettings(str(ini), QSettings.Format.IniFormat))
    dlg = SettingsDialog(settings, qgis_parent)
    try:
        dlg.mode.setCurrentIndex(dlg.mode.findData("remote"))
        dlg.token.setText("dialog-token-456")
        dlg.save()
        assert settings.get("token") == "" and settings.get("authcfg")
        assert "dialog-token-456" not in ini.read_text()
        assert remote_token.remote_token(settings) == "dialog-token-456"
        again = SettingsDialog(settings, qgis_parent)
        assert again.token.text() == "" and again.token.placeholderText() == TOKEN_STORED_HINT
        again.forget_token.setChecked(True)
        again.save()
        assert settings.get("authcfg") == "" and remote_token.remote_token(settings) == ""
        again.deleteLater()
    finally:
        remote_token.forget_token(settings)
        dlg.deleteLater()
