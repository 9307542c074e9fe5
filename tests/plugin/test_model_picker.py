"""The panel's model picker lists every bundle the engine serves with name, version, size and test mR."""

from __future__ import annotations

from qgis.PyQt.QtWidgets import QComboBox  # noqa: F401 - the picker is a QComboBox

from rsitr_qgis.client import EngineClient
from rsitr_qgis.dock import SearchDock, model_label
from tests.plugin.conftest import wait_until


def test_model_label_format():
    m = {"name": "pir-vit-b-32", "version": "0.1.0", "bytes": 612_300_000, "test_mr": 35.26, "default": True}
    assert model_label(m) == "pir-vit-b-32, 0.1.0, 612 MB, test mR 35.3 (default)"
    assert model_label({"name": "x", "version": "1", "bytes": None, "test_mr": None}) == "x, 1, test mR -"


def test_picker_lists_the_engine_models_with_size_and_test_mr(manager, qgis_iface, project):
    dock = SearchDock(manager, qgis_iface)
    try:
        conn = manager.ensure_running()
        dock._load_models(conn)  # what the panel does once the engine answers
        wait_until(lambda: dock.model_combo.count() > 1, 60, "the model list")
        models = EngineClient(conn).models()
        shown = [dock.model_combo.itemText(i) for i in range(1, dock.model_combo.count())]
        assert shown == [model_label(m) for m in models]
        assert all(" MB, test mR " in t for t in shown)
        assert [dock.model_combo.itemData(i) for i in range(1, dock.model_combo.count())] == [m["name"] for m in models]
    finally:
        dock.stop_jobs()
        dock.deleteLater()
