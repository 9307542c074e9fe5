"""Processing algorithms. The engine connection is made in ``prepareAlgorithm`` (main thread: the local
engine child may be started there); requests then run in ``processAlgorithm`` with the blocking client.
Every engine problem becomes a QgsProcessingException with a one-line message."""

from __future__ import annotations

import json
import os

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsFeatureSink,
    QgsFields,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsRasterLayer,
)
from qgis.PyQt.QtCore import QCoreApplication

from ..client import EngineClient, EngineError
from ..engine_process import get_manager
from ..engine_requests import DescribeRequest, IndexRequest, SearchRequest
from ..index_job import poll_job
from ..panel_logic import job_progress, raster_source_path
from ..qt_compat import (
    FIELD_DOUBLE,
    FIELD_STRING,
    NUMBER_DOUBLE,
    NUMBER_INTEGER,
    SOURCE_VECTOR_POLYGON,
    WKB_POLYGON,
    make_field,
)
from ..results_layer import crs_of, result_fields, results_to_features
from ..setup.offer import processing_message

# Parameter names shared by the indexing algorithms (indexraster, indexcatalog)
MODEL = "MODEL"
TILE = "TILE"
STRIDE = "STRIDE"


def tr(text: str) -> str:
    return QCoreApplication.translate("rsitr", text)


def raster_file_problem(value) -> str:
    """One-line reason why a raster parameter given as a file path cannot be used, or "" (layers, ids: "")."""
    if not isinstance(value, str) or not value or "://" in value or value.startswith("/vsi"):
        return ""
    path = value.split("|", 1)[0]
    if not os.path.isabs(path) and not os.path.exists(path):
        return ""  # a layer id or name in the project
    if not os.path.exists(path):
        return f"raster file not found: {path}"
    if not os.path.isfile(path):
        return f"not a file: {path}"
    if os.path.getsize(path) == 0:
        return f"zero-byte file, not a raster: {path}"
    if not os.access(path, os.R_OK):
        return f"raster not readable (permissions): {path}"
    if not QgsRasterLayer(path, "check", "gdal").isValid():
        return f"not a readable raster (GDAL cannot open it): {path}"
    return ""


class _EngineAlgorithm(QgsProcessingAlgorithm):
    """Shared engine connection handling."""

    _group = "Text search"

    def group(self) -> str:
        return tr(self._group)

    def groupId(self) -> str:  # noqa: N802
        return "textsearch"

    def createInstance(self):  # noqa: N802
        return type(self)()

    def checkParameterValues(self, parameters, context):  # noqa: N802
        """Name the problem with a raster file (QGIS alone says 'not found' for any unloadable file)."""
        for name in ("INPUT", "RASTER"):
            why = raster_file_problem(parameters.get(name))
            if why:
                return False, f"{name}: {why}"
        return super().checkParameterValues(parameters, context)

    def _connect(self, raster: str | None = None) -> None:
        manager = get_manager()
        try:
            if raster and manager.add_root_for(raster):
                manager.stop()
            self._client = EngineClient(
                manager.ensure_running(), timeout=float(manager.settings.get("request_timeout_s"))
            )
        except EngineError as exc:
            raise QgsProcessingException(processing_message(str(exc))) from None  # missing: "run Set up engine"

    def _raster_path(self, parameters, context, name="INPUT") -> str:
        layer = self.parameterAsRasterLayer(parameters, name, context)
        path, why = raster_source_path(layer)
        if path is None:
            raise QgsProcessingException(why)
        return path

    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except EngineError as exc:
            raise QgsProcessingException(f"RSITR engine: {exc}") from None

    def _add_grid_parameters(self) -> None:
        """MODEL, TILE and STRIDE: the model and tile grid of an indexing request."""
        self.addParameter(
            QgsProcessingParameterString(MODEL, tr("Model (empty: engine default)"), defaultValue="", optional=True)
        )
        self.addParameter(
            QgsProcessingParameterNumber(TILE, tr("Tile size (px)"), NUMBER_INTEGER, 256, False, 16, 8192)
        )
        self.addParameter(QgsProcessingParameterNumber(STRIDE, tr("Stride (px)"), NUMBER_INTEGER, 256, False, 1, 8192))

    def _grid_values(self, parameters, context) -> dict:
        """The grid parameters as keyword arguments of ``IndexRequest`` / ``CatalogRequest``."""
        return {
            "tile": self.parameterAsInt(parameters, TILE, context),
            "stride": self.parameterAsInt(parameters, STRIDE, context),
            "model": self.parameterAsString(parameters, MODEL, context) or None,
        }


