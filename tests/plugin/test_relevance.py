"""Find more like this in the panel, driven like a user against the real engine child: find similar from the
results list's context menu and the canvas right-click, yes/no marks (list + map), two refine rounds, a styled
score map layer, marks saved and loaded as a GeoPackage, and the rsitr:scoremap Processing algorithm."""

from __future__ import annotations

from unittest.mock import MagicMock

import pytest
from qgis.core import (
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsPointXY,
    QgsProcessingFeedback,
    QgsProject,
    QgsRasterLayer,
)
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import QMenu

from rsitr_qgis.describe_tool import DescribeController
from rsitr_qgis.dock import SearchDock
from rsitr_qgis.errors import EngineError
from rsitr_qgis.marks_layer import MARKS_PROPERTY
from rsitr_qgis.relevance import MARK_ROLE
from rsitr_qgis.scoremap_layer import SCOREMAP_PROPERTY
from rsitr_qgis.similar_requests import FeedbackRequest, LikeRequest, ScoreMapRequest, TileRef
from tests.plugin.conftest import make_rgb_geotiff, wait_until

N_TILES = 12  # 1024 x 768 px in 256 px tiles


@pytest.fixture
def dock(manager, qgis_iface, project):
    d = SearchDock(manager, qgis_iface)
    yield d
    d.stop_jobs()
    d.deleteLater()


@pytest.fixture(scope="module")
def similar_raster(rasters_dir, manager):
    """1024 x 768 px, EPSG:32633, indexed in 256 px tiles (the engine child's store)."""
    from rsitr_qgis.client import EngineClient
    from rsitr_qgis.engine_requests import IndexRequest
    from rsitr_qgis.index_job import poll_job

    path = make_rgb_geotiff(rasters_dir / "similar.tif", 1024, 768, epsg=32633, origin=(410000.0, 5010000.0))
    if manager.add_root_for(str(path)):
        manager.stop()
    client = EngineClient(manager.ensure_running())
    job = poll_job(client, client.index(IndexRequest(str(path), tile=256, stride=256)), lambda: False, lambda *_: None)
    assert job["state"] == "done", job
    return path


def wait_ranking(dock, start, what: str):
    got = []
    dock.searchFinished.connect(lambda layer, err: got.append((layer, err)))
    start()
    wait_until(lambda: got, 120, what)
    layer, err = got[0]
    assert err == "" and layer is not None, f"{what}: {err} / {dock.message_label.text()}"
    return layer


class Feedback(QgsProcessingFeedback):
    def __init__(self):
        super().__init__()
        self.errors = []

    def reportError(self, error, fatalError=False):  # noqa: N802, N803
        self.errors.append(error)


def trigger(menu: QMenu, name: str) -> None:
    action = next(a for a in menu.actions() if a.objectName() == name)
    action.trigger()


def select_rows(dock, rows) -> None:
    lst = dock.results_list
    lst.clearSelection()
    for r in rows:
        lst.item(r).setSelected(True)


