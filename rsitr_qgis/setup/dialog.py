"""The "Set up engine" dialog and the controller behind the plugin's setup menu actions.

The dialog states what will be installed, where and roughly how large (``Plan.summary``) and lets the user
choose the folder, the Python, CPU or GPU, the package source (index URL or a wheel folder) and the model
source (release URL or a folder on disk). The controller runs the ``SetupTask``, then fills in the interpreter
and model settings and starts the engine.
"""

from __future__ import annotations

import sys
from pathlib import Path

from qgis.core import Qgis, QgsApplication, QgsMessageLog
from qgis.gui import QgsFileWidget
from qgis.PyQt.QtCore import QObject, pyqtSignal
from qgis.PyQt.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from ..settings import Settings, default_engine_dir
from . import installer, offer
from .plan import (
    DEVICE_CPU,
    DEVICE_GPU,
    MODEL_DOWNLOAD,
    MODEL_FOLDER,
    MODEL_KEEP,
    EngineDist,
    SetupError,
    SetupOptions,
    build_plan,
    detect_gpu,
    load_dist,
)
from .proxy import qgis_proxy_env
from .python_finder import SearchContext, find_pythons, probe
from .task import LOG_TAG, SetupTask


def _radio_row(*widgets) -> QWidget:
    w = QWidget()
    lay = QHBoxLayout(w)
    lay.setContentsMargins(0, 0, 0, 0)
    for x in widgets:
        lay.addWidget(x, 1 if isinstance(x, (QLineEdit, QgsFileWidget)) else 0)
    return w


