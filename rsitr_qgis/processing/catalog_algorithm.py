"""Processing algorithm ``rsitr:indexcatalog``: index several rasters (layers, a folder, a list file or a STAC
ItemCollection JSON) into one searchable catalog (``POST /catalogs``, a job polled like ``rsitr:indexraster``).

When it ends, an open search panel is asked to refresh its catalog list (found by its object name, so this module
imports nothing of the dock); without a panel the catalog shows on the panel's next *Refresh* or engine start.
"""

from __future__ import annotations

import os

from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterFile,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterString,
)
from qgis.PyQt.QtWidgets import QApplication

from ..catalog_sources import LIST_SUFFIXES, STAC_SUFFIXES, source_paths
from ..engine_process import get_manager
from ..engine_requests import CatalogRequest
from ..errors import EngineError, one_line
from ..index_job import poll_job
from ..panel_logic import job_progress, raster_source_path
from ..qt_compat import FILE_FOLDER, SOURCE_RASTER
from .algorithms import _EngineAlgorithm, raster_file_problem, tr

INPUT = "INPUT"
FOLDER = "FOLDER"
LIST_FILE = "LIST_FILE"
NAME = "NAME"
PANEL_OBJECT_NAME = "rsitr_search_dock"  # SearchDock's object name (rsitr_qgis/dock.py)


def refresh_open_panels() -> int:
    """Ask every open search panel to list the engine's catalogs again; returns how many were asked."""
    panels = [w for w in QApplication.allWidgets() if w.objectName() == PANEL_OBJECT_NAME]
    for panel in panels:
        if hasattr(panel, "refresh_catalogs"):
            panel.refresh_catalogs()
    return len(panels)


class IndexCatalogAlgorithm(_EngineAlgorithm):
    def name(self) -> str:
        return "indexcatalog"

    def displayName(self) -> str:  # noqa: N802
        return tr("Index rasters into a catalog")

    def shortHelpString(self) -> str:  # noqa: N802
        suffixes = " ".join(LIST_SUFFIXES + STAC_SUFFIXES)
        return tr(
            "Indexes several rasters into one catalog that the search panel searches as a whole ('Search in: "
            "Catalog'): tiles of all its rasters ranked together, with one index. Sources: raster layers (files), "
            f"and/or a folder (its rasters), a list file or a STAC ItemCollection JSON ({suffixes}; local paths or "
            "http(s) COGs). Tile size and stride are in source pixels, as for 'Index raster tiles'. Stored in the "
            "engine's cache (one embedding per tile); rasters indexed before with the same grid and model are "
            "reused, and an existing catalog of that name gets the new member list. Name: 1-64 letters, digits, "
            "'_', '.' or '-'. Outputs the catalog's name, number of rasters and number of tiles."
        )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(
            QgsProcessingParameterMultipleLayers(INPUT, tr("Raster layers (files)"), SOURCE_RASTER, optional=True)
        )
        self.addParameter(QgsProcessingParameterFile(FOLDER, tr("Folder of rasters"), FILE_FOLDER, optional=True))
        self.addParameter(
            QgsProcessingParameterFile(
                LIST_FILE,
                tr("List file or STAC ItemCollection JSON"),
                fileFilter=tr("Raster lists (*.txt *.lst *.list);;STAC JSON (*.json *.geojson)"),
                optional=True,
            )
        )
        self.addParameter(QgsProcessingParameterString(NAME, tr("Catalog name")))
        self._add_grid_parameters()
        self.addOutput(QgsProcessingOutputString("CATALOG", tr("Catalog name")))
        self.addOutput(QgsProcessingOutputNumber("N_RASTERS", tr("Number of rasters")))
        self.addOutput(QgsProcessingOutputNumber("N_TILES", tr("Number of tiles")))

    def checkParameterValues(self, parameters, context):  # noqa: N802
        """Name the problem with each raster given as a file path (QGIS alone drops or rejects it vaguely)."""
        values = parameters.get(INPUT)
        for value in values if isinstance(values, (list, tuple)) else [values]:
            why = raster_file_problem(value)
            if why:
                return False, f"{INPUT}: {why}"
        return super().checkParameterValues(parameters, context)

    def _raster_paths(self, parameters, context) -> list[str]:
        values = parameters.get(INPUT)
        wanted = len(values) if isinstance(values, (list, tuple)) else (1 if values else 0)
        layers = self.parameterAsLayerList(parameters, INPUT, context)
        if len(layers) < wanted:
            raise QgsProcessingException(f"{wanted - len(layers)} of the {wanted} raster layers cannot be loaded")
        paths = []
        for layer in layers:
            path, why = raster_source_path(layer)
            if path is None:
                raise QgsProcessingException(why)
            paths.append(path)
        return paths

    def prepareAlgorithm(self, parameters, context, feedback):  # noqa: N802
        sources = self._raster_paths(parameters, context)
        sources += [p for p in (self.parameterAsFile(parameters, k, context) for k in (FOLDER, LIST_FILE)) if p]
        try:
            self._request = CatalogRequest(
                self.parameterAsString(parameters, NAME, context),
                tuple(sources),
                **self._grid_values(parameters, context),
            )
        except EngineError as exc:
            raise QgsProcessingException(str(exc)) from None
        manager = get_manager()
        if not manager.remote():  # the local child must be allowed to read every source (a remote one: its paths)
            try:
                paths = [p for s in self._request.sources for p in source_paths(s)]
            except EngineError as exc:
                raise QgsProcessingException(str(exc)) from None
            # a folder itself becomes a root (add_root_for allows the folder of the path it is given)
            restart = [manager.add_root_for(os.path.join(p, "_") if os.path.isdir(p) else p) for p in paths]
            if any(restart):
                manager.stop()
        self._connect()
        return True

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        request = self._request
        job_id = self._call(self._client.send, request)["job_id"]
        feedback.pushInfo(f"catalog job {job_id}: {len(request.sources)} sources into catalog '{request.name}'")
        job = self._call(
            poll_job, self._client, job_id, feedback.isCanceled, lambda pct, _label: feedback.setProgress(pct)
        )
        if job.get("state") == "cancelled" and self._call(self._client.job, job_id).get("state") == "done":
            job = {"state": "done"}  # the job ended before the cancel reached it: the catalog is written
            feedback.pushInfo("cancelled after the engine had finished: the catalog is written")
        if job.get("state") != "done":
            _pct, _label, _finished, error = job_progress(job)
            if job.get("state") == "cancelled":
                error = f"catalog '{request.name}' not written: indexing cancelled"
            raise QgsProcessingException(one_line(error or f"catalog indexing {job.get('state')}"))
        entry = next((c for c in self._call(self._client.catalogs) if c.get("name") == request.name), None)
        if entry is None:
            raise QgsProcessingException(f"the engine did not list catalog '{request.name}' after indexing it")
        feedback.pushInfo(
            f"catalog '{request.name}': {entry.get('n_rasters')} rasters, {entry.get('n_tiles')} tiles "
            f"(model {entry.get('model')}, index {entry.get('index')})"
        )
        self._results = {"CATALOG": request.name, "N_RASTERS": entry.get("n_rasters"), "N_TILES": entry.get("n_tiles")}
        return self._results

    def postProcessAlgorithm(self, context, feedback):  # noqa: N802 - main thread
        if refresh_open_panels():
            feedback.pushInfo("search panel: catalog list refreshed")
        return self._results