def test_find_similar_marks_refine_scoremap_labels(dock, manager, similar_raster, qgis_iface, tmp_path):
    layer = QgsRasterLayer(str(similar_raster), "similar")
    QgsProject.instance().addMapLayer(layer)
    dock.layer_combo.setLayer(layer)
    states = []
    dock.indexFinished.connect(lambda state, err: states.append((state, err)))
    dock.index_layer()
    wait_until(lambda: states, 120, "indexing")
    assert states == [("done", "")]
    rel = dock.relevance
    dock.query_edit.setText("a field next to a road")
    dock.k_spin.setValue(N_TILES)
    wait_ranking(dock, dock.search, "text search")
    assert dock.results_list.count() == N_TILES and rel.last_kind == "text"

    # find similar from the results list's context menu: that tile first (score 1), then its neighbours
    select_rows(dock, [3])
    example = dock.results_list.item(3).data(Qt.ItemDataRole.UserRole)
    menu = rel.build_list_menu()
    assert [a.objectName() for a in menu.actions()] == [
        "rsitr_find_similar",
        "rsitr_mark_yes",
        "rsitr_mark_no",
        "rsitr_mark_clear",
    ]
    similar = wait_ranking(dock, lambda: trigger(menu, "rsitr_find_similar"), "find similar")
    assert similar.name() == f"RSITR: similar to tile {example['tile_id']}"
    best = dock.results[0]["score"]  # the generated pattern repeats every 256 px down: tiles 1, 5, 9 are alike
    assert best == pytest.approx(1, abs=2e-3) and best == max(r["score"] for r in dock.results)
    assert example["tile_id"] in [r["tile_id"] for r in dock.results if r["score"] == best]
    assert similar.renderer().type() == "graduatedSymbol" and similar.featureCount() == N_TILES
    assert rel.last_kind == "like"

    # marks: two yes, two no, shown in the list and on the map
    first, second = dock.results[0], dock.results[1]
    last, before_last = dock.results[-1], dock.results[-2]
    select_rows(dock, [0, 1])
    trigger(rel.build_list_menu(), "rsitr_mark_yes")
    select_rows(dock, [N_TILES - 1, N_TILES - 2])
    trigger(rel.build_list_menu(), "rsitr_mark_no")
    assert dock.results_list.item(0).data(MARK_ROLE) == "yes" and not dock.results_list.item(0).icon().isNull()
    assert dock.results_list.item(N_TILES - 1).data(MARK_ROLE) == "no"
    assert dock.results_list.item(2).data(MARK_ROLE) is None and dock.results_list.item(2).icon().isNull()
    assert "2 yes, 2 no" in rel.marks_label.text()
    marks = [lyr for lyr in QgsProject.instance().mapLayers().values() if lyr.customProperty(MARKS_PROPERTY)]
    assert len(marks) == 1 and marks[0].featureCount() == 4
    assert sorted(f["label"] for f in marks[0].getFeatures()) == ["no", "no", "yes", "yes"]
    assert marks[0].crs().authid() == "EPSG:4326" and marks[0].renderer().type() == "categorizedSymbol"

    # two refine rounds: the same layer (replaced), marks kept on the redrawn list
    refined = wait_ranking(dock, rel.refine, "refine 1")
    assert refined.name() == "RSITR: a field next to a road (refined)"
    order = [r["tile_id"] for r in dock.results]
    assert max(order.index(first["tile_id"]), order.index(second["tile_id"])) < min(
        order.index(last["tile_id"]), order.index(before_last["tile_id"])
    )
    scores = [r["score"] for r in dock.results]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    marked_rows = [i for i in range(dock.results_list.count()) if dock.results_list.item(i).data(MARK_ROLE)]
    assert len(marked_rows) == 4
    third = next(r for r in dock.results if (r["store_id"], r["tile_id"]) not in rel.marks)
    rel.mark(third, False)
    again = wait_ranking(dock, rel.refine, "refine 2")
    assert QgsProject.instance().mapLayersByName("RSITR: a field next to a road (refined)") == [again]
    assert rel.last_kind == "feedback"

    # score map of the classifier: a pseudocolour raster whose value at the best tile is its score
    maps = []
    rel.scoreMapFinished.connect(lambda lyr, err: maps.append((lyr, err)))
    rel.score_map()
    wait_until(lambda: maps, 120, "score map")
    smap, err = maps[0]
    assert err == "" and smap is not None and smap.isValid(), err
    assert smap.renderer().type() == "singlebandpseudocolor"
    assert smap.customProperty(SCOREMAP_PROPERTY) and smap.name().startswith("RSITR score map: ")
    assert (smap.width(), smap.height()) == (4, 3) and smap.crs().authid() == "EPSG:32633"
    best = dock.results[0]
    x0, y0, w, h = best["window"]
    centre = QgsPointXY(410000.0 + x0 + w / 2, 5010000.0 - y0 - h / 2)
    value, ok = smap.dataProvider().sample(centre, 1)
    assert ok and value == pytest.approx(best["score"], abs=1e-6)
    shader = smap.renderer().shader().rasterShaderFunction()
    assert shader.minimumValue() == pytest.approx(rel.last_scoremap["min"])
    assert len(shader.colorRampItemList()) >= 2

    # marks saved as a GeoPackage, cleared, loaded again
    saved = []
    rel.labelsFinished.connect(lambda what, err: saved.append((what, err)))
    gpkg = tmp_path / "marks.gpkg"
    rel.save_labels(str(gpkg))
    wait_until(lambda: saved, 60, "save marks")
    assert saved == [("saved", "")] and gpkg.is_file()
    kept = dict(rel.marks)
    rel.clear_marks()
    dock.query_edit.setText("")
    rel.load_labels(str(gpkg))
    wait_until(lambda: len(saved) == 2, 60, "load marks")
    assert saved[1] == ("loaded", "") and rel.marks == kept
    assert dock.query_edit.text() == "a field next to a road"
    assert marks[0].featureCount() == 5


