"""The search panel: engine status, model and layer pickers, indexing with progress, text search in the current
layer or a catalog (all its rasters, or those in the map extent), results."""

from __future__ import annotations

import time

from qgis.core import Qgis, QgsApplication, QgsProject
from qgis.gui import QgsDockWidget, QgsMapLayerComboBox
from qgis.PyQt.QtCore import Qt, QTimer, pyqtSignal
from qgis.PyQt.QtGui import QColor
from qgis.PyQt.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from .catalog_scope import (
    NO_CATALOG,
    SCOPE_CATALOG_EXTENT,
    SCOPE_LAYER,
    SCOPES,
    catalog_label,
    catalog_model_problem,
    extent_aoi,
)
from .client import EngineClient, one_line, run_async, run_background
from .engine_requests import DescribeRequest, IndexRequest, SearchRequest
from .errors import EngineError
from .index_job import IndexTask
from .panel_logic import format_result, raster_source_path, short_description, status_text
from .qt_compat import RASTER_LAYER_FILTER
from .relevance import RelevanceController
from .results_layer import create_results_layer, crs_of, extent_in_crs, geometry_from_geojson
from .setup.offer import offer_setup

DESCRIBE_TOP_N = 10
DESCRIBE_DELAY_MS = 500


class SearchDock(QgsDockWidget):
    """Dock widget ``rsitr_search_dock``."""

    searchFinished = pyqtSignal(object, str)  # results layer or None, error ("" on success)
    indexFinished = pyqtSignal(str, str)  # final job state, error
    catalogsLoaded = pyqtSignal(list, str)  # GET /catalogs entries, error ("" on success)

    def __init__(self, manager, iface=None, parent=None):
        super().__init__("RSITR text search", parent)
        self.setObjectName("rsitr_search_dock")
        self.manager = manager
        self.iface = iface
        self.settings = manager.settings
        self.results: list[dict] = []
        self.results_layer = None
        self.job_id: str | None = None
        self.index_task: IndexTask | None = None  # the running index job (listed in QGIS's task manager)
        self._index_starting = False  # Index pressed, waiting for the engine
        self._describe_gen = 0
        self.last_timing: dict = {}
        self.catalogs: list[dict] = []  # GET /catalogs, refreshed when the engine starts and on demand
        self._catalogs_url = ""  # the engine the catalog list was last asked of ("" after a failure)
        self.engine_models: list[dict] = []  # GET /models (the catalog model check)
        self._list_rasters = False  # the results list names each result's raster (catalog searches)
        self._build()
        manager.stateChanged.connect(self._on_engine_state)
        self._on_engine_state(manager.state, manager.detail)
        self.relevance = RelevanceController(self)  # find similar, yes/no marks, refine, score map (issue 20)

    # ------------------------------------------------------------------ UI
    def _build(self) -> None:
        w = QWidget(self)
        lay = QVBoxLayout(w)
        row = QHBoxLayout()
        self.status_label = QLabel("Engine: stopped")
        self.status_label.setWordWrap(True)
        self.engine_button = QPushButton("Start engine")
        self.engine_button.clicked.connect(self.start_engine)
        row.addWidget(self.status_label, 1)
        row.addWidget(self.engine_button)
        lay.addLayout(row)

        form = QFormLayout()
        self.model_combo = QComboBox()
        self.model_combo.addItem("(engine default)", "")
        self.model_combo.currentIndexChanged.connect(
            lambda _i: self.settings.set("model", self.model_combo.currentData() or "")
        )
        form.addRow("Model", self.model_combo)
        self.layer_combo = QgsMapLayerComboBox()
        self.layer_combo.setFilters(RASTER_LAYER_FILTER)
        self.layer_combo.layerChanged.connect(self._on_layer_changed)
        form.addRow("Raster", self.layer_combo)
        self.scope_combo = QComboBox()
        for scope, text in SCOPES:
            self.scope_combo.addItem(text, scope)
        self.scope_combo.currentIndexChanged.connect(lambda _i: self._on_scope_changed())
        form.addRow("Search in", self.scope_combo)
        row = QHBoxLayout()
        self.catalog_combo = QComboBox()
        self.catalog_combo.setToolTip("Catalogs of the engine (python -m engine index-many ... --catalog NAME)")
        self.catalog_refresh = QPushButton("Refresh")
        self.catalog_refresh.setToolTip("Ask the engine for its catalogs again")
        self.catalog_refresh.clicked.connect(self.refresh_catalogs)
        row.addWidget(self.catalog_combo, 1)
        row.addWidget(self.catalog_refresh)
        form.addRow("Catalog", row)
        lay.addLayout(form)
        self.layer_message = QLabel("")
        self.layer_message.setWordWrap(True)
        self.layer_message.setStyleSheet("color: #a33;")
        lay.addWidget(self.layer_message)

        row = QHBoxLayout()
        self.index_button = QPushButton("Index layer")
        self.index_button.clicked.connect(self.index_layer)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel_index)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        row.addWidget(self.index_button)
        row.addWidget(self.progress, 1)
        row.addWidget(self.cancel_button)
        lay.addLayout(row)

        self.query_edit = QLineEdit()
        self.query_edit.setPlaceholderText("a stadium next to a river")
        self.query_edit.setMaxLength(1000)
        self.query_edit.returnPressed.connect(self.search)
        lay.addWidget(self.query_edit)
        row = QHBoxLayout()
        self.k_spin = QSpinBox()
        self.k_spin.setRange(1, 1000)
        self.k_spin.setValue(int(self.settings.get("k")))
        self.k_spin.setPrefix("k = ")
        self.threshold_spin = QDoubleSpinBox()
        self.threshold_spin.setRange(0.0, 1.0)
        self.threshold_spin.setSingleStep(0.01)
        self.threshold_spin.setDecimals(3)
        self.threshold_spin.setPrefix("min score ")
        self.threshold_spin.setValue(float(self.settings.get("threshold")))
        self.search_button = QPushButton("Search")
        self.search_button.clicked.connect(self.search)
        row.addWidget(self.k_spin)
        row.addWidget(self.threshold_spin)
        row.addWidget(self.search_button)
        lay.addLayout(row)

        self.message_label = QLabel("")
        self.message_label.setWordWrap(True)
        lay.addWidget(self.message_label)
        self.results_list = QListWidget()
        self.results_list.itemClicked.connect(self._on_result_clicked)
        lay.addWidget(self.results_list, 1)
        self.setWidget(w)
        self._fill_catalogs([])
        self._on_scope_changed()
        self._on_layer_changed(self.layer_combo.currentLayer())

    # ------------------------------------------------------------------ messages
    def show_message(self, text: str, level=Qgis.MessageLevel.Info) -> None:
        text = one_line(text)
        colour = {
            Qgis.MessageLevel.Critical: "#b00020",
            Qgis.MessageLevel.Warning: "#a15c00",
            Qgis.MessageLevel.Success: "#1b5e20",
        }.get(level, "#333")
        self.message_label.setStyleSheet(f"color: {colour};")
        self.message_label.setText(text)
        if self.iface is not None and level in (Qgis.MessageLevel.Critical, Qgis.MessageLevel.Warning):
            if not offer_setup(self.iface, text):  # no working engine: a "Set up engine…" button instead
                self.iface.messageBar().pushMessage("RSITR", text, level=level, duration=8)

    def show_error(self, text: str) -> None:
        self.show_message(text, Qgis.MessageLevel.Critical)

    def _show_engine_state(self, state: str, detail: str) -> None:
        self.status_label.setText(status_text(state, self.manager.health, detail))
        self.engine_button.setText("Restart engine" if state == "running" else "Start engine")

    def _on_engine_state(self, state: str, detail: str) -> None:
        self._show_engine_state(state, detail)
        if state in ("crashed", "failed"):
            self.show_error(detail)
        if state == "running":  # a (re)started engine: its catalogs
            self.refresh_catalogs()

    def _on_layer_changed(self, layer) -> None:
        path, why = raster_source_path(layer)
        self.layer_message.setText("" if path else why)
        self.index_button.setEnabled(path is not None and self.index_task is None and not self._index_starting)

    # ------------------------------------------------------------------ catalogs
    def scope(self) -> str:
        """What a search searches: ``SCOPE_LAYER``, ``SCOPE_CATALOG`` or ``SCOPE_CATALOG_EXTENT``."""
        return self.scope_combo.currentData() or SCOPE_LAYER

    def _on_scope_changed(self) -> None:
        on_catalog = self.scope() != SCOPE_LAYER
        self.catalog_combo.setEnabled(on_catalog and bool(self.catalogs))
        self.catalog_refresh.setEnabled(on_catalog)

    def refresh_catalogs(self) -> None:
        """Ask the running engine for its catalogs (``GET /catalogs``); the picker keeps its choice."""
        conn = self.manager.connection()
        if conn is None:
            self.catalogsLoaded.emit([], "engine not running")
            return
        self._catalogs_url = conn.url  # asked once per engine: a search's engine check does not ask again

        def done(catalogs, error):
            try:
                if not error:
                    self._fill_catalogs(catalogs or [])
                else:
                    self._catalogs_url = ""  # ask again next time
                if error and self.scope() != SCOPE_LAYER:
                    self.show_error(f"Cannot list the engine's catalogs: {error}")
            except RuntimeError:  # the panel was closed meanwhile
                return
            self.catalogsLoaded.emit(list(catalogs or []), error or "")

        run_async("RSITR catalogs", lambda: EngineClient(conn, timeout=30).catalogs(), done)

    def _fill_catalogs(self, catalogs: list[dict]) -> None:
        current = self.catalog_combo.currentData() or self.settings.get("catalog")
        self.catalogs = list(catalogs)
        self.catalog_combo.blockSignals(True)
        self.catalog_combo.clear()
        for c in self.catalogs:
            self.catalog_combo.addItem(catalog_label(c), c.get("name"))
        if not self.catalogs:
            self.catalog_combo.addItem("(no catalogs)", "")
        self.catalog_combo.setCurrentIndex(max(0, self.catalog_combo.findData(current)))
        self.catalog_combo.blockSignals(False)
        self._on_scope_changed()

    def select_catalog(self, name: str) -> bool:
        """Make ``name`` the chosen catalog (False when the engine has no such catalog)."""
        i = self.catalog_combo.findData(name)
        if i >= 0 and name:
            self.catalog_combo.setCurrentIndex(i)
        return i >= 0 and bool(name)

    def _catalog_request(self) -> SearchRequest:
        """The search request of a catalog scope (the map extent as the AOI); EngineError when it cannot run."""
        name = self.catalog_combo.currentData() or ""
        catalog = next((c for c in self.catalogs if c.get("name") == name), None)
        if catalog is None:
            raise EngineError(NO_CATALOG)
        model = self.settings.get("model") or None
        problem = catalog_model_problem(catalog, model, self.engine_models)
        if problem:
            raise EngineError(problem)
        aoi = None
        if self.scope() == SCOPE_CATALOG_EXTENT:
            if self.iface is None:
                raise EngineError("No map canvas to take the extent from")
            settings = self.iface.mapCanvas().mapSettings()
            aoi = extent_aoi(settings.visibleExtent(), settings.destinationCrs(), QgsProject.instance())
        self.settings.set("catalog", name)
        return SearchRequest(
            self.query_edit.text(),
            k=self.k_spin.value(),
            threshold=self.threshold_spin.value(),
            model=model,
            aoi=aoi,
            catalog=name,
        )

    def current_raster(self) -> str | None:
        path, why = raster_source_path(self.layer_combo.currentLayer())
        if path is None:
            self.show_error(why)
        return path

    # ------------------------------------------------------------------ engine
    def with_engine(self, action, raster: str | None = None, on_error=None) -> None:
        """Run ``action(connection)`` once the engine answers (starting or restarting it), else show the error."""
        if raster and self.manager.add_root_for(raster):
            self.manager.stop()

        def ready(conn, error):
            if error:
                if on_error is not None:
                    on_error(error)
                else:
                    self._set_busy(False)
                    self.show_error(error)
                return
            self._show_engine_state(self.manager.state, self.manager.detail)
            if conn.url != self._catalogs_url:  # an engine not asked yet (remote mode, another URL)
                self.refresh_catalogs()
            if self.model_combo.count() <= 1:
                self._load_models(conn)
            action(conn)

        self.manager.ensure_async(ready)

    def start_engine(self) -> None:
        if self.manager.state == "running":
            self.manager.restart()
        self.with_engine(lambda conn: self.show_message("Engine ready", Qgis.MessageLevel.Success))

    def _load_models(self, conn) -> None:
        def done(models, error):
            if error or not models:
                return
            current = self.settings.get("model")
            self.model_combo.blockSignals(True)
            self.model_combo.clear()
            self.model_combo.addItem("(engine default)", "")
            self.engine_models = list(models)
            for m in models:
                self.model_combo.addItem(model_label(m), m.get("name"))
            idx = self.model_combo.findData(current)
            self.model_combo.setCurrentIndex(max(0, idx))
            self.model_combo.blockSignals(False)

        run_async("RSITR models", lambda: EngineClient(conn).models(), done)

    def _set_busy(self, busy: bool) -> None:
        self.search_button.setEnabled(not busy)

    # ------------------------------------------------------------------ indexing
    def index_layer(self) -> None:
        raster = self.current_raster()
        if raster is None or self.index_task is not None or self._index_starting:
            return
        try:
            request = IndexRequest(
                raster,
                tile=self.settings.get("tile"),
                stride=self.settings.get("stride"),
                model=self.settings.get("model") or None,
            )
        except EngineError as exc:
            self._index_done("failed", str(exc))
            return
        self._index_starting = True
        self.index_button.setEnabled(False)
        self.progress.setValue(0)
        self.progress.setFormat("%p%")
        self.show_message("Starting indexing...")

        def start(conn):
            task = IndexTask(conn, request, lambda state, error, job: self._task_done(task, state, error, job))
            task.jobStarted.connect(self._on_job_started)
            task.jobProgress.connect(self._on_job_progress)
            self._index_starting = False
            self.index_task = task
            self.cancel_button.setEnabled(True)
            QgsApplication.taskManager().addTask(task)

        self.with_engine(start, raster, on_error=lambda error: self._index_done("failed", error))

    def _on_job_started(self, job_id: str) -> None:
        self.job_id = job_id

    def _on_job_progress(self, pct: int, label: str) -> None:
        if self.index_task is not None:
            self.progress.setValue(pct)
            self.progress.setFormat(f"%p% {label}")

    def _task_done(self, task: IndexTask, state: str, error: str, job: dict) -> None:
        if task is self.index_task:  # not a task the panel already gave up on (cancelled)
            self._index_done(state, error, job)

    def cancel_index(self) -> None:
        """Cancel the running index job (the task sends DELETE /jobs/{id}); the panel is free at once."""
        task = self.index_task
        if task is None:
            return
        self.cancel_button.setEnabled(False)
        task.cancel()
        self._index_done("cancelled", "indexing cancelled")

    def stop_jobs(self) -> None:
        """Cancel a running index job and remove the panel's map tools (plugin unload)."""
        if self.index_task is not None:
            self.cancel_index()
        self.relevance.unload()

    def _index_done(self, state: str, error: str, job: dict | None = None) -> None:
        self._index_starting = False
        self.index_task = None
        self.job_id = None
        self.cancel_button.setEnabled(False)
        self._on_layer_changed(self.layer_combo.currentLayer())
        if state == "done":
            self.progress.setValue(100)
            n = (job or {}).get("total")
            self.show_message(f"Indexed {n} tiles" if n is not None else "Indexed", Qgis.MessageLevel.Success)
        elif state == "cancelled":
            self.show_message(error or "indexing cancelled", Qgis.MessageLevel.Warning)
        else:
            self.show_error(error or f"indexing {state}")
        self.indexFinished.emit(state, "" if state == "done" else (error or state))

    # ------------------------------------------------------------------ search
    def search(self) -> None:
        """Search the current layer, or the chosen catalog (all its rasters or those in the map extent)."""
        if self.scope() != SCOPE_LAYER and not self.catalogs:
            self._search_after_catalogs()
            return
        raster = None
        try:
            if self.scope() == SCOPE_LAYER:
                raster = self.current_raster()
                if raster is None:
                    self.searchFinished.emit(None, "no raster")
                    return
                request = SearchRequest(
                    self.query_edit.text(),
                    k=self.k_spin.value(),
                    rasters=(raster,),
                    threshold=self.threshold_spin.value(),
                    model=self.settings.get("model") or None,
                )
            else:
                request = self._catalog_request()
        except EngineError as exc:
            self.show_error(str(exc))
            self.searchFinished.emit(None, str(exc))
            return
        t0 = time.monotonic()
        self._describe_gen += 1  # stop describing the previous results: the engine serves this query first
        self._set_busy(True)
        self.show_message(f"Searching '{request.query}'...")

        def run(conn):
            t_engine = time.monotonic()

            def call():
                return EngineClient(conn).search(request)

            run_async("RSITR search", call, lambda res, err: self._search_done(request, res, err, t0, t_engine))

        def failed(error):
            self._search_done(request, None, error, t0, t0)

        self.with_engine(run, raster, on_error=failed)

    def _search_after_catalogs(self) -> None:
        """A catalog search before the engine's catalogs are known: start the engine, ask for them, then search."""

        def fail(error: str) -> None:
            self._set_busy(False)
            self.show_error(error)
            self.searchFinished.emit(None, error)

        def listed(catalogs, error) -> None:
            if error:
                fail(f"Cannot list the engine's catalogs: {error}")
                return
            self._fill_catalogs(catalogs or [])
            if not self.catalogs:
                fail(NO_CATALOG)
                return
            self.search()

        def ask(conn) -> None:
            run_async("RSITR catalogs", lambda: EngineClient(conn, timeout=30).catalogs(), listed)

        self._set_busy(True)
        self.with_engine(ask, None, on_error=fail)

    def show_results(self, request, response, error, t0: float) -> None:
        """Draw another ranking's answer (find similar, refine: relevance.py) exactly as a text search's;
        ``request.query`` names the result layer."""
        self._search_done(request, response, error, t0, t0)

    def _search_done(self, request: SearchRequest, response, error, t0: float, t_engine: float) -> None:
        self._set_busy(False)
        if error:
            msg = error
            on_layer = not getattr(request, "catalog", None)
            if on_layer and "index" in error.lower() and ("not" in error.lower() or "no " in error.lower()):
                msg = f"{error} (click 'Index layer' first)"
            self.show_error(msg)
            self.searchFinished.emit(None, msg)
            return
        t_resp = time.monotonic()
        results = (response or {}).get("results") or []
        self.results = results
        self.results_list.clear()
        if not results:
            self.results_layer = None
            self.show_message(f"No tile matched '{request.query}'", Qgis.MessageLevel.Warning)
            self.searchFinished.emit(None, "")
            return
        layer = create_results_layer(request.query, results)
        self.results_layer = layer
        self._list_rasters = len({r.get("raster") for r in results}) > 1 or bool(getattr(request, "catalog", None))
        for res in results:
            item = QListWidgetItem(format_result(res, with_raster=self._list_rasters))
            item.setData(Qt.ItemDataRole.UserRole, res)
            self.results_list.addItem(item)
        if self.iface is not None:
            self.iface.mapCanvas().refresh()
        t_done = time.monotonic()
        self.last_timing = {
            "total_s": t_done - t0,
            "engine_start_s": t_engine - t0,
            "request_s": t_resp - t_engine,
            "layer_s": t_done - t_resp,
            "engine_took_ms": (response or {}).get("took_ms"),
        }
        n_rasters = len({r.get("raster") for r in results})
        where = f" of {n_rasters} rasters" if n_rasters > 1 else ""
        self.show_message(
            f"{len(results)} tiles{where} for '{request.query}' in {t_done - t0:.2f} s", Qgis.MessageLevel.Success
        )
        self.searchFinished.emit(layer, "")
        # descriptions for the list come a moment later, so they never slow down drawing the tiles
        gen = self._describe_gen
        QTimer.singleShot(DESCRIBE_DELAY_MS, lambda: self._describe_later(gen, results[:DESCRIBE_TOP_N]))

    def _describe_later(self, gen: int, results: list[dict]) -> None:
        if gen != self._describe_gen:
            return  # a newer search replaced these results
        try:
            self._describe_results(results)
        except RuntimeError:  # the panel was closed meanwhile
            pass

    def _describe_results(self, results: list[dict]) -> None:
        conn = self.manager.connection()
        if conn is None:
            return
        wanted = [(r.get("store_id"), r.get("tile_id")) for r in results if r.get("store_id") is not None]
        self._describe_gen += 1
        gen = self._describe_gen

        def call():  # worker thread: stops as soon as a newer search superseded these results
            client = EngineClient(conn, timeout=30)
            out = {}
            for store, tile_id in wanted:
                if gen != self._describe_gen:
                    break
                try:
                    answer = client.describe(DescribeRequest.for_tile(store, tile_id, top=1))
                    out[(store, tile_id)] = short_description(answer)
                except EngineError:
                    break
            return out

        def done(texts, _error):
            if not texts or gen != self._describe_gen:
                return
            for i in range(self.results_list.count()):
                item = self.results_list.item(i)
                res = item.data(Qt.ItemDataRole.UserRole) or {}
                text = texts.get((res.get("store_id"), res.get("tile_id")))
                if text:
                    item.setText(format_result(res, text, self._list_rasters))

        run_background(conn, call, done)

    def _on_result_clicked(self, item) -> None:
        res = item.data(Qt.ItemDataRole.UserRole)
        if res:
            self.zoom_to_result(res)

    def zoom_to_result(self, res: dict) -> None:
        if self.iface is None:
            return
        canvas = self.iface.mapCanvas()
        geom = geometry_from_geojson(res.get("geometry"))
        src = crs_of(res)
        dst = canvas.mapSettings().destinationCrs()
        rect = extent_in_crs(geom, src, dst, QgsProject.instance())
        rect.scale(2.0)
        canvas.setExtent(rect)
        canvas.refresh()
        canvas.flashGeometries([geom], src, QColor(255, 230, 0, 255), QColor(255, 0, 0, 255), 3, 300)


def model_label(m: dict) -> str:
    """Picker text of one ``GET /models`` entry: name, version, size and test mR (from its model.json)."""
    parts = [str(m.get("name")), str(m.get("version") or "")]
    if m.get("bytes") is not None:
        parts.append(f"{m['bytes'] / 1e6:.0f} MB")
    mr = m.get("test_mr")
    parts.append(f"test mR {mr:.1f}" if isinstance(mr, int | float) else "test mR -")
    return ", ".join(p for p in parts if p) + (" (default)" if m.get("default") else "")
