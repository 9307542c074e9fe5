"""The engine as a child process (local mode) or a remote URL (remote mode).

Local mode starts ``<interpreter> -m engine serve --host 127.0.0.1 --port P --token-file F --allowed-root D
--parent-pid <QGIS pid>`` (the child exits by itself when QGIS dies without unloading the plugin) with QProcess
on a free loopback port and a clean environment, waits for the JSON ready line, reads the
token file, checks ``/health``, logs the child's stderr to the QGIS message log, restarts the child on the
next action after it died, and stops it on ``stop()`` (called from the plugin's ``unload()``).
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import time
from collections import deque
from pathlib import Path

from qgis.core import Qgis, QgsApplication, QgsMessageLog
from qgis.PyQt.QtCore import QCoreApplication, QObject, QProcess, QProcessEnvironment, pyqtSignal

from .client import Connection, EngineClient, EngineError, one_line, run_async
from .remote_token import remote_token
from .settings import MODE_REMOTE, Settings, checkout_root

LOG_TAG = "RSITR"
STRIPPED_ENV_PREFIXES = ("GDAL_", "PROJ_", "CPL_", "PYTHON")  # PYTHONPATH, PYTHONHOME, ...
STRIPPED_ENV_KEEP = ("PYTHONIOENCODING", "PYTHONUTF8")

HEALTH_TTL_S = 30.0  # a running engine that answered /health this recently is used without asking again

STATE_STOPPED = "stopped"
STATE_STARTING = "starting"
STATE_RUNNING = "running"
STATE_CRASHED = "crashed"
STATE_FAILED = "failed"


def log(message: str, level=Qgis.MessageLevel.Info) -> None:
    QgsMessageLog.logMessage(message, LOG_TAG, level)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def clean_environment(env: dict[str, str], cache_dir: str = "") -> dict[str, str]:
    """Copy of ``env`` without QGIS's Python/GDAL/PROJ variables, ready for the engine's interpreter."""
    out = {}
    for key, value in env.items():
        upper = key.upper()
        if upper.startswith(STRIPPED_ENV_PREFIXES) and upper not in STRIPPED_ENV_KEEP:
            continue
        if upper in ("VIRTUAL_ENV", "CONDA_PREFIX", "LD_PRELOAD"):
            continue
        out[key] = value
    out["PYTHONUNBUFFERED"] = "1"
    out["PYTHONIOENCODING"] = "utf-8"
    if cache_dir:
        out["RSITR_CACHE"] = cache_dir
    return out


def parse_ready_line(line: str) -> dict | None:
    """The engine's ``{"event": "ready", "url": ..., "token_file": ...}`` line, or None."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        data = json.loads(line)
    except ValueError:
        return None
    if isinstance(data, dict) and data.get("event") == "ready" and data.get("url"):
        return data
    return None


def default_token_file() -> str:
    base = Path(QgsApplication.qgisSettingsDirPath() or Path.home() / ".rsitr")
    return str(base / "rsitr" / "engine_token")