def test_canvas_right_click_finds_similar(dock, manager, similar_raster, qgis_iface, project):
    layer = QgsRasterLayer(str(similar_raster), "similar")
    QgsProject.instance().addMapLayer(layer)
    dock.layer_combo.setLayer(layer)
    canvas = qgis_iface.mapCanvas()
    canvas.setLayers([layer])
    canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:4326"))
    ctl = DescribeController(qgis_iface, manager)
    ctl.dock = dock
    try:
        # the raster is indexed by the previous test (same engine cache); a point in tile 5 (row 1, column 1)
        p = QgsCoordinateTransform(layer.crs(), canvas.mapSettings().destinationCrs(), QgsProject.instance()).transform(
            QgsPointXY(410000.0 + 300, 5010000.0 - 300)
        )
        menu = QMenu()
        event = MagicMock()
        event.mapPoint.return_value = p
        ctl._on_context_menu(menu, event)
        assert [a.objectName() for a in menu.actions()] == [
            "rsitr_find_similar_here",
            "rsitr_mark_yes_here",
            "rsitr_mark_no_here",
        ]
        dock.k_spin.setValue(5)
        found = wait_ranking(dock, lambda: trigger(menu, "rsitr_find_similar_here"), "find similar here")
        assert found.name() == "RSITR: similar to 1 tile"
        best = dock.results[0]["score"]  # the generated pattern repeats every 256 px down: tiles 1, 5, 9 are alike
        assert best == pytest.approx(1, abs=2e-3)
        assert 5 in [r["tile_id"] for r in dock.results if r["score"] == best]
        assert not ctl.find_similar_at(QgsPointXY(0, 0)) and "no raster file" in ctl.last_error
        # mark the tile under the point from the map: found through /describe, shown in the list and the layer
        dock.relevance.clear_marks()
        trigger(menu, "rsitr_mark_no_here")
        wait_until(lambda: dock.relevance.marks or ctl.last_error.startswith("RSITR mark"), 60, "mark here")
        store = dock.results[0]["store_id"]
        assert dock.relevance.marks == {(store, 5): False}, ctl.last_error
        row = next(i for i, r in enumerate(dock.results) if r["tile_id"] == 5)
        assert dock.results_list.item(row).data(MARK_ROLE) == "no"
        assert not ctl.mark_at(QgsPointXY(0, 0), True)

        # "Similar to area…": the map tool's polygon (canvas CRS) covering most of tile 6 (x 512..768, y 256..512)
        rel = dock.relevance
        rel.area_button.setChecked(True)
        assert canvas.mapTool() is rel.area_tool
        to_canvas = QgsCoordinateTransform(layer.crs(), canvas.mapSettings().destinationCrs(), QgsProject.instance())
        for px, py in ((530, 270), (750, 270), (750, 500), (530, 500)):
            rel.area_tool.add_vertex(to_canvas.transform(QgsPointXY(410000.0 + px, 5010000.0 - py)))
        area = wait_ranking(dock, rel.area_tool.finish, "similar to area")
        assert area.name() == "RSITR: similar to the drawn area" and not rel.area_button.isChecked()
        best = dock.results[0]["score"]
        assert best == pytest.approx(1, abs=2e-3)
        assert 6 in [r["tile_id"] for r in dock.results if r["score"] == best]
        menu.deleteLater()
    finally:
        ctl.unload()
        canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:32633"))