class SetupDialog(QDialog):
    """Object name ``rsitr_setup_dialog``; ``options()`` holds the choices, ``summary_label`` the plan."""

    def __init__(self, settings: Settings, dist: EngineDist | None, dist_error: str = "", force=False, parent=None):
        super().__init__(parent)
        self.setObjectName("rsitr_setup_dialog")
        self.setWindowTitle("RSITR: repair / update engine" if force else "RSITR: set up engine")
        self.settings = settings
        self.dist = dist
        self.force = force
        self.gpus = detect_gpu()
        lay = QVBoxLayout(self)
        intro = QLabel(
            "The search engine runs in its own Python environment beside QGIS (nothing is installed into QGIS's"
            " Python). Setup creates that environment, installs the engine and ONNX Runtime into it and fetches"
            " the default model."
        )
        intro.setWordWrap(True)
        lay.addWidget(intro)
        form = QFormLayout()

        self.folder = QgsFileWidget()
        self.folder.setStorageMode(QgsFileWidget.StorageMode.GetDirectory)
        self.folder.setFilePath(str(settings.engine_dir()))
        form.addRow("Install into", self.folder)

        self.python = QComboBox()
        self.python.setEditable(True)
        self.python.setObjectName("rsitr_setup_python")
        min_version = dist.requires_python if dist else (3, 9)
        self.pythons = find_pythons(SearchContext(qgis_prefix=QgsApplication.prefixPath()), min_version)
        for cand in self.pythons:
            self.python.addItem(cand.label(), cand.path)
        self.python_note = QLabel("")
        self.python_note.setWordWrap(True)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse_python)
        form.addRow("Python", _radio_row(self.python, browse))
        form.addRow("", self.python_note)

        self.cpu = QRadioButton("CPU (onnxruntime)")
        self.gpu = QRadioButton("NVIDIA GPU (onnxruntime-gpu)")
        self.device_group = QButtonGroup(self)
        self.device_group.addButton(self.cpu)
        self.device_group.addButton(self.gpu)
        (self.gpu if self.gpus else self.cpu).setChecked(True)
        gpu_note = QLabel(f"found: {', '.join(self.gpus)}" if self.gpus else "no NVIDIA GPU found (nvidia-smi)")
        form.addRow("Runtime", _radio_row(self.cpu, self.gpu, gpu_note))

        self.from_index = QRadioButton("package index")
        self.index_url = QLineEdit()
        self.index_url.setPlaceholderText("PyPI (pip's configured index)")
        self.from_wheels = QRadioButton("wheel folder (offline)")
        self.wheel_dir = QgsFileWidget()
        self.wheel_dir.setStorageMode(QgsFileWidget.StorageMode.GetDirectory)
        self.pkg_group = QButtonGroup(self)
        self.pkg_group.addButton(self.from_index)
        self.pkg_group.addButton(self.from_wheels)
        self.from_index.setChecked(True)
        form.addRow("Packages from", _radio_row(self.from_index, self.index_url))
        form.addRow("", _radio_row(self.from_wheels, self.wheel_dir))

        self.model_download = QRadioButton("download from")
        self.release_url = QLineEdit(settings.release_url(dist.base_url if dist else ""))
        self.model_folder_radio = QRadioButton("folder on disk")
        self.model_folder = QgsFileWidget()
        self.model_folder.setStorageMode(QgsFileWidget.StorageMode.GetDirectory)
        self.model_keep = QRadioButton("keep the current model setting")
        self.model_group = QButtonGroup(self)
        for b in (self.model_download, self.model_folder_radio, self.model_keep):
            self.model_group.addButton(b)
        self.model_download.setChecked(True)
        form.addRow("Model", _radio_row(self.model_download, self.release_url))
        form.addRow("", _radio_row(self.model_folder_radio, self.model_folder))
        form.addRow("", self.model_keep)
        lay.addLayout(form)

        self.summary_label = QLabel("")
        self.summary_label.setObjectName("rsitr_setup_summary")
        self.summary_label.setWordWrap(True)
        self.summary_label.setStyleSheet("background: #f4f6f8; padding: 6px; border: 1px solid #ccd;")
        lay.addWidget(self.summary_label)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.install_button = self.buttons.addButton(
            "Repair / update" if force else "Install", QDialogButtonBox.ButtonRole.AcceptRole
        )
        self.install_button.setObjectName("rsitr_setup_install")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        lay.addWidget(self.buttons)

        for sig in (
            self.folder.fileChanged,
            self.wheel_dir.fileChanged,
            self.model_folder.fileChanged,
            self.index_url.textChanged,
            self.release_url.textChanged,
            self.python.currentIndexChanged,
            self.python.editTextChanged,
            self.device_group.buttonClicked,
            self.pkg_group.buttonClicked,
            self.model_group.buttonClicked,
        ):
            sig.connect(lambda *_a: self.refresh())
        self.resize(760, 0)
        self.refresh(dist_error)

    def _browse_python(self) -> None:
        from qgis.PyQt.QtWidgets import QFileDialog

        path, _ = QFileDialog.getOpenFileName(self, "Python interpreter for the engine")
        if path:
            self.set_python(path)

    def set_python(self, path: str) -> None:
        """Use this interpreter (a user's choice always works when it passes the probe)."""
        cand = probe(path, "chosen by you", self.dist.requires_python if self.dist else (3, 9))
        self.pythons.insert(0, cand)
        self.python.insertItem(0, cand.label(), cand.path)
        self.python.setCurrentIndex(0)

    def python_path(self) -> str:
        data = self.python.currentData()
        text = self.python.currentText().strip()
        return data if data and self.python.itemText(self.python.currentIndex()) == text else text

    def options(self) -> SetupOptions:
        model_source = MODEL_DOWNLOAD
        if self.model_folder_radio.isChecked():
            model_source = MODEL_FOLDER
        elif self.model_keep.isChecked():
            model_source = MODEL_KEEP
        return SetupOptions(
            engine_dir=Path(self.folder.filePath().strip() or default_engine_dir()).expanduser(),
            python=self.python_path(),
            device=DEVICE_GPU if self.gpu.isChecked() else DEVICE_CPU,
            index_url=self.index_url.text().strip() if self.from_index.isChecked() else "",
            wheel_dir=self.wheel_dir.filePath().strip() if self.from_wheels.isChecked() else "",
            model_source=model_source,
            release_url=self.release_url.text().strip(),
            model_folder=self.model_folder.filePath().strip(),
            force=self.force,
        )

    def refresh(self, error: str = "") -> None:
        """Recompute the plan summary; the Install button is enabled only for a valid plan."""
        cand = next((c for c in self.pythons if c.path == self.python_path()), None)
        note = "" if cand is None or cand.usable else f"<span style='color:#b00020'>{cand.why}</span>"
        if not self.pythons:
            note = "No suitable Python found: pick one (Browse…)."
        self.python_note.setText(note)
        self.python_note.setVisible(bool(note))
        ok = False
        if error or self.dist is None:
            text = error or "this plugin build carries no engine"
        elif not self.python_path():
            text = "No suitable Python found: choose an interpreter (Browse…)."
        elif cand is not None and not cand.usable:
            text = f"This Python cannot be used: {cand.why}"
        else:
            try:
                text, ok = build_plan(self.options(), self.dist).summary(), True
            except SetupError as exc:
                text = str(exc)
        self.summary_label.setText(text)
        self.install_button.setEnabled(ok)