class IndexRasterAlgorithm(_EngineAlgorithm):
    def name(self) -> str:
        return "indexraster"

    def displayName(self) -> str:  # noqa: N802
        return tr("Index raster tiles")

    def shortHelpString(self) -> str:  # noqa: N802
        return tr(
            "Cuts the raster into tiles and stores one image embedding per tile in the engine's tile "
            "store, so that it can be searched by text. Already indexed rasters are reused."
        )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", tr("Raster layer (file)")))
        self._add_grid_parameters()
        self.addOutput(QgsProcessingOutputString("STORE_ID", tr("Tile store id")))
        self.addOutput(QgsProcessingOutputNumber("N_TILES", tr("Number of tiles")))

    def prepareAlgorithm(self, parameters, context, feedback):  # noqa: N802
        self._raster = self._raster_path(parameters, context)
        self._connect(self._raster)
        return True

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        request = self._call(IndexRequest, self._raster, **self._grid_values(parameters, context))
        job_id = self._call(self._client.index, request)
        feedback.pushInfo(f"index job {job_id} for {self._raster}")
        job = self._call(
            poll_job, self._client, job_id, feedback.isCanceled, lambda pct, _label: feedback.setProgress(pct)
        )
        _pct, _label, _finished, error = job_progress(job)
        if job.get("state") != "done":
            raise QgsProcessingException(error or f"indexing {job.get('state')}")
        feedback.pushInfo(f"store {job.get('store_id')}: {job.get('total')} tiles")
        return {"STORE_ID": job.get("store_id"), "N_TILES": job.get("total")}


class SearchTilesAlgorithm(_EngineAlgorithm):
    def name(self) -> str:
        return "searchtiles"

    def displayName(self) -> str:  # noqa: N802
        return tr("Search tiles by text")

    def shortHelpString(self) -> str:  # noqa: N802
        return tr(
            "Finds the k tiles of an indexed raster that best match a text query and writes them as "
            "polygons (fields rank, score, tile_id) in the raster's CRS. Index the raster first."
        )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", tr("Indexed raster layer (file)")))
        self.addParameter(QgsProcessingParameterString("QUERY", tr("Text query")))
        self.addParameter(
            QgsProcessingParameterNumber("K", tr("Number of tiles (k)"), NUMBER_INTEGER, 20, False, 1, 1000)
        )
        self.addParameter(
            QgsProcessingParameterNumber("THRESHOLD", tr("Minimum score"), NUMBER_DOUBLE, 0.0, True, -1.0, 1.0)
        )
        self.addParameter(
            QgsProcessingParameterString("MODEL", tr("Model (empty: engine default)"), defaultValue="", optional=True)
        )
        self.addParameter(QgsProcessingParameterFeatureSink("OUTPUT", tr("Matching tiles"), SOURCE_VECTOR_POLYGON))

    def prepareAlgorithm(self, parameters, context, feedback):  # noqa: N802
        self._raster = self._raster_path(parameters, context)
        layer = self.parameterAsRasterLayer(parameters, "INPUT", context)
        self._crs = QgsCoordinateReferenceSystem(layer.crs())
        self._connect(self._raster)
        return True

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        query = self.parameterAsString(parameters, "QUERY", context)
        k = self.parameterAsInt(parameters, "K", context)
        threshold = self.parameterAsDouble(parameters, "THRESHOLD", context)
        model = self.parameterAsString(parameters, "MODEL", context) or None
        try:
            request = SearchRequest(query, k=k, rasters=(self._raster,), threshold=threshold, model=model)
            response = self._client.search(request)
        except EngineError as exc:
            raise QgsProcessingException(f"RSITR search: {exc}") from None
        results = response.get("results") or []
        crs = crs_of(results[0]) if results else self._crs
        fields = result_fields()
        sink, dest_id = self.parameterAsSink(parameters, "OUTPUT", context, fields, WKB_POLYGON, crs)
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, "OUTPUT"))
        for f in results_to_features(results, crs, fields, context.project()):
            sink.addFeature(f, QgsFeatureSink.Flag.FastInsert)
        feedback.pushInfo(f"{len(results)} tiles for '{query}' (engine {response.get('took_ms')} ms)")
        return {"OUTPUT": dest_id}


