"""Search results -> memory layer "RSITR: <query>" of tile polygons (pure conversion helpers + layer creation)."""

from __future__ import annotations

from qgis.core import (
    QgsClassificationEqualInterval,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsFeature,
    QgsFields,
    QgsGeometry,
    QgsGraduatedSymbolRenderer,
    QgsPointXY,
    QgsProject,
    QgsRectangle,
    QgsVectorLayer,
)

from .qt_compat import FIELD_DOUBLE, FIELD_INT, FIELD_STRING, make_field
from .settings import resource_path

QUERY_PROPERTY = "rsitr/query"
NAME_PREFIX = "RSITR: "
STYLE_FILE = ("styles", "search_results.qml")
CLASS_OPACITY = (0.15, 0.75)  # lowest and highest score class
RESULT_FIELDS = (
    ("rank", FIELD_INT),
    ("score", FIELD_DOUBLE),
    ("tile_id", FIELD_INT),
    ("store_id", FIELD_STRING),
    ("raster", FIELD_STRING),
)


def layer_name(query: str, limit: int = 80) -> str:
    q = " ".join((query or "").split())
    return NAME_PREFIX + (q if len(q) <= limit else q[: limit - 1] + "\u2026")


def result_fields() -> QgsFields:
    fields = QgsFields()
    for name, kind in RESULT_FIELDS:
        fields.append(make_field(name, kind))
    return fields


def crs_of(result: dict) -> QgsCoordinateReferenceSystem:
    """The tile CRS of a search/describe result: ``authid`` when it is valid, else the WKT in ``crs``."""
    authid = result.get("authid") or ""
    if authid:
        crs = QgsCoordinateReferenceSystem(authid)
        if crs.isValid():
            return crs
    wkt = result.get("crs") or ""
    if wkt:
        crs = QgsCoordinateReferenceSystem.fromWkt(wkt)
        if crs.isValid():
            return crs
    return QgsCoordinateReferenceSystem()


def geometry_from_geojson(geom: dict) -> QgsGeometry:
    """GeoJSON Polygon/MultiPolygon -> QgsGeometry (empty geometry for anything else)."""
    if not isinstance(geom, dict):
        return QgsGeometry()
    kind, coords = geom.get("type"), geom.get("coordinates") or []

    def ring(pts):
        return [QgsPointXY(float(p[0]), float(p[1])) for p in pts]

    if kind == "Polygon":
        return QgsGeometry.fromPolygonXY([ring(r) for r in coords])
    if kind == "MultiPolygon":
        return QgsGeometry.fromMultiPolygonXY([[ring(r) for r in poly] for poly in coords])
    return QgsGeometry()


def transform_geometry(
    geom: QgsGeometry,
    src: QgsCoordinateReferenceSystem,
    dst: QgsCoordinateReferenceSystem,
    project: QgsProject | None = None,
) -> QgsGeometry:
    if not src.isValid() or not dst.isValid() or src == dst or geom.isEmpty():
        return QgsGeometry(geom)
    out = QgsGeometry(geom)
    out.transform(QgsCoordinateTransform(src, dst, project or QgsProject.instance()))
    return out


def extent_in_crs(
    geom: QgsGeometry,
    src: QgsCoordinateReferenceSystem,
    dst: QgsCoordinateReferenceSystem,
    project: QgsProject | None = None,
) -> QgsRectangle:
    """Bounding box of a tile in another CRS (e.g. the canvas CRS), densified by transforming the polygon."""
    g = QgsGeometry(geom)
    if not g.isEmpty():
        g = g.densifyByCount(8)
    return transform_geometry(g, src, dst, project).boundingBox()


