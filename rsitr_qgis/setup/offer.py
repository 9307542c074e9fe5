"""Where the panel or Processing finds no working engine: offer "Set up engine" instead of a bare error."""

from __future__ import annotations

import re
from collections.abc import Callable

MENU_PATH = "Raster > RSITR text search > Set up engine…"
# what a missing or broken engine install looks like (start failure of the child, its last stderr line)
_MISSING = re.compile(
    r"No module named|ModuleNotFoundError|ImportError|cannot start the engine interpreter|no default model bundle"
    r"|no model bundle|DLL load failed",
    re.IGNORECASE,
)

_setup_callback: Callable[[], None] | None = None
_offer_item = None  # the message bar item currently offering setup


def set_setup_callback(callback: Callable[[], None] | None) -> None:
    """The plugin registers what the offer's button does (open the setup dialog)."""
    global _setup_callback
    _setup_callback = callback


def engine_missing(detail: str) -> bool:
    """True when ``detail`` (an engine start error) means the engine or its model is not installed."""
    return bool(_MISSING.search(detail or ""))


def processing_message(detail: str) -> str:
    """The one-line QgsProcessingException text for an engine that does not start."""
    if engine_missing(detail):
        return f"RSITR engine is not set up ({detail}): run {MENU_PATH}"
    return f"RSITR engine unavailable: {detail}"


def offer_setup(iface, detail: str) -> bool:
    """Push a message bar item with a "Set up engine…" button; False when this is not a missing-engine error."""
    global _offer_item
    if iface is None or _setup_callback is None or not engine_missing(detail):
        return False
    from qgis.core import Qgis
    from qgis.PyQt.QtWidgets import QPushButton

    bar = iface.messageBar()
    if not hasattr(bar, "createMessage"):  # a stand-in iface (tests) without a real QgsMessageBar
        return False
    try:
        if _offer_item is not None and _offer_item in bar.items():
            return True  # already offered and still shown
    except (RuntimeError, AttributeError):
        pass
    item = bar.createMessage("RSITR", f"No working engine ({detail}).")
    button = QPushButton("Set up engine…", item)
    button.setObjectName("rsitr_setup_offer_button")

    def clicked(_checked=False):
        try:
            bar.popWidget(item)
        except RuntimeError:
            pass
        if _setup_callback is not None:
            _setup_callback()

    button.clicked.connect(clicked)
    item.layout().addWidget(button)
    bar.pushWidget(item, Qgis.MessageLevel.Warning)
    _offer_item = item
    return True
