"""Processing algorithm ``rsitr:scoremap``: a raster of the score of every tile of an indexed raster for a text
query and/or a labels GeoPackage (yes/no marks: the relevance-feedback classifier), styled with a colour ramp
when QGIS loads it."""

from __future__ import annotations

import os
import shutil

from qgis.core import (
    QgsProcessingException,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingOutputNumber,
    QgsProcessingParameterFile,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
)

from ..engine_process import get_manager
from ..scoremap_layer import style_scoremap
from ..similar_requests import LabelsLoadRequest, ScoreMapRequest, TileRef
from .algorithms import _EngineAlgorithm, tr

_STYLERS: list = []  # post-processors must outlive processAlgorithm (QGIS keeps only a pointer)


class _StyleScoreMap(QgsProcessingLayerPostProcessorInterface):
    def __init__(self, lo: float | None, hi: float | None):
        super().__init__()
        self.lo, self.hi = lo, hi

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802 - QGIS override
        style_scoremap(layer, self.lo, self.hi)


class ScoreMapAlgorithm(_EngineAlgorithm):
    def name(self) -> str:
        return "scoremap"

    def displayName(self) -> str:  # noqa: N802
        return tr("Score map")

    def shortHelpString(self) -> str:  # noqa: N802
        return tr(
            "Writes a single-band float32 raster with the score of every tile of an indexed raster (one pixel per "
            "tile, in the raster's CRS, nodata -9999 for skipped tiles): the cosine with a text query, or, with a "
            "labels GeoPackage of yes/no tiles (saved from the search panel), the probability of the relevance-"
            "feedback classifier with the query as its prior. The values equal the search scores."
        )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", tr("Indexed raster layer (file)")))
        self.addParameter(QgsProcessingParameterString("QUERY", tr("Text query"), defaultValue="", optional=True))
        self.addParameter(
            QgsProcessingParameterFile(
                "LABELS", tr("Labels GeoPackage (yes/no tiles)"), extension="gpkg", optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterString("MODEL", tr("Model (empty: engine default)"), defaultValue="", optional=True)
        )
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT", tr("Score map")))
        self.addOutput(QgsProcessingOutputNumber("MIN", tr("Lowest score")))
        self.addOutput(QgsProcessingOutputNumber("MAX", tr("Highest score")))

    def prepareAlgorithm(self, parameters, context, feedback):  # noqa: N802
        self._raster = self._raster_path(parameters, context)
        self._labels = self.parameterAsFile(parameters, "LABELS", context) or None
        if self._labels:
            if not os.path.isfile(self._labels):
                raise QgsProcessingException(f"labels file not found: {self._labels}")
            manager = get_manager()
            if manager.add_root_for(self._labels):
                manager.stop()
        self._connect(self._raster)
        return True

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        query = self.parameterAsString(parameters, "QUERY", context) or None
        model = self.parameterAsString(parameters, "MODEL", context) or None
        out = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        positives = negatives = ()
        if self._labels:
            loaded = self._call(self._client.send, LabelsLoadRequest(self._labels))
            positives = tuple(TileRef(r["store"], r["tile_id"]) for r in loaded["positives"])
            negatives = tuple(TileRef(r["store"], r["tile_id"]) for r in loaded["negatives"])
            query = query or loaded.get("query") or None
            feedback.pushInfo(f"labels: {len(positives)} yes, {len(negatives)} no, {loaded['missing']} not indexed")
        request = self._call(
            ScoreMapRequest, self._raster, query, positives, negatives, classifier=bool(self._labels), model=model
        )
        res = self._call(self._client.send, request)
        if not os.path.isfile(res["path"]):
            raise QgsProcessingException(f"the engine wrote the score map on its own machine: {res['path']}")
        if os.path.abspath(res["path"]) != os.path.abspath(out):
            shutil.copyfile(res["path"], out)
        feedback.pushInfo(
            f"score map ({res['kind']}): {res['width']} x {res['height']} px, {res['n_tiles']} tiles, "
            f"scores {res['min']}..{res['max']}"
        )
        if context.willLoadLayerOnCompletion(out):
            styler = _StyleScoreMap(res.get("min"), res.get("max"))
            _STYLERS.append(styler)
            context.layerToLoadOnCompletionDetails(out).setPostProcessor(styler)
        return {"OUTPUT": out, "MIN": res.get("min"), "MAX": res.get("max")}
