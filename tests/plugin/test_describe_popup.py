"""Describe popup: shown classes plus "other" sum to 100 %, the uncertain state, the caption-bank setting."""

from __future__ import annotations

import re

from qgis.core import QgsPointXY, QgsProject, QgsRasterLayer
from qgis.PyQt.QtWidgets import QTextBrowser

from rsitr_qgis.describe_tool import DescribeController
from rsitr_qgis.panel_logic import describe_html
from tests.plugin.conftest import wait_until


def _rendered(html: str) -> str:
    browser = QTextBrowser()
    browser.setHtml(html)
    text = browser.toPlainText()
    browser.deleteLater()
    return text


def _percentages(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"(\d+\.\d)%", text)]


def test_popup_shows_other_and_sums_to_100():
    answer = {
        "tile_id": 3,
        "classes": [{"name": "viaduct", "probability": 0.612}, {"name": "bridge", "probability": 0.2}],
        "other": 0.188,
        "uncertain": False,
        "scene": "viaduct",
        "descriptions": [{"text": "a viaduct with curved overpasses <b>", "score": 0.65}],
        "captions": [],
    }
    text = _rendered(describe_html(answer))
    assert "Scene: viaduct" in text and "other" in text and "<b>" in text  # escaped, shown as text
    assert sum(_percentages(text)) == 100.0


def test_popup_uncertain_state():
    answer = {
        "tile_id": 4,
        "classes": [{"name": "farmland", "probability": 0.31}, {"name": "meadow", "probability": 0.29}],
        "other": 0.4,
        "uncertain": True,
        "scene": None,
        "descriptions": [],
        "captions": [{"text": "a field next to a road", "score": 0.4}],
    }
    text = _rendered(describe_html(answer))
    assert "Scene: uncertain" in text and "Scene: farmland" not in text
    assert sum(_percentages(text)) == 100.0 and "From your caption bank" in text


def test_describe_uses_the_caption_bank_setting(
    manager, plugin_settings, qgis_iface, indexed_raster, project, tmp_path
):
    """A bank built with ``python -m engine caption-bank build`` and chosen in the settings feeds the popup."""
    from engine.cli import main

    csv = tmp_path / "team.csv"
    csv.write_text("filename,title\na,many red roofs\nb,a green park\nc,blue water of a lake\n")
    bank = tmp_path / "team.npz"
    assert (
        main(["caption-bank", "build", str(csv), "--out", str(bank), "--model", plugin_settings.get("model_dir")]) == 0
    )
    layer = QgsRasterLayer(str(indexed_raster), "utm")
    QgsProject.instance().addMapLayer(layer)
    canvas = qgis_iface.mapCanvas()
    canvas.setLayers([layer])
    canvas.setDestinationCrs(layer.crs())
    ctl = DescribeController(qgis_iface, manager)
    plugin_settings.set("caption_bank", str(bank))
    try:
        assert ctl.describe_at(QgsPointXY(500000.0 + 300, 6000000.0 - 100))
        wait_until(lambda: ctl.last is not None or ctl.last_error, 120, "describe")
        assert ctl.last_error == "", ctl.last_error
        res = ctl.last
        assert {c["text"] for c in res["captions"]} <= {"many red roofs", "a green park", "blue water of a lake"}
        assert len(res["captions"]) == 3
        assert abs(sum(c["probability"] for c in res["classes"]) + res["other"] - 1) < 1e-9
        text = ctl.popup.browser.toPlainText()
        assert "From your caption bank" in text and res["captions"][0]["text"] in text and "other" in text
        assert abs(sum(_percentages(text)) - 100.0) <= 0.2  # rounding of the shown percentages
    finally:
        plugin_settings.set("caption_bank", "")
        ctl.unload()