class SetupController(QObject):
    """Opens the dialog, runs the task, applies the result (settings, engine start), removes the engine."""

    setupFinished = pyqtSignal(object, str)  # InstallResult or None, error ("" on success)

    def __init__(self, iface, manager, dist_dir: Path | None = None, parent=None):
        super().__init__(parent)
        self.iface = iface
        self.manager = manager
        self.dist_dir = dist_dir
        self.dialog: SetupDialog | None = None
        self.task: SetupTask | None = None

    def _dist(self) -> tuple[EngineDist | None, str]:
        try:
            return (load_dist(self.dist_dir) if self.dist_dir else load_dist()), ""
        except SetupError as exc:
            return None, str(exc)

    def open_dialog(self, force: bool = False) -> SetupDialog:
        """Show the dialog (non-blocking); Install starts the task."""
        dist, error = self._dist()
        parent = self.iface.mainWindow() if self.iface is not None else None
        self.dialog = SetupDialog(self.manager.settings, dist, error, force, parent)
        self.dialog.accepted.connect(lambda: self.start(self.dialog.options()))
        self.dialog.open()
        return self.dialog

    def start(self, options: SetupOptions) -> SetupTask | None:
        dist, error = self._dist()
        if dist is None:
            self._report(None, error)
            return None
        try:
            plan = build_plan(options, dist)
        except SetupError as exc:
            self._report(None, str(exc))
            return None
        if sys.platform.startswith("win") and not self.manager.remote():
            self.manager.stop()  # Windows cannot rename a venv whose python.exe is running; it restarts on demand
        env = qgis_proxy_env()
        if env:
            QgsMessageLog.logMessage(f"RSITR setup: using QGIS's proxy {env['HTTPS_PROXY'].split('@')[-1]}", LOG_TAG)
        self.task = SetupTask(plan, lambda result, err: self._finished(options, result, err), env)
        QgsApplication.taskManager().addTask(self.task)
        self._message("Setting up the engine (see the task manager; details in the RSITR log)", Qgis.MessageLevel.Info)
        return self.task

    def _finished(self, options: SetupOptions, result, error: str) -> None:
        if result is not None:
            s = self.manager.settings
            self.manager.stop()
            s.set("interpreter", result.interpreter)
            if result.model_dir:
                s.set("model_dir", result.model_dir)
            s.set("engine_dir", "" if options.engine_dir == default_engine_dir() else str(options.engine_dir))
            dist, _error = self._dist()
            default_url = s.release_url(dist.base_url if dist else "")
            if options.release_url and options.release_url.rstrip("/") != default_url:
                s.set("release_url", options.release_url)
            self.manager.start()
        self.task = None
        self._report(result, error)

    def _report(self, result, error: str) -> None:
        if error:
            self._message(error, Qgis.MessageLevel.Critical)
        else:
            self._message(result.message, Qgis.MessageLevel.Success)
        self.setupFinished.emit(result, error)

    def _message(self, text: str, level) -> None:
        QgsMessageLog.logMessage(f"RSITR setup: {text}", LOG_TAG, level)
        if self.iface is not None:
            self.iface.messageBar().pushMessage(
                "RSITR", text, level=level, duration=0 if level == Qgis.MessageLevel.Critical else 8
            )

    def remove(self, confirm: bool = True) -> str:
        """Stop the engine, delete the engine folder, clear the settings that pointed into it."""
        s = self.manager.settings
        engine_dir = s.engine_dir()
        if confirm and self.iface is not None:
            answer = QMessageBox.question(
                self.iface.mainWindow(),
                "RSITR: remove engine and models",
                f"Delete {engine_dir} (the engine's Python environment and the downloaded models)?",
            )
            if answer != QMessageBox.StandardButton.Yes:
                return ""
        self.manager.stop()
        try:
            message = installer.remove(engine_dir)
        except (SetupError, OSError) as exc:
            self._message(f"remove failed: {exc}", Qgis.MessageLevel.Critical)
            return ""
        for key in ("interpreter", "model_dir"):
            value = s.get(key)
            if value and Path(value).resolve().is_relative_to(engine_dir.resolve()):
                s.reset(key)
        self._message(message, Qgis.MessageLevel.Success)
        return message


def install_offer(controller: SetupController) -> None:
    offer.set_setup_callback(lambda: controller.open_dialog())
