"""Settings dialog: engine mode, interpreter, URL/token, cache and model folders, defaults.

The remote token goes into QGIS's authentication database (remote_token.py), never into plain settings;
the field stays empty when a token is stored (typing a new one replaces it).
"""

from __future__ import annotations

from qgis.gui import QgsFileWidget, QgsPasswordLineEdit
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QLineEdit,
    QMessageBox,
    QSpinBox,
)

from .errors import EngineError
from .remote_token import forget_token, save_token
from .settings import MODE_LOCAL, MODE_REMOTE, Settings, default_interpreter

TOKEN_STORED_HINT = "stored in the QGIS authentication database (type to replace)"


class SettingsDialog(QDialog):
    def __init__(self, settings: Settings, parent=None):
        super().__init__(parent)
        self.setObjectName("rsitr_settings_dialog")
        self.setWindowTitle("RSITR settings")
        self.settings = settings
        form = QFormLayout(self)
        self.mode = QComboBox()
        self.mode.addItem("Local engine (started by the plugin)", MODE_LOCAL)
        self.mode.addItem("Remote engine (URL + token)", MODE_REMOTE)
        self.mode.setCurrentIndex(max(0, self.mode.findData(settings.get("mode"))))
        form.addRow("Mode", self.mode)
        self.interpreter = QgsFileWidget()
        self.interpreter.setFilePath(settings.get("interpreter"))
        self.interpreter.lineEdit().setPlaceholderText(default_interpreter(engine_dir=settings.engine_dir()))
        form.addRow("Engine Python", self.interpreter)
        self.model_dir = QgsFileWidget()
        self.model_dir.setStorageMode(QgsFileWidget.StorageMode.GetDirectory)
        self.model_dir.setFilePath(settings.get("model_dir"))
        form.addRow("Model bundle folder", self.model_dir)
        self.cache_dir = QgsFileWidget()
        self.cache_dir.setStorageMode(QgsFileWidget.StorageMode.GetDirectory)
        self.cache_dir.setFilePath(settings.get("cache_dir"))
        form.addRow("Tile store cache", self.cache_dir)
        self.caption_bank = QgsFileWidget()
        self.caption_bank.setFilter("Caption bank (*.npz)")
        self.caption_bank.setFilePath(settings.get("caption_bank"))
        self.caption_bank.setToolTip("Describe also lists your own texts: python -m engine caption-bank build ...")
        form.addRow("Caption bank (describe)", self.caption_bank)
        self.url = QLineEdit(settings.get("url"))
        form.addRow("Remote URL", self.url)
        self.token = QgsPasswordLineEdit()
        self.token.setText(settings.get("token"))  # a legacy plain token, if any: saving moves it
        stored = bool(settings.get("authcfg"))
        self.token.setPlaceholderText(TOKEN_STORED_HINT if stored else "")
        form.addRow("Remote token", self.token)
        self.forget_token = QCheckBox("Remove the stored token")
        self.forget_token.setObjectName("rsitr_forget_token")
        self.forget_token.setVisible(stored)
        form.addRow("", self.forget_token)
        self.k = QSpinBox()
        self.k.setRange(1, 1000)
        self.k.setValue(settings.get("k"))
        form.addRow("Default k", self.k)
        self.threshold = QDoubleSpinBox()
        self.threshold.setRange(0.0, 1.0)
        self.threshold.setDecimals(3)
        self.threshold.setValue(settings.get("threshold"))
        form.addRow("Default min score", self.threshold)
        self.tile = QSpinBox()
        self.tile.setRange(16, 8192)
        self.tile.setValue(settings.get("tile"))
        form.addRow("Tile size (px)", self.tile)
        self.stride = QSpinBox()
        self.stride.setRange(1, 8192)
        self.stride.setValue(settings.get("stride"))
        form.addRow("Stride (px)", self.stride)
        box = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        box.accepted.connect(self.accept)
        box.rejected.connect(self.reject)
        form.addRow(box)

    def save(self) -> None:
        """Write the settings; raises EngineError (one line) when the token cannot be stored."""
        s = self.settings
        s.set("mode", self.mode.currentData())
        s.set("interpreter", self.interpreter.filePath().strip())
        s.set("model_dir", self.model_dir.filePath().strip())
        s.set("cache_dir", self.cache_dir.filePath().strip())
        s.set("caption_bank", self.caption_bank.filePath().strip())
        s.set("url", self.url.text().strip())
        s.set("k", self.k.value())
        s.set("threshold", self.threshold.value())
        s.set("tile", self.tile.value())
        s.set("stride", self.stride.value())
        token = self.token.text().strip()
        if token:
            save_token(s, token)
        elif self.forget_token.isChecked():
            forget_token(s)

    def accept(self) -> None:
        try:
            self.save()
        except EngineError as exc:
            QMessageBox.warning(self, "RSITR settings", str(exc))
            return
        super().accept()
