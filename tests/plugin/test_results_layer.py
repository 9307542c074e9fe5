"""Result -> feature conversion, the "RSITR: <query>" layer, its graduated style and CRS handling."""

from __future__ import annotations

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsGraduatedSymbolRenderer,
    QgsMapRendererSequentialJob,
    QgsMapSettings,
    QgsPointXY,
    QgsProject,
    QgsRectangle,
)
from qgis.PyQt.QtCore import QSize
from qgis.PyQt.QtGui import QColor

from rsitr_qgis import results_layer as rl

UTM_WKT_AUTHID = "EPSG:32633"


def fake_results(n=4, x0=500000.0, y0=6000000.0, size=256.0, authid=UTM_WKT_AUTHID):
    out = []
    for i in range(n):
        x, y = x0 + i * size, y0
        ring = [[x, y], [x + size, y], [x + size, y - size], [x, y - size], [x, y]]
        out.append(
            {
                "rank": i + 1,
                "score": 0.5 - 0.1 * i,
                "tile_id": 10 + i,
                "store_id": "s1",
                "raster": "/r.tif",
                "window": [i * 256, 0, 256, 256],
                "crs": "",
                "authid": authid,
                "geometry": {"type": "Polygon", "coordinates": [ring]},
            }
        )
    return out


def test_geojson_to_geometry():
    g = rl.geometry_from_geojson(fake_results(1)[0]["geometry"])
    assert g.area() == 256.0 * 256.0
    multi = {"type": "MultiPolygon", "coordinates": [[[[0, 0], [1, 0], [1, 1], [0, 0]]]]}
    assert rl.geometry_from_geojson(multi).isMultipart()
    assert rl.geometry_from_geojson({"type": "Point", "coordinates": [0, 0]}).isEmpty()
    assert rl.geometry_from_geojson(None).isEmpty()


def test_crs_from_authid_or_wkt():
    assert rl.crs_of({"authid": "EPSG:32633"}).authid() == "EPSG:32633"
    wkt = QgsCoordinateReferenceSystem("EPSG:3857").toWkt()
    assert rl.crs_of({"authid": "", "crs": wkt}).isValid()
    assert not rl.crs_of({}).isValid()


def test_features_keep_rank_score_tile_and_can_be_reprojected():
    feats = rl.results_to_features(fake_results())
    assert [f["rank"] for f in feats] == [1, 2, 3, 4]
    assert [round(f["score"], 2) for f in feats] == [0.5, 0.4, 0.3, 0.2]
    assert [f["tile_id"] for f in feats] == [10, 11, 12, 13]
    wgs = rl.results_to_features(fake_results(), QgsCoordinateReferenceSystem("EPSG:4326"))
    c = wgs[0].geometry().centroid().asPoint()
    assert 14.9 < c.x() < 15.1 and 54.0 < c.y() < 54.2  # UTM 33N, x=500 km: lon 15 E


def test_results_layer_fields_crs_style_and_replacement(project):
    layer = rl.create_results_layer("a stadium next to a river", fake_results())
    assert layer.name() == "RSITR: a stadium next to a river"
    assert layer.crs().authid() == "EPSG:32633"
    assert [f.name() for f in layer.fields()][:3] == ["rank", "score", "tile_id"]
    assert layer.featureCount() == 4
    assert project.mapLayer(layer.id()) is layer
    renderer = layer.renderer()
    assert isinstance(renderer, QgsGraduatedSymbolRenderer) and renderer.classAttribute() == "score"
    ranges = renderer.ranges()
    assert len(ranges) == 5
    assert ranges[0].lowerValue() <= 0.2 and ranges[-1].upperValue() >= 0.5
    for f in layer.getFeatures():
        assert renderer.rangeForValue(f["score"]) is not None
    assert layer.labelsEnabled()

    again = rl.create_results_layer("a stadium next to a river", fake_results(2))
    named = project.mapLayersByName("RSITR: a stadium next to a river")
    assert named == [again] and again.featureCount() == 2
    other = rl.create_results_layer("a port", fake_results(3))
    assert len(project.mapLayers()) == 2 and other.featureCount() == 3


def test_single_score_still_classified(project):
    res = fake_results(1)
    layer = rl.create_results_layer("one", res)
    f = next(layer.getFeatures())
    assert layer.renderer().rangeForValue(f["score"]) is not None


def test_extent_in_canvas_crs():
    g = rl.geometry_from_geojson(fake_results(1)[0]["geometry"])
    rect = rl.extent_in_crs(g, QgsCoordinateReferenceSystem("EPSG:32633"), QgsCoordinateReferenceSystem("EPSG:4326"))
    assert 14.99 < rect.xMinimum() < rect.xMaximum() < 15.01
    assert 54.1 < rect.yMinimum() < rect.yMaximum() < 54.2


def test_results_render_where_they_belong_in_another_project_crs(project):
    """UTM tiles drawn on a EPSG:4326 map: the coloured pixels are where the tiles are, not elsewhere."""
    project.setCrs(QgsCoordinateReferenceSystem("EPSG:4326"))
    layer = rl.create_results_layer("render check", fake_results(2))
    dst = QgsCoordinateReferenceSystem("EPSG:4326")
    tile_rect = rl.extent_in_crs(rl.geometry_from_geojson(fake_results(1)[0]["geometry"]), layer.crs(), dst)
    view = QgsRectangle(tile_rect)
    view.scale(4.0)
    ms = QgsMapSettings()
    ms.setLayers([layer])
    ms.setDestinationCrs(dst)
    ms.setOutputSize(QSize(200, 200))
    ms.setExtent(view)
    ms.setBackgroundColor(QColor(255, 255, 255))
    job = QgsMapRendererSequentialJob(ms)
    job.start()
    job.waitForFinished()
    img = job.renderedImage()
    # pixel at the centre of tile 1 is coloured; a pixel far outside the tiles is background
    px = ms.mapToPixel().transform(QgsPointXY(tile_rect.center()))
    inside = QColor(img.pixel(int(px.x()), int(px.y())))
    corner = QColor(img.pixel(2, 2))
    assert corner.getRgb()[:3] == (255, 255, 255)
    assert inside.getRgb()[:3] != (255, 255, 255)
    assert QgsProject.instance().crs().authid() == "EPSG:4326"
