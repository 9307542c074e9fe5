"""Render search matches over a raster to PNG with QGIS, headless (no display needed).

Usage: ``python scripts/render_matches.py RASTER OUT.png RESULTS.geojson [RESULTS2.geojson ...]``.
Each GeoJSON is a FeatureCollection written by ``engine.search.write_results`` (tile polygons in the
EPSG:4326 per RFC 7946, with ``rank`` and ``score``); each gets its own outline colour and a legend entry.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="rsitr-xdg-"))

COLOURS = ["#ff2d2d", "#ffd400", "#00e5ff", "#ff00d4", "#7cff00"]


def render(raster: Path, results: list[Path], out: Path, size: int = 1200) -> Path:
    """Draw ``raster`` with the match outlines of each results file; returns the PNG path."""
    from qgis.core import QgsApplication

    app = QgsApplication([], False)
    app.initQgis()
    try:
        _draw(raster, results, out, size)  # every layer is gone when this returns (exitQgis needs that)
    finally:
        app.exitQgis()
    return out


def _draw(raster: Path, results: list[Path], out: Path, size: int) -> None:
    from qgis.core import QgsMapRendererParallelJob, QgsMapSettings, QgsRasterLayer, QgsVectorLayer
    from qgis.PyQt.QtCore import QSize
    from qgis.PyQt.QtGui import QColor, QFont, QPainter

    base = QgsRasterLayer(str(raster), raster.name)
    if not base.isValid():
        raise SystemExit(f"render: QGIS cannot open {raster}")
    layers, labels = [], []
    for i, path in enumerate(results):
        layer = QgsVectorLayer(str(path), path.stem, "ogr")
        if not layer.isValid():
            raise SystemExit(f"render: QGIS cannot open {path}")
        colour = COLOURS[i % len(COLOURS)]
        symbol_layer = layer.renderer().symbol().symbolLayer(0)
        symbol_layer.setFillColor(QColor(0, 0, 0, 0))
        symbol_layer.setStrokeColor(QColor(colour))
        symbol_layer.setStrokeWidth(0.9)
        layers.append(layer)
        feats = json.loads(path.read_text()).get("features", [])
        query = feats[0]["properties"].get("query", path.stem) if feats else path.stem
        labels.append((colour, f"{query} ({len(feats)} tiles)"))
    settings = QgsMapSettings()
    settings.setLayers([*reversed(layers), base])
    settings.setDestinationCrs(base.crs())
    settings.setExtent(base.extent())
    ratio = base.height() / max(base.width(), 1)
    settings.setOutputSize(QSize(size, max(1, int(size * ratio))))
    settings.setBackgroundColor(QColor("white"))
    job = QgsMapRendererParallelJob(settings)
    job.start()
    job.waitForFinished()
    image = job.renderedImage()
    painter = QPainter(image)
    painter.setFont(QFont("Sans", 14))
    for j, (colour, text) in enumerate(labels):
        painter.fillRect(8, 8 + 26 * j, 520, 24, QColor(0, 0, 0, 150))
        painter.setPen(QColor(colour))
        painter.drawText(14, 26 + 26 * j, text)
    painter.end()
    out.parent.mkdir(parents=True, exist_ok=True)
    if not image.save(str(out)):
        raise SystemExit(f"render: could not write {out}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("raster", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("results", type=Path, nargs="+")
    p.add_argument("--size", type=int, default=1200)
    a = p.parse_args(argv)
    print(render(a.raster, a.results, a.out, a.size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
