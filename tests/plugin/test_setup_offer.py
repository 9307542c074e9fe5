"""Where there is no working engine, the panel offers "Set up engine…" and Processing says to run it."""

from __future__ import annotations

import pytest
from qgis.core import QgsProcessingException, QgsProcessingFeedback
from qgis.gui import QgsMessageBar
from qgis.PyQt.QtWidgets import QPushButton

from rsitr_qgis.setup import offer
from tests.plugin.conftest import wait_until


class Iface:
    """Just enough of QgisInterface for the panel: a real message bar."""

    def __init__(self):
        self.bar = QgsMessageBar()

    def messageBar(self):  # noqa: N802 - QGIS API
        return self.bar

    def mapCanvas(self):  # noqa: N802
        return None


@pytest.fixture
def no_engine(manager, plugin_settings, tmp_path):
    """The interpreter setting points at nothing (as a fresh install with no engine set up)."""
    manager.stop()
    plugin_settings.set("interpreter", str(tmp_path / "no-python"))
    yield
    plugin_settings.set("interpreter", "")
    manager.stop()


def test_panel_offers_setup_and_the_button_opens_it(manager, no_engine, project):
    from rsitr_qgis.dock import SearchDock

    opened = []
    offer.set_setup_callback(lambda: opened.append(1))
    iface = Iface()
    dock = SearchDock(manager, iface)
    try:
        dock.start_engine()
        wait_until(lambda: iface.bar.findChildren(QPushButton, "rsitr_setup_offer_button"), 30, "the offer")
        dock.start_engine()  # a second failure does not stack a second offer
        wait_until(lambda: manager.state == "failed", 30, "second failure")
        buttons = iface.bar.findChildren(QPushButton, "rsitr_setup_offer_button")
        assert len(iface.bar.items()) == 1 and "No working engine" in iface.bar.items()[0].text()
        buttons[0].click()
        assert opened == [1] and iface.bar.items() == []
    finally:
        offer.set_setup_callback(None)
        dock.stop_jobs()
        dock.deleteLater()


def test_processing_says_to_run_setup(processing_ready, no_engine, utm_raster):
    import processing

    fb = QgsProcessingFeedback()
    errors = []
    fb.reportError = lambda msg, fatal=False: errors.append(msg)
    with pytest.raises(QgsProcessingException) as err:
        processing.run(
            "rsitr:searchtiles",
            {"INPUT": str(utm_raster), "QUERY": "a river", "K": 3, "OUTPUT": "memory:"},
            feedback=fb,
        )
    msg = (errors or [str(err.value)])[0]
    assert msg.startswith("RSITR engine is not set up") and msg.endswith("Set up engine…") and "\n" not in msg


def test_setup_dialog_states_what_where_and_how_large(tmp_path, plugin_settings):
    from rsitr_qgis.setup.dialog import SetupDialog
    from rsitr_qgis.setup.plan import load_dist
    from tests.plugin.setup_helpers import make_dist

    model = {"name": "m", "version": "1.0", "file": "m-1.0-0123456789abcdef.zip", "sha256": "ab" * 32, "size": 31e6}
    dist_dir, wheels = make_dist(tmp_path, model)
    plugin_settings.set("engine_dir", str(tmp_path / "engine"))
    try:
        d = SetupDialog(plugin_settings, load_dist(dist_dir))
        text = d.summary_label.text()
        assert d.install_button.isEnabled(), text
        assert str(tmp_path / "engine" / "venv") in text and "31 MB" in text and "PyPI" in text
        assert d.cpu.isChecked() == (not d.gpus)
        d.from_wheels.setChecked(True)
        d.wheel_dir.setFilePath(str(wheels / "cpu"))
        assert "offline from the wheel folder" in d.summary_label.text() and d.install_button.isEnabled()
        d.wheel_dir.setFilePath(str(tmp_path / "missing"))
        assert "wheel folder not found" in d.summary_label.text() and not d.install_button.isEnabled()
        d.from_index.setChecked(True)
        d.refresh()
        d.set_python(str(tmp_path / "no-python"))  # a user's choice is probed; a bad one blocks Install
        assert "cannot be used" in d.summary_label.text() and not d.install_button.isEnabled()
        d.deleteLater()
        broken = SetupDialog(plugin_settings, None, "this plugin build carries no engine (x is missing)")
        assert "carries no engine" in broken.summary_label.text() and not broken.install_button.isEnabled()
        broken.deleteLater()
    finally:
        plugin_settings.reset("engine_dir")