def test_requests_validate_before_sending():
    with pytest.raises(EngineError, match="at least one tile"):
        LikeRequest(())
    with pytest.raises(EngineError, match="Mark at least one tile"):
        FeedbackRequest(None, (), (TileRef("a" * 16, 1),))
    with pytest.raises(EngineError, match="Type a query"):
        ScoreMapRequest("/x.tif")
    body = FeedbackRequest("roads", (TileRef("a" * 16, 1),), (), k=5, rasters=("/r.tif",)).to_json()
    assert body == {
        "query": "roads",
        "positives": [{"store": "a" * 16, "tile_id": 1}],
        "negatives": [],
        "k": 5,
        "rasters": ["/r.tif"],
    }


def test_scoremap_processing_algorithm(processing_ready, similar_raster, tmp_path, manager):
    import processing
    from qgis.core import QgsProcessingException

    from rsitr_qgis.client import EngineClient
    from rsitr_qgis.engine_requests import SearchRequest
    from rsitr_qgis.similar_requests import LabelsSaveRequest

    assert QgsApplication.processingRegistry().algorithmById("rsitr:scoremap") is not None
    manager.add_root_for(str(similar_raster))
    if manager.add_root_for(str(tmp_path / "x.gpkg")):
        manager.stop()
    client = EngineClient(manager.ensure_running())
    search = client.search(SearchRequest("a road", k=N_TILES, rasters=(str(similar_raster),)))
    out = processing.run(
        "rsitr:scoremap", {"INPUT": str(similar_raster), "QUERY": "a road", "OUTPUT": str(tmp_path / "text.tif")}
    )
    smap = QgsRasterLayer(out["OUTPUT"], "text")
    assert smap.isValid() and (smap.width(), smap.height()) == (4, 3)
    for r in search["results"]:
        x0, y0, w, h = r["window"]
        value, ok = smap.dataProvider().sample(QgsPointXY(410000.0 + x0 + w / 2, 5010000.0 - y0 - h / 2), 1)
        assert ok and value == pytest.approx(r["score"], abs=1e-6)
    del smap  # a layer no project owns must be gone before QGIS exits (PyQGIS segfaults at exit otherwise)
    assert out["MAX"] == pytest.approx(search["results"][0]["score"], abs=1e-6)

    sid = search["results"][0]["store_id"]
    labels = tmp_path / "labels.gpkg"
    client.send(LabelsSaveRequest(str(labels), (TileRef(sid, 0), TileRef(sid, 1)), (TileRef(sid, 11),), "a road"))
    out = processing.run(
        "rsitr:scoremap", {"INPUT": str(similar_raster), "LABELS": str(labels), "OUTPUT": str(tmp_path / "fb.tif")}
    )
    fb_layer = QgsRasterLayer(out["OUTPUT"], "fb")
    assert 0 <= out["MIN"] <= out["MAX"] <= 1 and fb_layer.isValid()
    del fb_layer
    fb = Feedback()
    with pytest.raises(QgsProcessingException) as err:
        processing.run(
            "rsitr:scoremap",
            {"INPUT": str(similar_raster), "LABELS": str(tmp_path / "none.gpkg"), "OUTPUT": str(tmp_path / "n.tif")},
            feedback=fb,
        )
    assert any("none.gpkg" in e for e in fb.errors + [str(err.value)]), (fb.errors, str(err.value))
    assert not any("Traceback" in e for e in fb.errors)
