"""Names that differ between QGIS 3.22 (Qt5) and QGIS 3.3x+/4 (Qt6), picked once here.

Field types: ``QgsField(name, QMetaType.Type)`` exists from QGIS 3.38 (the only form on QGIS 4);
older QGIS takes ``QVariant.Type``. Enums that QGIS moved into ``Qgis`` (3.30-3.36) are taken from their new
home when it exists, else from the 3.22 class. Everything else in the plugin uses fully scoped enums that
exist in both (checked by tests/plugin/test_qt6_ready.py, which allows the old names only on lines
marked ``# qgis-3.22-fallback`` in this module).
"""

from __future__ import annotations

from qgis.core import (
    Qgis,
    QgsField,
    QgsMapLayerProxyModel,
    QgsProcessing,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QMetaType

FIELD_TYPES_ARE_METATYPES = Qgis.versionInt() >= 33800  # QgsField(name, QMetaType.Type) from QGIS 3.38

FIELD_INT = "int"
FIELD_DOUBLE = "double"
FIELD_STRING = "string"

_METATYPES = {
    FIELD_INT: QMetaType.Type.Int,
    FIELD_DOUBLE: QMetaType.Type.Double,
    FIELD_STRING: QMetaType.Type.QString,
}


def _variant_type(kind: str):
    """``QVariant.Type`` for QGIS < 3.38, which only exists there (Qt5)."""
    from qgis.PyQt.QtCore import QVariant  # qgis-3.22-fallback

    types = {
        FIELD_INT: QVariant.Int,  # qgis-3.22-fallback
        FIELD_DOUBLE: QVariant.Double,  # qgis-3.22-fallback
        FIELD_STRING: QVariant.String,  # qgis-3.22-fallback
    }
    return types[kind]


def make_field(name: str, kind: str) -> QgsField:
    """A QgsField of ``kind`` ("int", "double", "string") with the type enum this QGIS accepts."""
    if FIELD_TYPES_ARE_METATYPES:
        return QgsField(name, _METATYPES[kind])
    return QgsField(name, _variant_type(kind))


if hasattr(Qgis, "ProcessingSourceType"):  # QGIS >= 3.36 and QGIS 4
    SOURCE_VECTOR_POLYGON = Qgis.ProcessingSourceType.VectorPolygon
    SOURCE_RASTER = Qgis.ProcessingSourceType.Raster
    FILE_FOLDER = Qgis.ProcessingFileParameterBehavior.Folder
    NUMBER_INTEGER = Qgis.ProcessingNumberParameterType.Integer
    NUMBER_DOUBLE = Qgis.ProcessingNumberParameterType.Double
else:
    SOURCE_VECTOR_POLYGON = QgsProcessing.SourceType.TypeVectorPolygon  # qgis-3.22-fallback
    SOURCE_RASTER = QgsProcessing.SourceType.TypeRaster  # qgis-3.22-fallback
    FILE_FOLDER = QgsProcessingParameterFile.Behavior.Folder  # qgis-3.22-fallback
    NUMBER_INTEGER = QgsProcessingParameterNumber.Type.Integer  # qgis-3.22-fallback
    NUMBER_DOUBLE = QgsProcessingParameterNumber.Type.Double  # qgis-3.22-fallback

if hasattr(Qgis, "LayerFilter"):  # QGIS >= 3.34 and QGIS 4
    RASTER_LAYER_FILTER = Qgis.LayerFilter.RasterLayer
else:
    RASTER_LAYER_FILTER = QgsMapLayerProxyModel.Filter.RasterLayer  # qgis-3.22-fallback

if hasattr(Qgis, "WkbType"):  # QGIS >= 3.30 and QGIS 4
    WKB_POLYGON = Qgis.WkbType.Polygon
    POLYGON_GEOMETRY = Qgis.GeometryType.Polygon
else:
    WKB_POLYGON = QgsWkbTypes.Type.Polygon  # qgis-3.22-fallback
    POLYGON_GEOMETRY = QgsWkbTypes.GeometryType.PolygonGeometry  # qgis-3.22-fallback
