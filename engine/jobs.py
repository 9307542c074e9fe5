"""Background index jobs: a FIFO queue served by one worker thread, with progress and cancel."""

from __future__ import annotations

import queue
import threading
import uuid
from dataclasses import dataclass, field

from engine.errors import Cancelled, NotFound, one_line

MAX_JOBS_KEPT = 1000


@dataclass
class Job:
    job_id: str
    raster: str
    state: str = "queued"
    done: int = 0
    total: int = 0
    store_id: str | None = None
    error: str | None = None
    cancel: threading.Event = field(default_factory=threading.Event, repr=False)

    def as_dict(self) -> dict:
        progress = 1.0 if self.state == "done" else (self.done / self.total if self.total else 0.0)
        return {
            "job_id": self.job_id,
            "raster": self.raster,
            "state": self.state,
            "progress": round(progress, 4),
            "done": self.done,
            "total": self.total,
            "store_id": self.store_id,
            "error": self.error,
        }


class JobManager:
    """Runs ``run(job)`` callables one at a time in submission order."""

    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self._q: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._worker, name="rsitr-jobs", daemon=True)
        self._thread.start()

    def submit(self, raster: str, run) -> Job:
        job = Job(job_id=uuid.uuid4().hex, raster=raster)
        with self._lock:
            if len(self.jobs) >= MAX_JOBS_KEPT:
                for jid in [j.job_id for j in self.jobs.values() if j.state in ("done", "failed", "cancelled")]:
                    del self.jobs[jid]
            self.jobs[job.job_id] = job
        self._q.put((job, run))
        return job

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self.jobs.get(job_id)
        if job is None:
            raise NotFound(f"unknown job: {job_id}")
        return job

    def cancel(self, job_id: str) -> Job:
        job = self.get(job_id)
        job.cancel.set()
        if job.state == "queued":
            job.state = "cancelled"
        return job

    def _worker(self) -> None:
        while True:
            job, run = self._q.get()
            if job.cancel.is_set():
                job.state = "cancelled"
                continue
            job.state = "running"
            try:
                job.store_id = run(job)
                job.state = "done"
            except Cancelled as exc:
                job.state, job.error = "cancelled", exc.message
            except BaseException as exc:  # noqa: BLE001 - reported in the job, never raised
                job.state, job.error = "failed", one_line(exc)
