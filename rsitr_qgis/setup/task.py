"""The setup as a QgsTask: visible in QGIS's task manager with progress and cancel; details go to the message
log under "RSITR"; ``done(result, error)`` is called on the main thread when it ends."""

from __future__ import annotations

from collections.abc import Callable

from qgis.core import Qgis, QgsMessageLog, QgsTask

from .installer import Hooks, InstallResult, SetupCancelled, install
from .plan import Plan, SetupError

LOG_TAG = "RSITR"


class SetupTask(QgsTask):
    """Runs ``installer.install(plan)`` in QGIS's task pool. Cancel kills the running pip/download process."""

    def __init__(
        self, plan: Plan, done: Callable[[InstallResult | None, str], None] | None = None, env: dict | None = None
    ):
        super().__init__("RSITR: set up engine", QgsTask.Flag.CanCancel)
        self.plan = plan
        self.env = dict(env or {})  # extra environment for pip and the download (QGIS's proxy)
        self.done = done
        self.result: InstallResult | None = None
        self.error = ""
        self.cancelled_by_user = False

    def _log(self, line: str) -> None:
        QgsMessageLog.logMessage(line, LOG_TAG, Qgis.MessageLevel.Info)

    def run(self) -> bool:  # worker thread
        hooks = Hooks(log=self._log, progress=self.setProgress, cancelled=self.isCanceled, env=self.env)
        try:
            self.result = install(self.plan, hooks)
            return True
        except SetupCancelled as exc:
            self.cancelled_by_user = True
            self.error = str(exc)
        except SetupError as exc:
            self.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - a bug must still end as one line, not a dead task
            self.error = f"setup failed: {exc.__class__.__name__}: {exc}"
        QgsMessageLog.logMessage(f"RSITR setup: {self.error}", LOG_TAG, Qgis.MessageLevel.Warning)
        return False

    def finished(self, ok: bool) -> None:  # main thread
        if not ok and not self.error:
            self.error = "setup cancelled" if self.isCanceled() else "setup failed"
        if self.done is not None:
            self.done(self.result if ok else None, "" if ok else self.error)
