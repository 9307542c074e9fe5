"""The Processing algorithms through processing.run against the engine child."""

from __future__ import annotations

import pytest
from qgis.core import QgsApplication, QgsProcessingException, QgsProcessingFeedback, QgsRasterLayer

from rsitr_qgis import engine_process


class Feedback(QgsProcessingFeedback):
    def __init__(self):
        super().__init__()
        self.errors = []

    def reportError(self, error, fatalError=False):  # noqa: N802, N803
        self.errors.append(error)


def test_provider_lists_the_five_algorithms(processing_ready):
    ids = {a.id() for a in QgsApplication.processingRegistry().providerById("rsitr").algorithms()}
    assert ids == {
        "rsitr:indexraster",
        "rsitr:indexcatalog",
        "rsitr:searchtiles",
        "rsitr:describetiles",
        "rsitr:scoremap",
    }


def test_index_search_describe_through_processing(processing_ready, indexed_raster, project):
    import processing

    out = processing.run("rsitr:indexraster", {"INPUT": str(indexed_raster), "TILE": 256, "STRIDE": 256})
    assert out["N_TILES"] == 4 and out["STORE_ID"]

    res = processing.run(
        "rsitr:searchtiles",
        {"INPUT": str(indexed_raster), "QUERY": "a stadium next to a river", "K": 3, "OUTPUT": "memory:"},
    )
    layer = res["OUTPUT"]
    layer = layer if not isinstance(layer, str) else QgsRasterLayer(layer)
    feats = list(layer.getFeatures())
    assert len(feats) == 3
    assert [f["rank"] for f in feats] == [1, 2, 3]
    scores = [f["score"] for f in feats]
    assert scores == sorted(scores, reverse=True)
    assert layer.crs().authid() == "EPSG:32633"
    assert all(f.geometry().area() == pytest.approx(256 * 256) for f in feats)

    described = processing.run("rsitr:describetiles", {"INPUT": layer, "TOP": 3, "OUTPUT": "memory:"})["OUTPUT"]
    dfeats = list(described.getFeatures())
    assert len(dfeats) == 3
    names = described.fields().names()
    assert {"rank", "score", "tile_id", "top_class", "top_class_prob", "description"} <= set(names)
    assert all(f["top_class"] and 0.0 <= f["top_class_prob"] <= 1.0 for f in dfeats)
    assert all(0.0 <= f["other_prob"] <= 1.0 - f["top_class_prob"] + 1e-6 for f in dfeats)
    assert [f["tile_id"] for f in dfeats] == [f["tile_id"] for f in feats]


def test_search_with_empty_query_fails_cleanly(processing_ready, indexed_raster):
    import processing

    fb = Feedback()
    with pytest.raises(QgsProcessingException) as err:
        processing.run(
            "rsitr:searchtiles",
            {"INPUT": str(indexed_raster), "QUERY": "   ", "K": 3, "OUTPUT": "memory:"},
            feedback=fb,
        )
    assert any("query" in e.lower() for e in fb.errors + [str(err.value)]), (fb.errors, str(err.value))
    assert not any("Traceback" in e for e in fb.errors)


def test_unavailable_engine_is_a_clear_processing_error(processing_ready, indexed_raster, remote_mode):
    import processing

    port = engine_process.free_port()
    remote_mode.use(f"http://127.0.0.1:{port}")
    fb = Feedback()
    with pytest.raises(QgsProcessingException):
        processing.run(
            "rsitr:searchtiles",
            {"INPUT": str(indexed_raster), "QUERY": "a river", "K": 3, "OUTPUT": "memory:"},
            feedback=fb,
        )
    msg = fb.errors[0]
    assert msg.startswith("RSITR engine unavailable") and "not reachable" in msg and "\n" not in msg
    assert "Traceback" not in msg


def test_remote_mode_uses_url_and_token(processing_ready, indexed_raster, remote_mode, manager, project):
    """Remote mode: no child is started; the URL + token (from QGIS's auth database) of a running engine are
    used, through QGIS's network stack."""
    import processing

    conn = manager.ensure_running()
    pid = manager.pid()
    remote_mode.use(conn.url, conn.token)
    remote = manager.connection()
    assert remote.via_qgis and remote.token == conn.token
    assert remote_mode.settings.get("token") == ""  # never in plain settings
    res = processing.run(
        "rsitr:searchtiles", {"INPUT": str(indexed_raster), "QUERY": "a river", "K": 2, "OUTPUT": "memory:"}
    )
    assert res["OUTPUT"].featureCount() == 2
    assert manager.pid() == pid  # the local child was neither restarted nor stopped
    remote_mode.use(conn.url, "wrong-token-wrong-token")
    fb = Feedback()
    with pytest.raises(QgsProcessingException):
        processing.run(
            "rsitr:searchtiles",
            {"INPUT": str(indexed_raster), "QUERY": "a river", "K": 2, "OUTPUT": "memory:"},
            feedback=fb,
        )
    assert "401" in fb.errors[0] and "token" in fb.errors[0]