DESCRIBE_FIELDS = (
    ("top_class", FIELD_STRING),  # "uncertain" when the calibrated top probability is too low to name a class
    ("top_class_prob", FIELD_DOUBLE),
    ("other_prob", FIELD_DOUBLE),  # probability of every class not listed in classes_json
    ("description", FIELD_STRING),
    ("description_score", FIELD_DOUBLE),
    ("classes_json", FIELD_STRING),
)


class DescribeTilesAlgorithm(_EngineAlgorithm):
    def name(self) -> str:
        return "describetiles"

    def displayName(self) -> str:  # noqa: N802
        return tr("Describe tiles")

    def shortHelpString(self) -> str:  # noqa: N802
        return tr(
            "Adds the top scene class (with probability) and the best matching description to each "
            "feature of a tile layer. Features with store_id and tile_id fields (e.g. the output of "
            "'Search tiles by text') are described directly; other features are described at their "
            "centroid on the given indexed raster."
        )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterFeatureSource("INPUT", tr("Tile layer"), [SOURCE_VECTOR_POLYGON]))
        self.addParameter(
            QgsProcessingParameterRasterLayer(
                "RASTER", tr("Indexed raster (for features without store_id/tile_id)"), optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                "TOP",
                tr("Classes and descriptions to keep"),
                NUMBER_INTEGER,
                5,
                False,
                1,
                50,
            )
        )
        self.addParameter(QgsProcessingParameterFeatureSink("OUTPUT", tr("Described tiles"), SOURCE_VECTOR_POLYGON))

    def prepareAlgorithm(self, parameters, context, feedback):  # noqa: N802
        self._raster = None
        self._raster_crs = None
        layer = self.parameterAsRasterLayer(parameters, "RASTER", context)
        if layer is not None:
            self._raster = self._raster_path(parameters, context, "RASTER")
            self._raster_crs = QgsCoordinateReferenceSystem(layer.crs())
        self._connect(self._raster)
        return True

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        from qgis.core import QgsCoordinateTransform

        source = self.parameterAsSource(parameters, "INPUT", context)
        if source is None:
            raise QgsProcessingException(self.invalidSourceError(parameters, "INPUT"))
        top = self.parameterAsInt(parameters, "TOP", context)
        fields = QgsFields(source.fields())
        for name, kind in DESCRIBE_FIELDS:
            if fields.indexOf(name) < 0:
                fields.append(make_field(name, kind))
        sink, dest_id = self.parameterAsSink(
            parameters, "OUTPUT", context, fields, source.wkbType(), source.sourceCrs()
        )
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, "OUTPUT"))
        names = source.fields().names()
        by_id = "store_id" in names and "tile_id" in names
        to_raster = None
        if self._raster_crs is not None:
            to_raster = QgsCoordinateTransform(source.sourceCrs(), self._raster_crs, context.transformContext())
        total = source.featureCount() or 1
        for i, feat in enumerate(source.getFeatures()):
            if feedback.isCanceled():
                break
            if by_id and feat["store_id"] not in (None, "") and feat["tile_id"] is not None:
                request = DescribeRequest.for_tile(str(feat["store_id"]), int(feat["tile_id"]), top=top)
            elif self._raster is not None:
                p = feat.geometry().centroid().asPoint()
                if to_raster is not None:
                    p = to_raster.transform(p)
                request = DescribeRequest.at_point(self._raster, p.x(), p.y(), top=top)
            else:
                raise QgsProcessingException("features have no store_id/tile_id fields: set the indexed raster")
            res = self._call(self._client.describe, request)
            out = QgsFeature(fields)
            out.setGeometry(feat.geometry())
            for name in names:
                out[name] = feat[name]
            classes = res.get("classes") or []
            descs = res.get("descriptions") or res.get("captions") or []
            out["top_class"] = "uncertain" if res.get("uncertain") else (classes[0]["name"] if classes else None)
            out["top_class_prob"] = float(classes[0]["probability"]) if classes else None
            out["other_prob"] = float(res["other"]) if res.get("other") is not None else None
            out["description"] = descs[0]["text"] if descs else None
            out["description_score"] = float(descs[0]["score"]) if descs else None
            out["classes_json"] = json.dumps(classes[:top])
            sink.addFeature(out, QgsFeatureSink.Flag.FastInsert)
            feedback.setProgress(100.0 * (i + 1) / total)
        return {"OUTPUT": dest_id}