class EngineManager(QObject):
    """Owns the local engine child (or the remote connection) for the whole plugin."""

    stateChanged = pyqtSignal(str, str)  # state, one-line detail

    def __init__(self, settings: Settings | None = None, module: str = "engine", parent=None):
        super().__init__(parent)
        self.settings = settings or Settings()
        self.module = module
        self.extra_args: list[str] = []
        self.token_file: str | None = None  # None: <QGIS settings dir>/rsitr/engine_token
        self._proc: QProcess | None = None
        self._conn: Connection | None = None
        self._health: dict = {}
        self._health_at = 0.0
        self._health_url = ""  # the engine that answered /health at _health_at (a mode or URL change misses)
        self._state = STATE_STOPPED
        self._detail = ""
        self._stdout_buf = b""
        self._stderr_tail: deque[str] = deque(maxlen=20)
        self._roots: set[str] = set()
        self._stopping = False
        self._pending: list = []  # async callbacks waiting for the engine
        self._starts = 0

    # ------------------------------------------------------------------ state
    @property
    def state(self) -> str:
        return self._state

    @property
    def health(self) -> dict:
        return dict(self._health)

    @property
    def detail(self) -> str:
        return self._detail

    def pid(self) -> int | None:
        if self._proc is not None and self._proc.state() != QProcess.ProcessState.NotRunning:
            return int(self._proc.processId())
        return None

    def remote(self) -> bool:
        return self.settings.get("mode") == MODE_REMOTE

    def _set_state(self, state: str, detail: str = "") -> None:
        self._state, self._detail = state, one_line(detail)
        self.stateChanged.emit(state, self._detail)

    def is_running(self) -> bool:
        if self.remote():
            return self._conn is not None
        return (
            self._state == STATE_RUNNING
            and self._proc is not None
            and self._proc.state() == QProcess.ProcessState.Running
        )

    def connection(self) -> Connection | None:
        if self.remote():  # token from the QGIS auth database; requests through QGIS's network stack
            return Connection(self.settings.get("url"), remote_token(self.settings), via_qgis=True)
        return self._conn if self.is_running() else None

    # ------------------------------------------------------------------ allowed roots
    def allowed_roots(self) -> list[str]:
        roots = {str(Path.home().resolve())} | set(self._roots)
        roots |= {str(Path(p).expanduser().resolve()) for p in self.settings.allowed_roots()}
        return sorted(roots)

    def needs_root(self, raster_path: str) -> bool:
        """True when ``raster_path`` is outside the running engine's allowed roots."""
        if self.remote():
            return False
        target = Path(raster_path).resolve()
        for root in self.allowed_roots():
            try:
                target.relative_to(root)
                return False
            except ValueError:
                continue
        return True

    def add_root_for(self, raster_path: str) -> bool:
        """Allow the raster's folder; returns True when a running engine must restart to see it."""
        if not self.needs_root(raster_path):
            return False
        self._roots.add(str(Path(raster_path).resolve().parent))
        return self._proc is not None and self._state in (STATE_RUNNING, STATE_STARTING)

    # ------------------------------------------------------------------ process control
    def command(self, port: int, token_file: str) -> tuple[str, list[str]]:
        args = ["-m", self.module, "serve", "--host", "127.0.0.1", "--port", str(port), "--token-file", token_file]
        for root in self.allowed_roots():
            args += ["--allowed-root", root]
        model_dir = self.settings.get("model_dir")
        if model_dir:
            args += ["--model", model_dir]
        args += ["--parent-pid", str(os.getpid())]  # the child exits by itself if QGIS is killed
        return self.settings.interpreter(), args + list(self.extra_args)

    def start(self) -> None:
        """Start the child (non-blocking); ``stateChanged`` reports ``running`` or ``failed``."""
        if self.remote():
            return
        if self._proc is not None and self._proc.state() != QProcess.ProcessState.NotRunning:
            return
        self._cleanup_proc()
        self._starts += 1
        token_file = self.token_file or default_token_file()
        Path(token_file).parent.mkdir(parents=True, exist_ok=True)
        program, args = self.command(free_port(), token_file)
        proc = QProcess(self)
        env = QProcessEnvironment()
        for key, value in clean_environment(dict(os.environ), self.settings.get("cache_dir")).items():
            env.insert(key, value)
        proc.setProcessEnvironment(env)
        root = checkout_root()
        if root is not None:
            proc.setWorkingDirectory(str(root))
        proc.readyReadStandardOutput.connect(self._on_stdout)
        proc.readyReadStandardError.connect(self._on_stderr)
        proc.finished.connect(self._on_finished)
        proc.errorOccurred.connect(self._on_error)
        self._proc = proc
        self._conn = None
        self._health = {}
        self._stdout_buf = b""
        self._stderr_tail.clear()
        self._stopping = False
        self._set_state(STATE_STARTING, f"{program} {' '.join(args[:3])}")
        log(f"starting engine: {program} {' '.join(args)}")
        proc.start(program, args)
        self._pid = int(proc.processId() or 0)
        if self._pid:
            _CHILD_PIDS.add(self._pid)

    def stop(self, timeout_ms: int = 5000) -> None:
        """Stop the child (terminate, then kill); safe to call twice."""
        self._stopping = True
        proc = self._proc
        if proc is not None and proc.state() != QProcess.ProcessState.NotRunning:
            log("stopping engine")
            proc.terminate()
            if not proc.waitForFinished(timeout_ms):
                proc.kill()
                proc.waitForFinished(2000)
        self._cleanup_proc()
        self._conn = None
        self._fail_pending("engine stopped")
        if self._state != STATE_STOPPED:
            self._set_state(STATE_STOPPED)

    def restart(self) -> None:
        self.stop()
        self.start()

    def _forget_pid(self) -> None:
        _CHILD_PIDS.discard(getattr(self, "_pid", 0))
        self._pid = 0

    def _cleanup_proc(self) -> None:
        if self._proc is not None and self._proc.state() == QProcess.ProcessState.NotRunning:
            self._forget_pid()
        if self._proc is not None:
            for sig in (
                self._proc.readyReadStandardOutput,
                self._proc.readyReadStandardError,
                self._proc.finished,
                self._proc.errorOccurred,
            ):
                try:
                    sig.disconnect()
                except (TypeError, RuntimeError):
                    pass
            self._proc.deleteLater()
            self._proc = None

    # ------------------------------------------------------------------ child output
    def _on_stdout(self) -> None:
        proc = self.sender() or self._proc
        if proc is None:
            return
        self._stdout_buf += bytes(proc.readAllStandardOutput())
        while b"\n" in self._stdout_buf:
            raw, self._stdout_buf = self._stdout_buf.split(b"\n", 1)
            line = raw.decode("utf-8", "replace").rstrip()
            ready = parse_ready_line(line)
            if ready is not None and self._state == STATE_STARTING:
                self._on_ready(ready)
            elif line:
                log(f"engine: {line}")

    def _on_stderr(self) -> None:
        proc = self.sender() or self._proc
        if proc is None:
            return
        text = bytes(proc.readAllStandardError()).decode("utf-8", "replace")
        for line in text.splitlines():
            if line.strip():
                self._stderr_tail.append(line.strip())
                level = Qgis.MessageLevel.Warning if "error" in line.lower() else Qgis.MessageLevel.Info
                log(f"engine: {line}", level)

    def _on_ready(self, ready: dict) -> None:
        token = ""
        token_file = ready.get("token_file")
        if token_file:
            try:
                token = Path(token_file).read_text(encoding="utf-8").strip()
            except OSError as exc:
                self._set_state(STATE_FAILED, f"cannot read the engine token file: {exc}")
                self._fail_pending(self._detail)
                return
        self._conn = Connection(ready["url"], token)
        self._set_state(STATE_RUNNING, ready["url"])
        log(f"engine ready at {ready['url']}", Qgis.MessageLevel.Success)
        if self._pending:
            self._health_async()

    def _last_error(self) -> str:
        for line in reversed(self._stderr_tail):
            if line and not line.startswith(("File ", "Traceback", "^", "~")):
                return line
        return ""

    def _on_finished(self, code: int, status) -> None:
        was = self._state
        self._forget_pid()
        self._conn = None
        if self._stopping:
            return
        why = self._last_error() or f"exit code {code}"
        if was == STATE_STARTING:
            self._set_state(STATE_FAILED, f"engine exited during start: {why}")
        else:
            self._set_state(STATE_CRASHED, f"engine stopped unexpectedly ({why}); it restarts on the next action")
        log(self._detail, Qgis.MessageLevel.Critical)
        self._fail_pending(self._detail)

    def _on_error(self, error) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self._set_state(
                STATE_FAILED,
                f"cannot start the engine interpreter {self.settings.interpreter()!r} (set it in the RSITR settings)",
            )
            log(self._detail, Qgis.MessageLevel.Critical)
            self._fail_pending(self._detail)

    # ------------------------------------------------------------------ waiting for the engine
    def _fail_pending(self, error: str) -> None:
        pending, self._pending = self._pending, []
        for cb in pending:
            cb(None, error)

    def _notice_exit(self) -> None:
        """Let the running child's exit, if it happened since the last event loop pass, update the state now."""
        if self._proc is not None and self._state == STATE_RUNNING:
            self._proc.waitForFinished(0)

    def _answered(self, health: dict, url: str) -> None:
        """The engine at ``url`` answered /health now (the cache ``ensure_async`` trusts for HEALTH_TTL_S)."""
        self._health, self._health_at, self._health_url = health, time.monotonic(), url

    def _health_async(self) -> None:
        """Check /health, then answer the callbacks waiting now (not later ones: they get their own check)."""
        try:
            conn = self.connection()
        except EngineError as exc:  # remote token not readable (auth database locked)
            self._fail_pending(str(exc))
            return
        if conn is None:
            self._fail_pending(self._detail or "engine not running")
            return
        waiting, self._pending = self._pending, []

        def done(result, error):
            if not error:
                self._answered(result or {}, conn.url)
            for cb in waiting:
                cb(None, error) if error else cb(conn, None)

        run_async("RSITR engine health", lambda: EngineClient(conn).health(), done)

    def ensure_async(self, callback) -> None:
        """Call ``callback(connection, None)`` once the engine answers, or ``callback(None, error)``.

        Never blocks: a dead or missing local child is (re)started first.
        """
        self._notice_exit()  # a child killed a moment ago must not be answered from the health cache
        if self._health and time.monotonic() - self._health_at < HEALTH_TTL_S and self.is_running():
            conn = self.connection()
            if conn is not None and conn.url == self._health_url:
                callback(conn, None)  # this engine answered recently and the child is alive: no extra round trip
                return
        self._pending.append(callback)
        if self.remote() or self.is_running():
            self._health_async()
            return
        if self._state == STATE_STARTING and self._proc is not None:
            return  # the ready line (or the child's exit) answers all waiting callbacks
        self.start()
        if self._state not in (STATE_STARTING, STATE_RUNNING):
            self._fail_pending(self._detail or "engine failed to start")

    def ensure_running(self, timeout: float | None = None, _retry: bool = False) -> Connection:
        """Blocking variant (main thread, Processing ``prepareAlgorithm``, tests): returns a healthy connection.

        Events are processed while waiting, so the UI keeps repainting during an engine start.
        """
        timeout = float(timeout or self.settings.get("start_timeout_s"))
        if self.remote():
            conn = self.connection()
            self._answered(EngineClient(conn).health(), conn.url)
            return conn
        self._notice_exit()
        if not self.is_running():
            self.start()
        deadline = time.monotonic() + timeout
        while self._state == STATE_STARTING:
            if time.monotonic() > deadline:
                why = self._last_error()
                self.stop()
                self._set_state(
                    STATE_FAILED, f"engine did not start within {timeout:.0f} s" + (f": {why}" if why else "")
                )
                raise EngineError(self._detail)
            proc = self._proc
            if proc is not None and proc.state() != QProcess.ProcessState.NotRunning:
                proc.waitForReadyRead(50)
            else:
                time.sleep(0.02)
            QCoreApplication.processEvents()
        conn = self.connection()
        if conn is None:
            raise EngineError(self._detail or "engine is not running")
        try:
            self._answered(EngineClient(conn).health(), conn.url)
        except EngineError as exc:
            if not exc.unreachable or _retry:
                raise
            log(f"engine did not answer ({exc}); restarting it", Qgis.MessageLevel.Warning)
            self.stop()
            return self.ensure_running(timeout, _retry=True)
        return conn


