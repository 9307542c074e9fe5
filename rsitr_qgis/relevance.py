"""Find more like this in the search panel: "Find similar tiles" (results list context menu, canvas right-click),
yes/no marks on results (list and map), "Refine" (one relevance-feedback round), "Score map" (a colour-ramped
raster of every tile's score), and the marks saved/loaded as a labels GeoPackage.

Every request runs in a QgsTask; rankings are drawn by the panel exactly like a text search (same result layer,
list, style and descriptions).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass

from qgis.core import Qgis
from qgis.PyQt.QtCore import QObject, Qt, pyqtSignal
from qgis.PyQt.QtGui import QBrush, QColor, QIcon, QPainter, QPixmap
from qgis.PyQt.QtWidgets import QAbstractItemView, QFileDialog, QHBoxLayout, QLabel, QMenu, QPushButton

from .area_tool import AreaMapTool
from .client import EngineClient, run_async
from .errors import EngineError
from .marks_layer import update_marks_layer
from .results_layer import crs_of, geometry_from_geojson
from .scoremap_layer import add_scoremap_layer
from .similar_requests import (
    FeedbackRequest,
    LabelsLoadRequest,
    LabelsSaveRequest,
    LikeRequest,
    PointRef,
    PolygonRef,
    ScoreMapRequest,
    TileRef,
)

MARK_ROLE = Qt.ItemDataRole.UserRole + 1  # "yes" / "no" on a results list item
MARK_NAME = {True: "yes", False: "no"}
MARK_SYMBOL = {True: "\u2713", False: "\u2717"}
MARK_COLOUR = {True: QColor(26, 152, 80), False: QColor(215, 48, 39)}
_ICONS: dict = {}


def mark_icon(value: bool) -> QIcon:
    """A small green check / red cross (kept when the panel rewrites an item's text with its description)."""
    if value not in _ICONS:
        pix = QPixmap(16, 16)
        pix.fill(MARK_COLOUR[value])
        painter = QPainter(pix)
        painter.setPen(QColor(255, 255, 255))
        painter.drawText(pix.rect(), Qt.AlignmentFlag.AlignCenter, MARK_SYMBOL[value])
        painter.end()
        _ICONS[value] = QIcon(pix)
    return _ICONS[value]


@dataclass(frozen=True)
class Ranking:
    """What the panel shows for a ranking that is not a text search (its ``query`` names the result layer)."""

    query: str


class RelevanceController(QObject):
    """Adds the find-similar / feedback / score-map controls to a ``SearchDock`` and runs them."""

    scoreMapFinished = pyqtSignal(object, str)  # raster layer or None, error ("" on success)
    labelsFinished = pyqtSignal(str, str)  # "saved"/"loaded", error

    def __init__(self, dock):
        super().__init__(dock)
        self.dock = dock
        self.marks: dict[tuple[str, int], bool] = {}
        self.geometries: dict[tuple[str, int], tuple] = {}  # (QgsGeometry, QgsCoordinateReferenceSystem)
        self.last_like: LikeRequest | None = None  # the ranking shown, when it was a find-similar
        self.last_kind = "text"  # "text", "like" or "feedback": what the score map scores
        self.labels_query: str | None = None  # the query of a loaded labels file
        self.last_scoremap: dict | None = None
        self._own_ranking = False
        self._build()
        dock.searchFinished.connect(self._on_results)

    # ------------------------------------------------------------------ UI
    def _build(self) -> None:
        lst = self.dock.results_list
        lst.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        lst.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        lst.customContextMenuRequested.connect(self._list_menu)
        row = QHBoxLayout()
        self.refine_button = QPushButton("Refine")
        self.refine_button.setToolTip("Re-rank the whole raster by a classifier trained on the yes/no marks")
        self.refine_button.clicked.connect(lambda: self.refine())
        self.scoremap_button = QPushButton("Score map")
        self.scoremap_button.setToolTip("Add a raster of every tile's score for the current query or marks")
        self.scoremap_button.clicked.connect(lambda: self.score_map())
        self.save_button = QPushButton("Save marks\u2026")
        self.save_button.clicked.connect(lambda: self.save_labels())
        self.load_button = QPushButton("Load marks\u2026")
        self.load_button.clicked.connect(lambda: self.load_labels())
        for b in (self.refine_button, self.scoremap_button, self.save_button, self.load_button):
            row.addWidget(b)
        self.dock.widget().layout().addLayout(row)
        row = QHBoxLayout()
        self.marks_label = QLabel("")
        self.marks_label.setWordWrap(True)
        self.area_button = QPushButton("Similar to area\u2026")
        self.area_button.setCheckable(True)
        self.area_button.setToolTip(
            "Draw a polygon on the map (click the corners, right-click to close it): find tiles like those it covers"
        )
        self.area_button.toggled.connect(self._toggle_area_tool)
        self.area_tool: AreaMapTool | None = None
        row.addWidget(self.marks_label, 1)
        row.addWidget(self.area_button)
        self.dock.widget().layout().addLayout(row)
        self._update_counts()

    def _list_menu(self, pos) -> None:
        menu = self.build_list_menu()
        if menu is not None:
            menu.exec(self.dock.results_list.viewport().mapToGlobal(pos))

    def build_list_menu(self) -> QMenu | None:
        """The results list's context menu for the selected results (None when nothing is selected)."""
        if not self.selected_results():
            return None
        menu = QMenu(self.dock.results_list)
        for name, text, slot in (
            ("rsitr_find_similar", "Find similar tiles", self.find_similar_selected),
            ("rsitr_mark_yes", "Mark yes (relevant)", lambda: self.mark_selected(True)),
            ("rsitr_mark_no", "Mark no (not relevant)", lambda: self.mark_selected(False)),
            ("rsitr_mark_clear", "Clear mark", lambda: self.mark_selected(None)),
        ):
            action = menu.addAction(text)
            action.setObjectName(name)
            action.triggered.connect(lambda _checked=False, f=slot: f())
        return menu

    def selected_results(self) -> list[dict]:
        items = self.dock.results_list.selectedItems()
        if not items and self.dock.results_list.currentItem() is not None:
            items = [self.dock.results_list.currentItem()]
        return [it.data(Qt.ItemDataRole.UserRole) for it in items if it.data(Qt.ItemDataRole.UserRole)]

    # ------------------------------------------------------------------ marks
    def mark(self, result: dict, value: bool | None) -> None:
        """Mark one result yes (True), no (False) or clear it (None)."""
        key = (str(result["store_id"]), int(result["tile_id"]))
        if value is None:
            self.marks.pop(key, None)
        else:
            self.marks[key] = bool(value)
            self.geometries[key] = (geometry_from_geojson(result.get("geometry")), crs_of(result))
        self._refresh_marks()

    def mark_selected(self, value: bool | None) -> None:
        for res in self.selected_results():
            self.mark(res, value)

    def clear_marks(self) -> None:
        self.marks.clear()
        self._refresh_marks()

    def refs(self, value: bool) -> tuple[TileRef, ...]:
        return tuple(TileRef(s, t) for (s, t), v in self.marks.items() if v is value)

    def _refresh_marks(self) -> None:
        self._decorate_list()
        self._update_counts()
        update_marks_layer(self.marks, self.geometries)

    def _update_counts(self) -> None:
        yes = sum(1 for v in self.marks.values() if v)
        no = len(self.marks) - yes
        hint = "" if self.marks else " (right-click results to mark them, then Refine)"
        self.marks_label.setText(f"Marks: {yes} yes, {no} no{hint}")

    def _decorate_list(self) -> None:
        lst = self.dock.results_list
        for i in range(lst.count()):
            item = lst.item(i)
            res = item.data(Qt.ItemDataRole.UserRole) or {}
            mark = self.marks.get((str(res.get("store_id")), int(res.get("tile_id", -1))))
            item.setData(MARK_ROLE, MARK_NAME.get(mark))
            item.setIcon(mark_icon(mark) if mark is not None else QIcon())
            tint = QColor(MARK_COLOUR[mark]) if mark is not None else None
            if tint is not None:
                tint.setAlpha(60)
            item.setBackground(QBrush(tint) if tint is not None else QBrush())

    def _on_results(self, _layer, error: str) -> None:
        if not self._own_ranking and not error:  # a text search from the panel
            self.last_kind, self.last_like = "text", None
        self._own_ranking = False
        for res in self.dock.results:  # keep outlines of marked tiles that show up again
            key = (str(res.get("store_id")), int(res.get("tile_id", -1)))
            if key in self.marks and key not in self.geometries:
                self.geometries[key] = (geometry_from_geojson(res.get("geometry")), crs_of(res))
        self._decorate_list()
        self._update_counts()

    # ------------------------------------------------------------------ rankings
    def _rank(self, request, kind: str) -> None:
        raster = self.dock.current_raster()
        if raster is None:
            self.dock.searchFinished.emit(None, "no raster")
            return
        t0 = time.monotonic()
        self.dock.show_message(f"Ranking '{request.label()}'...")
        shown = Ranking(request.label())

        def done(res, err):
            if not err:
                self.last_kind = kind
                self.last_like = request if kind == "like" else None
            self._own_ranking = True
            self.dock.show_results(shown, res, err, t0)

        def run(conn):
            run_async(f"RSITR {kind}", lambda: EngineClient(conn).send(request), done)

        self.dock.with_engine(run, raster, on_error=lambda error: done(None, error))

    def _checked(self, build):
        """``build()`` a request; bad input is shown in the panel (one line) and gives None."""
        try:
            return build()
        except EngineError as exc:
            self.dock.show_error(str(exc))
            self.dock.searchFinished.emit(None, str(exc))
            return None

    def _where(self) -> dict:
        raster = self.dock.current_raster()
        model = self.dock.settings.get("model") or None
        return {"k": self.dock.k_spin.value(), "rasters": (raster,) if raster else (), "model": model}

    def find_similar(self, examples, mode: str = "mean") -> None:
        """Rank the current raster's tiles by similarity to ``examples`` (TileRef/PointRef)."""
        request = self._checked(lambda: LikeRequest(tuple(examples), mode=mode, **self._where()))
        if request is not None:
            self._rank(request, "like")

    def find_similar_selected(self) -> None:
        self.find_similar([TileRef(str(r["store_id"]), int(r["tile_id"])) for r in self.selected_results()])

    def find_similar_at(self, raster: str, x: float, y: float, crs: str | None = None) -> None:
        """The tile under a point of ``raster`` (in ``crs``, default the raster CRS) as the example."""
        self.find_similar([PointRef(raster, x, y, crs)])

    def _toggle_area_tool(self, on: bool) -> None:
        canvas = self.dock.iface.mapCanvas() if self.dock.iface is not None else None
        if canvas is None:
            return
        if on:
            if self.area_tool is None:
                self.area_tool = AreaMapTool(canvas, self.find_similar_area)
            canvas.setMapTool(self.area_tool)
        elif self.area_tool is not None and canvas.mapTool() is self.area_tool:
            canvas.unsetMapTool(self.area_tool)

    def find_similar_area(self, geometry, crs=None) -> None:
        """Rank the panel raster's tiles by similarity to the tiles ``geometry`` covers (default: canvas CRS)."""
        if crs is None and self.dock.iface is not None:
            crs = self.dock.iface.mapCanvas().mapSettings().destinationCrs()
        self.area_button.setChecked(False)
        raster = self.dock.current_raster()
        if raster is None:
            return
        crs_text = (crs.authid() or crs.toWkt()) if crs is not None and crs.isValid() else None
        self.find_similar([PolygonRef(raster, json.loads(geometry.asJson()), crs_text)])

    def unload(self) -> None:
        """Remove the area tool from the canvas (plugin unload)."""
        if self.area_tool is not None:
            self.area_button.setChecked(False)
            self.area_tool.unload()
            self.area_tool = None

    def query_text(self) -> str | None:
        return self.dock.query_edit.text().strip() or self.labels_query or None

    def refine(self) -> None:
        """One relevance-feedback round over the current raster with the marks and the text query as prior."""
        request = self._checked(
            lambda: FeedbackRequest(self.query_text(), self.refs(True), self.refs(False), **self._where())
        )
        if request is not None:
            self._rank(request, "feedback")

    # ------------------------------------------------------------------ score map
    def scoremap_request(self, raster: str) -> ScoreMapRequest:
        """What the score map scores: the marks (classifier) after a refine, the examples after a find-similar,
        else the text query."""
        model = self.dock.settings.get("model") or None
        if self.marks and self.last_kind == "feedback":
            return ScoreMapRequest(
                raster, self.query_text(), self.refs(True), self.refs(False), classifier=True, model=model
            )
        if self.last_kind == "like" and self.last_like is not None:
            return ScoreMapRequest(raster, None, self.last_like.examples, mode=self.last_like.mode, model=model)
        return ScoreMapRequest(raster, self.dock.query_edit.text(), model=model)

    def score_map(self) -> None:
        raster = self.dock.current_raster()
        if raster is None:
            self.scoreMapFinished.emit(None, "no raster")
            return
        try:
            request = self.scoremap_request(raster)
        except EngineError as exc:
            self.dock.show_error(str(exc))
            self.scoreMapFinished.emit(None, str(exc))
            return
        self.dock.show_message(f"Score map for '{request.label()}'...")

        def done(res, err):
            layer = None
            if not err:
                try:
                    if not os.path.isfile(res["path"]):
                        raise EngineError(f"The engine wrote the score map on its own machine: {res['path']}")
                    layer = add_scoremap_layer(res["path"], request.label(), res.get("min"), res.get("max"))
                except EngineError as exc:
                    err = str(exc)
            if err:
                self.dock.show_error(err)
            else:
                self.last_scoremap = res
                self.dock.show_message(
                    f"Score map of {res['n_tiles']} tiles ({res['min']:.3f}..{res['max']:.3f})",
                    Qgis.MessageLevel.Success,
                )
            self.scoreMapFinished.emit(layer, err or "")

        def run(conn):
            run_async("RSITR score map", lambda: EngineClient(conn).send(request), done)

        self.dock.with_engine(run, raster, on_error=lambda error: done(None, error))

    # ------------------------------------------------------------------ labels files
    def save_labels(self, path: str | None = None) -> None:
        if path is None:
            path, _filter = QFileDialog.getSaveFileName(self.dock, "Save marks", "", "GeoPackage (*.gpkg)")
            if not path:
                return
            path = path if path.lower().endswith(".gpkg") else path + ".gpkg"
        try:
            request = LabelsSaveRequest(path, self.refs(True), self.refs(False), self.query_text())
        except EngineError as exc:
            self._labels_done("saved", str(exc))
            return

        def done(res, err):
            if not err:
                self.dock.show_message(
                    f"Saved {res['n_positive']} yes / {res['n_negative']} no marks to {res['path']}",
                    Qgis.MessageLevel.Success,
                )
            self._labels_done("saved", err)

        def run(conn):
            run_async("RSITR save marks", lambda: EngineClient(conn).send(request), done)

        self.dock.with_engine(run, path, on_error=lambda error: done(None, error))

    def load_labels(self, path: str | None = None) -> None:
        if path is None:
            path, _filter = QFileDialog.getOpenFileName(self.dock, "Load marks", "", "GeoPackage (*.gpkg)")
            if not path:
                return
        request = LabelsLoadRequest(path)

        def done(res, err):
            if not err:
                self.marks = {(r["store"], int(r["tile_id"])): True for r in res["positives"]}
                self.marks.update({(r["store"], int(r["tile_id"])): False for r in res["negatives"]})
                self.labels_query = res.get("query") or None
                if self.labels_query and not self.dock.query_edit.text().strip():
                    self.dock.query_edit.setText(self.labels_query)
                self._label_geometries(path)
                self._refresh_marks()
                missing = f", {res['missing']} not indexed here" if res.get("missing") else ""
                self.dock.show_message(
                    f"Loaded {len(res['positives'])} yes / {len(res['negatives'])} no marks{missing}",
                    Qgis.MessageLevel.Success,
                )
            self._labels_done("loaded", err)

        def run(conn):
            run_async("RSITR load marks", lambda: EngineClient(conn).send(request), done)

        self.dock.with_engine(run, path, on_error=lambda error: done(None, error))

    def _label_geometries(self, path: str) -> None:
        """Outlines of loaded marks from the file itself (EPSG:4326), for tiles whose ids did not change."""
        from qgis.core import QgsVectorLayer

        layer = QgsVectorLayer(f"{path}|layername=labels", "labels", "ogr")
        if not layer.isValid():
            return
        for f in layer.getFeatures():
            key = (str(f["store_id"]), int(f["tile_id"]))
            if key in self.marks:
                self.geometries.setdefault(key, (f.geometry(), layer.crs()))

    def _labels_done(self, what: str, error: str | None) -> None:
        if error:
            self.dock.show_error(error)
        self.labelsFinished.emit(what, error or "")
