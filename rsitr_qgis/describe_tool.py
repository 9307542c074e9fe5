"""Describe tile: a map tool and a canvas context-menu entry -> /describe -> tile outline + popup."""

from __future__ import annotations

from qgis.core import (
    QgsCoordinateTransform,
    QgsMapLayer,
    QgsPointXY,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
)
from qgis.gui import QgsMapToolEmitPoint, QgsRubberBand
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QColor
from qgis.PyQt.QtWidgets import QDialog, QDialogButtonBox, QTextBrowser, QVBoxLayout

from .client import EngineClient, run_async
from .engine_requests import DescribeRequest
from .panel_logic import describe_html, raster_source_path
from .qt_compat import POLYGON_GEOMETRY
from .results_layer import crs_of, geometry_from_geojson


def pick_raster_layer(canvas, point: QgsPointXY, preferred: QgsMapLayer | None = None) -> QgsRasterLayer | None:
    """The layer to describe at ``point`` (canvas CRS): the active file raster if it covers the point, else
    the topmost visible file raster covering it."""
    dst = canvas.mapSettings().destinationCrs()
    candidates = [preferred] if preferred is not None else []
    candidates += list(canvas.layers())
    for layer in candidates:
        if not isinstance(layer, QgsRasterLayer) or raster_source_path(layer)[0] is None:
            continue
        try:
            tr = QgsCoordinateTransform(dst, layer.crs(), QgsProject.instance())
            p = tr.transform(point)
        except Exception:  # noqa: BLE001 - outside the CRS's area of use
            continue
        if layer.extent().contains(p):
            return layer
    return None


def point_in_layer_crs(canvas, point: QgsPointXY, layer: QgsRasterLayer) -> QgsPointXY:
    tr = QgsCoordinateTransform(canvas.mapSettings().destinationCrs(), layer.crs(), QgsProject.instance())
    return tr.transform(point)


class DescribePopup(QDialog):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("rsitr_describe_popup")
        self.setWindowTitle("RSITR: describe tile")
        self.setModal(False)
        lay = QVBoxLayout(self)
        self.browser = QTextBrowser()
        lay.addWidget(self.browser)
        box = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        box.rejected.connect(self.close)
        lay.addWidget(box)
        self.resize(420, 400)


