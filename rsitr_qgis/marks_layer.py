"""Yes/no marks of relevance feedback on the map: memory layer "RSITR marks" (EPSG:4326 tile outlines, green for
yes, red for no), rebuilt whenever the marks change."""

from __future__ import annotations

from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsFields,
    QgsFillSymbol,
    QgsProject,
    QgsRendererCategory,
    QgsVectorLayer,
)

from .qt_compat import FIELD_INT, FIELD_STRING, make_field
from .results_layer import transform_geometry

LAYER_NAME = "RSITR marks"
MARKS_PROPERTY = "rsitr/marks"
STYLE = {"yes": "#1a9850", "no": "#d73027"}


def marks_renderer() -> QgsCategorizedSymbolRenderer:
    cats = []
    for value, colour in STYLE.items():
        symbol = QgsFillSymbol.createSimple(
            {"color": "0,0,0,0", "outline_color": colour, "outline_width": "0.9", "outline_style": "solid"}
        )
        cats.append(QgsRendererCategory(value, symbol, value))
    return QgsCategorizedSymbolRenderer("label", cats)


def update_marks_layer(marks: dict, geometries: dict, project: QgsProject | None = None) -> QgsVectorLayer | None:
    """Show ``marks`` ((store, tile_id) -> True/False) with ``geometries`` ((store, tile_id) -> (QgsGeometry,
    its CRS)); the layer is created on first use, emptied and refilled after; None when nothing can be drawn."""
    project = project or QgsProject.instance()
    layers = [lyr for lyr in project.mapLayers().values() if lyr.customProperty(MARKS_PROPERTY) is not None]
    drawable = [(key, mark) for key, mark in marks.items() if key in geometries]
    if not drawable and not layers:
        return None
    wgs84 = QgsCoordinateReferenceSystem("EPSG:4326")
    if layers:
        layer = layers[0]
        layer.dataProvider().truncate()
    else:
        layer = QgsVectorLayer("Polygon?crs=EPSG:4326", LAYER_NAME, "memory")
        fields = QgsFields()
        for name, kind in (("label", FIELD_STRING), ("store_id", FIELD_STRING), ("tile_id", FIELD_INT)):
            fields.append(make_field(name, kind))
        layer.dataProvider().addAttributes(fields.toList())
        layer.updateFields()
        layer.setRenderer(marks_renderer())
        layer.setCustomProperty(MARKS_PROPERTY, True)
        project.addMapLayer(layer, False)
        project.layerTreeRoot().insertLayer(0, layer)
    feats = []
    for (store, tile_id), mark in drawable:
        geom, crs = geometries[(store, tile_id)]
        f = QgsFeature(layer.fields())
        f.setGeometry(transform_geometry(geom, crs, wgs84, project))
        f["label"] = "yes" if mark else "no"
        f["store_id"] = store
        f["tile_id"] = int(tile_id)
        feats.append(f)
    layer.dataProvider().addFeatures(feats)
    layer.updateExtents()
    layer.triggerRepaint()
    return layer
