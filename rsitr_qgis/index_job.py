"""An engine index job seen through to its end: ``poll_job`` (blocking, shared by the panel's task and
Processing) and ``IndexTask``, the QgsTask that shows the job in QGIS's task manager (progress, cancel)."""

from __future__ import annotations

import time
from collections.abc import Callable

from qgis.core import QgsTask
from qgis.PyQt.QtCore import pyqtSignal

from .client import Connection, EngineClient
from .engine_requests import IndexRequest
from .errors import EngineError, one_line
from .panel_logic import job_progress

POLL_INTERVAL_S = 0.25
POLL_TIMEOUT_S = 30.0
_RUNNING: set = set()  # Python references to running tasks (QGIS's task manager owns the C++ side)


def poll_job(
    client: EngineClient,
    job_id: str,
    is_canceled: Callable[[], bool],
    on_progress: Callable[[int, str], None],
    interval: float = POLL_INTERVAL_S,
) -> dict:
    """Poll ``/jobs/{job_id}`` until the job ends; returns the last job answer.

    ``on_progress(percent, label)`` after every answer. When ``is_canceled()`` turns true the job is cancelled
    on the engine (``DELETE /jobs/{id}``) and ``{"state": "cancelled", ...}`` returned.
    """
    while True:
        if is_canceled():
            try:
                client.cancel(job_id)
            except EngineError:
                pass  # the job may have ended meanwhile; the answer below says how
            return {"id": job_id, "state": "cancelled"}
        job = client.job(job_id)
        pct, label, finished, _error = job_progress(job)
        on_progress(pct, label)
        if finished:
            return job
        time.sleep(interval)


class IndexTask(QgsTask):
    """``POST /index`` then poll the job, in a worker thread; listed in QGIS's task manager.

    ``jobStarted(job_id)`` and ``jobProgress(percent, label)`` are delivered in the main thread;
    ``callback(state, error, job)`` runs in the main thread when the task ends ("done", "failed", "cancelled").
    Cancelling the task (task manager or panel) cancels the engine job.
    """

    jobStarted = pyqtSignal(str)
    jobProgress = pyqtSignal(int, str)

    def __init__(self, conn: Connection, request: IndexRequest, callback: Callable[[str, str, dict], None]):
        name = request.raster.replace("\\", "/").rsplit("/", 1)[-1]
        super().__init__(f"RSITR: index {name}", QgsTask.Flag.CanCancel)
        self.conn = conn
        self.request = request
        self.job_id: str | None = None
        self.job: dict = {}
        self.error = ""
        self._callback = callback
        _RUNNING.add(self)

    def run(self) -> bool:  # worker thread
        try:
            client = EngineClient(self.conn, timeout=POLL_TIMEOUT_S)
            self.job_id = client.index(self.request)
            self.jobStarted.emit(self.job_id)

            def progress(pct: int, label: str) -> None:
                self.setProgress(pct)
                self.jobProgress.emit(pct, label)

            self.job = poll_job(client, self.job_id, self.isCanceled, progress)
        except EngineError as exc:
            self.error = str(exc)
            return False
        except Exception as exc:  # noqa: BLE001 - one line, never a traceback
            self.error = one_line(f"{type(exc).__name__}: {exc}")
            return False
        _pct, _label, _finished, self.error = job_progress(self.job)
        return self.job.get("state") == "done"

    def finished(self, ok: bool) -> None:  # main thread
        _RUNNING.discard(self)
        state = "done" if ok else ("cancelled" if self.isCanceled() else str(self.job.get("state") or "failed"))
        if state == "done":
            error = ""
        elif state == "cancelled":
            error = self.error or "indexing cancelled"
        else:
            state = "failed" if state not in ("failed", "cancelled") else state
            error = self.error or "indexing failed"
        try:
            self._callback(state, error, self.job)
        except RuntimeError:  # the panel was closed meanwhile
            pass