class DescribeController:
    """Sends describe requests and shows the answer; shared by the map tool and the context menu."""

    def __init__(self, iface, manager):
        self.iface = iface
        self.manager = manager
        self.canvas = iface.mapCanvas()
        self.rubber = QgsRubberBand(self.canvas, POLYGON_GEOMETRY)
        self.rubber.setColor(QColor(255, 40, 40, 220))
        self.rubber.setFillColor(QColor(255, 40, 40, 40))
        self.rubber.setWidth(2)
        self.popup = None
        self.last: dict | None = None
        self.last_error: str = ""
        self.dock = None  # the search panel (found in the main window when not set)
        self._menu_hooked = hasattr(self.canvas, "contextMenuAboutToShow")
        if self._menu_hooked:
            self.canvas.contextMenuAboutToShow.connect(self._on_context_menu)

    def describe_at(self, point: QgsPointXY) -> bool:
        layer = pick_raster_layer(self.canvas, point, self.iface.activeLayer())
        if layer is None:
            self._error("RSITR describe: no indexed raster file under the clicked point")
            return False
        path, _why = raster_source_path(layer)
        p = point_in_layer_crs(self.canvas, point, layer)
        bank = str(self.manager.settings.get("caption_bank") or "").strip()
        restart = self.manager.add_root_for(path)
        if bank:
            restart = self.manager.add_root_for(bank) or restart
        if restart:
            self.manager.stop()

        def ready(conn, error):
            if error:
                self._error(error)
                return
            request = DescribeRequest.at_point(path, p.x(), p.y(), top=5, caption_bank=bank or None)
            run_async("RSITR describe", lambda: EngineClient(conn).describe(request), self._show)

        self.manager.ensure_async(ready)
        return True

    def _on_context_menu(self, menu, event) -> None:
        point = event.mapPoint()
        for name, text, slot in (
            ("rsitr_find_similar_here", "RSITR: find similar tiles here", self.find_similar_at),
            ("rsitr_mark_yes_here", "RSITR: mark tile here yes (relevant)", lambda p: self.mark_at(p, True)),
            ("rsitr_mark_no_here", "RSITR: mark tile here no (not relevant)", lambda p: self.mark_at(p, False)),
        ):
            action = menu.addAction(text)
            action.setObjectName(name)
            action.triggered.connect(lambda _checked=False, p=point, f=slot: f(p))

    def mark_at(self, point: QgsPointXY, value: bool) -> bool:
        """Mark the indexed tile under ``point`` (canvas CRS) yes/no for relevance feedback (found via /describe)."""
        layer = pick_raster_layer(self.canvas, point, self.iface.activeLayer())
        dock = self.search_dock()
        if layer is None or dock is None:
            self._error("RSITR mark: no raster file under the clicked point")
            return False
        path, _why = raster_source_path(layer)
        p = point_in_layer_crs(self.canvas, point, layer)

        def done(result, error):
            if not error and result.get("tile_id") is None:
                error = "the raster is not indexed: index it first"
            if error:
                self._error(f"RSITR mark: {error}")
                return
            dock.relevance.mark(result, value)

        def ready(conn, error):
            if error:
                self._error(error)
                return
            request = DescribeRequest.at_point(path, p.x(), p.y(), top=1)
            run_async("RSITR mark tile", lambda: EngineClient(conn).describe(request), done)

        if self.manager.add_root_for(path):
            self.manager.stop()
        self.manager.ensure_async(ready)
        return True

    def search_dock(self):
        if self.dock is None:
            from qgis.gui import QgsDockWidget

            self.dock = self.iface.mainWindow().findChild(QgsDockWidget, "rsitr_search_dock")
        return self.dock

    def find_similar_at(self, point: QgsPointXY) -> bool:
        """Rank the tiles of the raster under ``point`` (canvas CRS) by similarity to the tile there."""
        layer = pick_raster_layer(self.canvas, point, self.iface.activeLayer())
        dock = self.search_dock()
        if layer is None or dock is None:
            self._error("RSITR find similar: no raster file under the clicked point")
            return False
        path, _why = raster_source_path(layer)
        p = point_in_layer_crs(self.canvas, point, layer)
        dock.show()
        dock.layer_combo.setLayer(layer)
        dock.relevance.find_similar_at(path, p.x(), p.y())
        return True

    def _error(self, text: str) -> None:
        self.last_error = text
        self.iface.messageBar().pushWarning("RSITR", text)

    def _show(self, result, error) -> None:
        if error:
            self._error(f"{error} (index the layer first?)" if "index" in error.lower() else error)
            return
        self.last = result
        self.last_error = ""
        geom = geometry_from_geojson(result.get("geometry"))
        src = crs_of(result)
        if src.isValid():
            tr = QgsCoordinateTransform(src, self.canvas.mapSettings().destinationCrs(), QgsProject.instance())
            geom = geom.densifyByCount(8)
            geom.transform(tr)
        self.rubber.reset(POLYGON_GEOMETRY)
        self.rubber.setToGeometry(geom, None)
        if self.popup is None:
            self.popup = DescribePopup(self.iface.mainWindow())
        self.popup.browser.setHtml(describe_html(result))
        self.popup.show()
        self.popup.raise_()

    def clear(self) -> None:
        self.rubber.reset(POLYGON_GEOMETRY)

    def unload(self) -> None:
        if self._menu_hooked:
            try:
                self.canvas.contextMenuAboutToShow.disconnect(self._on_context_menu)
            except (TypeError, RuntimeError):
                pass
        self.clear()
        self.canvas.scene().removeItem(self.rubber)
        if self.popup is not None:
            self.popup.close()
            self.popup.deleteLater()
            self.popup = None


class DescribeMapTool(QgsMapToolEmitPoint):
    def __init__(self, canvas, controller: DescribeController):
        super().__init__(canvas)
        self.controller = controller
        self.setCursor(Qt.CursorShape.WhatsThisCursor)

    def canvasReleaseEvent(self, event):  # noqa: N802 - Qt override
        if event.button() == Qt.MouseButton.LeftButton:
            self.controller.describe_at(self.toMapCoordinates(event.pos()))

    def deactivate(self):
        super().deactivate()


def tile_rect(result: dict) -> QgsRectangle:
    return geometry_from_geojson(result.get("geometry")).boundingBox()
