"""Score map GeoTIFF -> raster layer "RSITR score map: <query>" styled with a colour ramp (pseudocolour)."""

from __future__ import annotations

from qgis.core import (
    QgsColorRampShader,
    QgsGradientColorRamp,
    QgsProject,
    QgsRasterLayer,
    QgsRasterShader,
    QgsSingleBandPseudoColorRenderer,
    QgsStyle,
)
from qgis.PyQt.QtGui import QColor

SCOREMAP_PROPERTY = "rsitr/scoremap"
NAME_PREFIX = "RSITR score map: "
RAMP_NAME = "Viridis"
OPACITY = 0.7


def scoremap_name(query: str, limit: int = 70) -> str:
    q = " ".join((query or "").split())
    return NAME_PREFIX + (q if len(q) <= limit else q[: limit - 1] + "\u2026")


def colour_ramp():
    """QGIS's Viridis ramp (a plain blue-to-yellow gradient when the style has no Viridis)."""
    ramp = QgsStyle.defaultStyle().colorRamp(RAMP_NAME)
    return ramp if ramp is not None else QgsGradientColorRamp(QColor(68, 1, 84), QColor(253, 231, 37))


def style_scoremap(layer: QgsRasterLayer, lo: float | None = None, hi: float | None = None) -> None:
    """Single-band pseudocolour over [lo, hi] (the engine's min and max score; 0..1 when unknown), interpolated
    Viridis, semi-transparent so the imagery shows through."""
    provider = layer.dataProvider()
    lo = 0.0 if lo is None else float(lo)
    hi = 1.0 if hi is None else float(hi)
    if hi <= lo:
        hi = lo + 1e-6
    ramp_shader = QgsColorRampShader(lo, hi)
    ramp_shader.setColorRampType(QgsColorRampShader.Type.Interpolated)
    ramp_shader.setSourceColorRamp(colour_ramp())
    ramp_shader.classifyColorRamp(5, -1)
    shader = QgsRasterShader(lo, hi)
    shader.setRasterShaderFunction(ramp_shader)
    renderer = QgsSingleBandPseudoColorRenderer(provider, 1, shader)
    renderer.setClassificationMin(lo)
    renderer.setClassificationMax(hi)
    renderer.setOpacity(OPACITY)
    layer.setRenderer(renderer)
    layer.triggerRepaint()


def add_scoremap_layer(
    path: str, query: str, lo: float | None = None, hi: float | None = None, project: QgsProject | None = None
) -> QgsRasterLayer:
    """Add the score map above the other layers, replacing an earlier one of the same query."""
    project = project or QgsProject.instance()
    name = scoremap_name(query)
    layer = QgsRasterLayer(path, name, "gdal")
    if not layer.isValid():
        from .errors import EngineError

        raise EngineError(f"The score map could not be opened: {path}")
    style_scoremap(layer, lo, hi)
    layer.setCustomProperty(SCOREMAP_PROPERTY, query)
    old = [
        lyr.id()
        for lyr in project.mapLayers().values()
        if lyr.customProperty(SCOREMAP_PROPERTY) is not None and lyr.name() == name
    ]
    project.removeMapLayers(old)
    project.addMapLayer(layer, False)
    project.layerTreeRoot().insertLayer(0, layer)
    return layer
