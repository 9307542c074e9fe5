"""Map tool "draw an area": left clicks add vertices (rubber band), a right click (or double click) closes the
polygon and hands it to a callback in the canvas CRS; Escape cancels. Used for "find tiles similar to this area"."""

from __future__ import annotations

from qgis.core import QgsGeometry, QgsPointXY
from qgis.gui import QgsMapToolEmitPoint, QgsRubberBand
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QColor

from .qt_compat import POLYGON_GEOMETRY


class AreaMapTool(QgsMapToolEmitPoint):
    def __init__(self, canvas, on_polygon):
        super().__init__(canvas)
        self.on_polygon = on_polygon  # callback(QgsGeometry in the canvas CRS)
        self.points: list[QgsPointXY] = []
        self.rubber = QgsRubberBand(canvas, POLYGON_GEOMETRY)
        self.rubber.setColor(QColor(255, 200, 0, 230))
        self.rubber.setFillColor(QColor(255, 200, 0, 50))
        self.rubber.setWidth(2)
        self.setCursor(Qt.CursorShape.CrossCursor)

    def add_vertex(self, point: QgsPointXY) -> None:
        self.points.append(QgsPointXY(point))
        self.rubber.setToGeometry(QgsGeometry.fromPolygonXY([self.points]), None)

    def finish(self) -> bool:
        """Close the polygon (3 vertices at least) and call back; False when there is no area yet."""
        if len(self.points) < 3:
            return False
        geom = QgsGeometry.fromPolygonXY([self.points + [self.points[0]]])
        self.reset()
        self.on_polygon(geom)
        return True

    def reset(self) -> None:
        self.points = []
        self.rubber.reset(POLYGON_GEOMETRY)

    def canvasReleaseEvent(self, event):  # noqa: N802 - Qt override
        if event.button() == Qt.MouseButton.LeftButton:
            self.add_vertex(self.toMapCoordinates(event.pos()))
        elif event.button() == Qt.MouseButton.RightButton:
            self.finish()

    def canvasDoubleClickEvent(self, event):  # noqa: N802 - Qt override
        self.finish()

    def keyPressEvent(self, event):  # noqa: N802 - Qt override
        if event.key() == Qt.Key.Key_Escape:
            self.reset()

    def deactivate(self):
        self.reset()
        super().deactivate()

    def unload(self) -> None:
        self.reset()
        self.canvas().scene().removeItem(self.rubber)
