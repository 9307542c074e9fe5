"""Exit ``serve`` when its parent goes away: a watched parent pid and/or end of file on stdin.

The plugin starts the engine as a child of QGIS. If QGIS is killed (SIGKILL, crash) its exit handlers never
run, so the child watches the parent itself: a daemon thread polls the parent pid (``--parent-pid``) and/or
blocks reading stdin until end of file (``--exit-on-stdin-eof``: the pipe closes when the parent dies).
On either event it asks the server to shut down, then hard-exits after a grace period (a running index job
keeps its resumable partial store: chunks are written atomically).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable

POLL_S = 0.5
GRACE_S = 3.0


def pid_alive(pid: int) -> bool:
    """True while process ``pid`` exists and is not a zombie (portable, never signals it)."""
    if pid <= 0:
        return False
    if sys.platform == "win32":  # os.kill(pid, 0) would send CTRL_C_EVENT on Windows
        import ctypes

        kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return False
        try:
            code = ctypes.c_ulong()
            kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
            return code.value == 259  # STILL_ACTIVE
        finally:
            kernel32.CloseHandle(handle)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc (macOS): os.kill said it exists


def _shutdown(reason: str, request_exit: Callable[[], None], grace_s: float) -> None:
    try:
        print(f"engine: {reason}; shutting down", file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass  # the parent held the other end of stderr: the pipe is gone with it
    try:
        request_exit()
    finally:
        time.sleep(grace_s)
        os._exit(0)  # the server did not stop in time (e.g. a long request): leave anyway


def watch_parent(
    pid: int, request_exit: Callable[[], None], poll_s: float = POLL_S, grace_s: float = GRACE_S
) -> threading.Thread:
    """Daemon thread: when ``pid`` dies (or we are re-parented away from it), shut down."""
    original_ppid = os.getppid()

    def run() -> None:
        while True:
            reparented = original_ppid == pid and os.getppid() != pid
            if reparented or not pid_alive(pid):
                _shutdown(f"parent process {pid} is gone", request_exit, grace_s)
                return
            time.sleep(poll_s)

    thread = threading.Thread(target=run, name="rsitr-parent-watch", daemon=True)
    thread.start()
    return thread


def watch_stdin(request_exit: Callable[[], None], grace_s: float = GRACE_S) -> threading.Thread:
    """Daemon thread: read (and discard) stdin; at end of file, shut down."""

    def run() -> None:
        stream = sys.stdin.buffer if sys.stdin is not None else None
        try:
            while stream is not None and stream.read(4096):
                pass
        except (OSError, ValueError):
            pass
        _shutdown("stdin closed", request_exit, grace_s)

    thread = threading.Thread(target=run, name="rsitr-stdin-watch", daemon=True)
    thread.start()
    return thread