def results_to_features(
    results: list[dict],
    target_crs: QgsCoordinateReferenceSystem | None = None,
    fields: QgsFields | None = None,
    project: QgsProject | None = None,
) -> list[QgsFeature]:
    """One feature per result (in ``target_crs``, default: the CRS of the first result)."""
    fields = fields or result_fields()
    if target_crs is None and results:
        target_crs = crs_of(results[0])
    feats = []
    for i, res in enumerate(results):
        geom = geometry_from_geojson(res.get("geometry"))
        if target_crs is not None:
            geom = transform_geometry(geom, crs_of(res), target_crs, project)
        f = QgsFeature(fields)
        f.setGeometry(geom)
        f["rank"] = int(res.get("rank", i + 1))
        f["score"] = float(res.get("score", 0.0))
        f["tile_id"] = int(res.get("tile_id", -1))
        f["store_id"] = str(res.get("store_id", ""))
        f["raster"] = str(res.get("raster", ""))
        feats.append(f)
    return feats


def style_path() -> str:
    return resource_path(*STYLE_FILE)


def apply_style(layer: QgsVectorLayer, classes: int = 5) -> bool:
    """Load the graduated QML and recompute its class breaks from this layer's scores."""
    _msg, ok = layer.loadNamedStyle(style_path())
    renderer = layer.renderer()
    if isinstance(renderer, QgsGraduatedSymbolRenderer) and layer.featureCount() > 0:
        renderer.setClassificationMethod(QgsClassificationEqualInterval())
        renderer.updateClasses(layer, classes)
        scores = [f["score"] for f in layer.getFeatures()]
        lo, hi = min(scores), max(scores)
        ranges = renderer.ranges()
        if ranges:  # make sure every score falls in a class, also when all scores are equal
            renderer.updateRangeLowerValue(0, min(lo, ranges[0].lowerValue()))
            renderer.updateRangeUpperValue(len(ranges) - 1, max(hi, ranges[-1].upperValue()))
        for i, rng in enumerate(renderer.ranges()):  # low scores see-through, best tiles stand out
            symbol = rng.symbol().clone()
            symbol.setOpacity(CLASS_OPACITY[0] + (CLASS_OPACITY[1] - CLASS_OPACITY[0]) * i / max(1, len(ranges) - 1))
            renderer.updateRangeSymbol(i, symbol)
        layer.triggerRepaint()
    return bool(ok)


def find_results_layers(query: str, project: QgsProject | None = None) -> list[QgsVectorLayer]:
    project = project or QgsProject.instance()
    name = layer_name(query)
    return [
        lyr
        for lyr in project.mapLayers().values()
        if lyr.customProperty(QUERY_PROPERTY) is not None and lyr.name() == name
    ]


def create_results_layer(
    query: str, results: list[dict], project: QgsProject | None = None, add: bool = True
) -> QgsVectorLayer:
    """Memory layer of the result tiles in the tile CRS, replacing a layer of the same query."""
    project = project or QgsProject.instance()
    crs = crs_of(results[0]) if results else QgsCoordinateReferenceSystem()
    uri = "Polygon?crs=" + (crs.authid() if crs.authid() else "") if crs.isValid() else "Polygon"
    layer = QgsVectorLayer(uri, layer_name(query), "memory")
    if crs.isValid() and not crs.authid():
        layer.setCrs(crs)
    provider = layer.dataProvider()
    provider.addAttributes(result_fields().toList())
    layer.updateFields()
    provider.addFeatures(results_to_features(results, crs if crs.isValid() else None, layer.fields(), project))
    layer.updateExtents()
    apply_style(layer)  # before the custom property: a QML replaces custom properties
    layer.setCustomProperty(QUERY_PROPERTY, query)
    if add:
        old = find_results_layers(query, project)
        position = None
        root = project.layerTreeRoot()
        if old:
            node = root.findLayer(old[0].id())
            if node is not None and node.parent() is not None:
                parent = node.parent()
                position = (parent, parent.children().index(node))
        project.removeMapLayers([lyr.id() for lyr in old])
        if position is not None:
            project.addMapLayer(layer, False)
            position[0].insertLayer(position[1], layer)
        else:
            project.addMapLayer(layer, False)
            root.insertLayer(0, layer)
    return layer