_MANAGER: EngineManager | None = None
_CHILD_PIDS: set[int] = set()  # engine children started by this process, for the exit safety net


@atexit.register
def kill_children() -> None:
    """Safety net for hosts that exit without unloading the plugin (qgis_process removes the provider at
    exit; Python exit handlers): SIGTERM the engine children still running. No Qt calls."""
    for pid in list(_CHILD_PIDS):
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    _CHILD_PIDS.clear()


def get_manager() -> EngineManager:
    """The plugin-wide engine manager (shared by the panel, the describe tool and Processing)."""
    global _MANAGER
    if _MANAGER is None:
        _MANAGER = EngineManager()
    return _MANAGER


def set_manager(manager: EngineManager | None) -> None:
    global _MANAGER
    _MANAGER = manager


def stop_engine() -> None:
    """Stop the engine child, keeping the manager (the next action starts it again)."""
    if _MANAGER is not None:
        try:
            _MANAGER.stop()
        except RuntimeError:  # the Qt side is already gone at interpreter exit
            kill_children()


def shutdown_manager() -> None:
    """Stop the engine child and forget the manager (plugin unload)."""
    global _MANAGER
    if _MANAGER is not None:
        _MANAGER.stop()
        _MANAGER.deleteLater()
        _MANAGER = None
