"""Processing provider ``rsitr``: index (a raster or a catalog), search and describe through the engine."""

from __future__ import annotations

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from ..settings import resource_path
from .algorithms import DescribeTilesAlgorithm, IndexRasterAlgorithm, SearchTilesAlgorithm
from .catalog_algorithm import IndexCatalogAlgorithm
from .scoremap_algorithm import ScoreMapAlgorithm


class RsitrProvider(QgsProcessingProvider):
    def id(self) -> str:
        return "rsitr"

    def name(self) -> str:
        return "RSITR text search"

    def longName(self) -> str:  # noqa: N802
        return "RSITR: text search over imagery tiles"

    def icon(self) -> QIcon:
        return QIcon(resource_path("icons", "rsitr.svg"))

    def unload(self) -> None:
        """Called when the provider is removed, also when qgis_process exits: end the engine child.

        Only signals the child by pid: at application exit Qt/QGIS objects may already be gone."""
        from ..engine_process import kill_children

        kill_children()

    def loadAlgorithms(self) -> None:  # noqa: N802
        algorithms = (
            IndexRasterAlgorithm(),
            IndexCatalogAlgorithm(),
            SearchTilesAlgorithm(),
            DescribeTilesAlgorithm(),
            ScoreMapAlgorithm(),
        )
        for alg in algorithms:
            self.addAlgorithm(alg)
