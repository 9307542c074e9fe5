"""Render search matches over a raster to a PNG map with QGIS, headless (no display needed).

Usage: ``python scripts/render_matches.py RASTER OUT.png RESULTS.geojson [RESULTS2.geojson ...]``.
Each GeoJSON is a FeatureCollection written by ``engine.search.write_results`` (tile polygons in EPSG:4326
per RFC 7946, with ``rank``, ``score`` and ``query``). Each query gets its own colour: its tiles are outlined
and labelled with their rank; a side panel holds the legend (query, rank, score, tile centre), a scale bar
and a north arrow; lon/lat ticks frame the map. North is up: the map is drawn in the raster's CRS when that
is projected, else in the UTM zone of the scene centre (true shapes, metric scale bar).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="rsitr-xdg-"))

COLOURS = ["#ff3b30", "#ffd60a", "#00e5ff", "#ff4dff", "#7cff3a", "#ff9500", "#ffffff"]
NICE_DEGREES = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0)


@dataclass(frozen=True)
class Layout:
    """Pixel layout of the output image."""

    map_max_w: int = 1100
    map_max_h: int = 1500
    margin_left: int = 78  # latitude labels
    margin_top: int = 16
    margin_bottom: int = 40  # longitude labels
    gap: int = 22
    panel_w: int = 470
    margin_right: int = 14


@dataclass
class QueryHits:
    """One results file: the query, its colour and its features (rank, score, polygon in EPSG:4326)."""

    query: str
    colour: str
    features: list[dict]


def utm_epsg(lon: float, lat: float) -> int:
    """EPSG code of the WGS 84 UTM zone holding a point."""
    zone = min(60, max(1, int((lon + 180) // 6) + 1))
    return (32600 if lat >= 0 else 32700) + zone


def nice_step(span: float, target: int = 5, steps: tuple[float, ...] = NICE_DEGREES) -> float:
    """The smallest step from ``steps`` giving at most ``target`` ticks over ``span``."""
    for s in steps:
        if span / s <= target:
            return s
    return steps[-1]


def nice_length(max_m: float) -> float:
    """A round scale-bar length (1, 2 or 5 x 10^n metres) no longer than ``max_m``."""
    base = 10 ** math.floor(math.log10(max_m))
    return max(m * base for m in (1, 2, 5) if m * base <= max_m)


def degrees_label(value: float, step: float, positive: str, negative: str) -> str:
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    return f"{abs(value):.{decimals}f}°{positive if value >= 0 else negative}"


def load_hits(paths: list[Path]) -> list[QueryHits]:
    out = []
    for i, path in enumerate(paths):
        try:
            feats = json.loads(path.read_text(encoding="utf-8")).get("features", [])
        except (OSError, ValueError) as exc:
            raise SystemExit(f"render: cannot read {path}: {exc}") from None
        query = feats[0]["properties"].get("query", path.stem) if feats else path.stem
        out.append(QueryHits(query, COLOURS[i % len(COLOURS)], feats))
    return out


def render(
    raster: Path, results: list[Path], out: Path, title: str = "", subtitle: str = "", layout: Layout = Layout()
) -> Path:
    """Draw ``raster`` with the ranked tiles of each results file and a legend panel; returns the PNG path."""
    from qgis.core import QgsApplication

    hits = load_hits(results)
    app = QgsApplication([], False)
    app.initQgis()
    try:
        image = _draw(raster, hits, title or raster.name, subtitle, layout)  # layers are gone when this returns
        _save(image, out)
    finally:
        app.exitQgis()
    return out


def _draw(raster: Path, hits: list[QueryHits], title: str, subtitle: str, lay: Layout):
    from qgis.core import (
        QgsContrastEnhancement,
        QgsCoordinateReferenceSystem,
        QgsCoordinateTransform,
        QgsMapRendererParallelJob,
        QgsMapSettings,
        QgsProject,
        QgsRasterLayer,
        QgsRasterMinMaxOrigin,
    )
    from qgis.PyQt.QtCore import QSize
    from qgis.PyQt.QtGui import QColor, QImage, QPainter

    base = QgsRasterLayer(str(raster), raster.name)
    if not base.isValid():
        raise SystemExit(f"render: QGIS cannot open {raster}")
    # display stretch (2-98 % cumulative cut per band); the engine's tiles are not changed by it
    base.setContrastEnhancement(QgsContrastEnhancement.StretchToMinimumMaximum, QgsRasterMinMaxOrigin.CumulativeCut)
    wgs84 = QgsCoordinateReferenceSystem("EPSG:4326")
    ctx = QgsProject.instance().transformContext()
    src_crs = base.crs() if base.crs().isValid() else wgs84
    centre = QgsCoordinateTransform(src_crs, wgs84, ctx).transform(base.extent().center())
    dest = (
        src_crs
        if not src_crs.isGeographic()
        else QgsCoordinateReferenceSystem(f"EPSG:{utm_epsg(centre.x(), centre.y())}")
    )
    extent = QgsCoordinateTransform(src_crs, dest, ctx).transformBoundingBox(base.extent())
    fit = min(lay.map_max_w / extent.width(), lay.map_max_h / extent.height())
    map_w, map_h = max(1, round(extent.width() * fit)), max(1, round(extent.height() * fit))

    settings = QgsMapSettings()
    settings.setLayers([base])
    settings.setDestinationCrs(dest)
    settings.setTransformContext(ctx)
    settings.setExtent(extent)
    settings.setOutputSize(QSize(map_w, map_h))
    settings.setBackgroundColor(QColor("white"))
    job = QgsMapRendererParallelJob(settings)
    job.start()
    job.waitForFinished()
    map_image = job.renderedImage()
    del base

    to_dest = QgsCoordinateTransform(wgs84, dest, ctx)
    from_dest = QgsCoordinateTransform(dest, wgs84, ctx)
    m2p = settings.mapToPixel()

    def pixel(lon: float, lat: float) -> tuple[float, float]:
        p = m2p.transform(to_dest.transform(lon, lat))
        return p.x(), p.y()

    def lonlat_at(px: float, py: float) -> tuple[float, float]:
        p = from_dest.transform(m2p.toMapCoordinates(round(px), round(py)))
        return p.x(), p.y()

    panel_h = 150 + sum(64 + 21 * len(h.features) for h in hits) + 140
    height = max(lay.margin_top + map_h + lay.margin_bottom, panel_h)
    width = lay.margin_left + map_w + lay.gap + lay.panel_w + lay.margin_right
    image = QImage(width, height, QImage.Format_RGB32)
    image.fill(QColor("white"))
    painter = QPainter(image)
    painter.setRenderHint(QPainter.Antialiasing)
    ox, oy = lay.margin_left, lay.margin_top
    painter.drawImage(ox, oy, map_image)
    _draw_tiles(painter, hits, pixel, ox, oy)
    _draw_frame(painter, ox, oy, map_w, map_h, lonlat_at)
    metres_per_px = _ground_metres(dest, ctx, m2p, map_w, map_h)
    _draw_panel(painter, ox + map_w + lay.gap, lay.margin_top, lay.panel_w, hits, title, subtitle, metres_per_px, dest)
    painter.end()
    return image


def _ground_metres(dest, ctx, m2p, map_w: int, map_h: int) -> float:
    """Ellipsoidal ground metres per output pixel, measured across the map's middle."""
    from qgis.core import QgsDistanceArea

    da = QgsDistanceArea()
    da.setSourceCrs(dest, ctx)
    da.setEllipsoid("WGS84")
    a = m2p.toMapCoordinates(0, map_h // 2)
    b = m2p.toMapCoordinates(map_w, map_h // 2)
    return da.measureLine(a, b) / max(map_w, 1)


def _draw_tiles(painter, hits: list[QueryHits], pixel, ox: int, oy: int) -> None:
    """Outline each query's tiles in its colour, then put the ranks on top (one corner per query).

    A tile found by several queries gets nested outlines, so every colour stays visible.
    """
    from qgis.PyQt.QtCore import QPointF, QRectF, Qt
    from qgis.PyQt.QtGui import QColor, QFont, QPen, QPolygonF

    seen: dict[tuple, int] = {}
    labels = []
    for qi, h in enumerate(hits):
        for f in h.features:
            pts = [pixel(lon, lat) for lon, lat in f["geometry"]["coordinates"][0][:-1]]  # ring without closing point
            key = tuple(round(v) for xy in pts for v in xy)
            inset = 3.5 * seen.get(key, 0)
            seen[key] = seen.get(key, 0) + 1
            cx = sum(x for x, _ in pts) / len(pts)
            cy = sum(y for _, y in pts) / len(pts)
            half = max(max(abs(x - cx), abs(y - cy)) for x, y in pts) or 1.0
            shrink = max(0.2, 1 - inset / half)
            poly = QPolygonF([QPointF(ox + cx + (x - cx) * shrink, oy + cy + (y - cy) * shrink) for x, y in pts])
            painter.setBrush(Qt.NoBrush)
            painter.setPen(QPen(QColor(0, 0, 0, 170), 4.0))
            painter.drawPolygon(poly)
            painter.setPen(QPen(QColor(h.colour), 2.2))
            painter.drawPolygon(poly)
            labels.append((qi % 5, poly.boundingRect(), h.colour, str(f["properties"].get("rank", ""))))
    font = QFont("DejaVu Sans", 9)
    font.setBold(True)
    painter.setFont(font)
    size, pad = 16.0, 3.0
    for corner, r, colour, text in labels:
        left, right = r.left() + pad, r.right() - size - pad
        top, bottom = r.top() + pad, r.bottom() - size - pad
        x, y = {0: (left, top), 1: (right, top), 2: (left, bottom), 3: (right, bottom)}.get(
            corner, (r.center().x() - size / 2, r.center().y() - size / 2)
        )
        box = QRectF(x, y, size, size)
        painter.setPen(QPen(QColor("black"), 1.0))
        painter.setBrush(QColor(colour))
        painter.drawRect(box)
        painter.setPen(QColor("black"))
        painter.drawText(box, Qt.AlignCenter, text)


def _draw_frame(painter, ox: int, oy: int, map_w: int, map_h: int, lonlat_at) -> None:
    """Map border with latitude ticks on the left and longitude ticks along the bottom (WGS 84 degrees)."""
    from qgis.PyQt.QtCore import QRectF, Qt
    from qgis.PyQt.QtGui import QColor, QFont, QPen

    painter.setBrush(Qt.NoBrush)
    painter.setPen(QPen(QColor("black"), 1.2))
    painter.drawRect(ox, oy, map_w, map_h)
    painter.setFont(QFont("DejaVu Sans", 9))
    lon_mid, lat_top = lonlat_at(0, 0)
    _, lat_bottom = lonlat_at(0, map_h)
    lon_left, _ = lonlat_at(0, map_h)
    lon_right, _ = lonlat_at(map_w, map_h)
    step = nice_step(abs(lat_top - lat_bottom), target=max(2, map_h // 150))
    lat = math.ceil(min(lat_top, lat_bottom) / step) * step
    while lat <= max(lat_top, lat_bottom):
        y = oy + (lat_top - lat) / (lat_top - lat_bottom) * map_h
        painter.drawLine(round(ox - 6), round(y), ox, round(y))
        painter.drawText(
            QRectF(0, y - 9, ox - 9, 18), Qt.AlignRight | Qt.AlignVCenter, degrees_label(lat, step, "N", "S")
        )
        lat += step
    step = nice_step(abs(lon_right - lon_left), target=max(2, map_w // 110))
    lon = math.ceil(min(lon_left, lon_right) / step) * step
    while lon <= max(lon_left, lon_right):
        x = ox + (lon - lon_left) / (lon_right - lon_left) * map_w
        painter.drawLine(round(x), oy + map_h, round(x), oy + map_h + 6)
        painter.drawText(
            QRectF(x - 50, oy + map_h + 7, 100, 18), Qt.AlignHCenter | Qt.AlignTop, degrees_label(lon, step, "E", "W")
        )
        lon += step
    del lon_mid


def _draw_panel(painter, x0: int, y0: int, w: int, hits: list[QueryHits], title: str, subtitle: str, mpp, dest) -> None:
    """Title, one legend block per query (colour, text, ranked tiles with score and centre), scale bar, north."""
    from qgis.PyQt.QtCore import QPointF, QRectF, Qt
    from qgis.PyQt.QtGui import QColor, QFont, QPen, QPolygonF

    def font(size: int, bold: bool = False) -> QFont:
        f = QFont("DejaVu Sans", size)
        f.setBold(bold)
        return f

    painter.setPen(QColor("black"))
    painter.setFont(font(13, True))
    painter.drawText(QRectF(x0, y0, w, 44), Qt.TextWordWrap, title)
    painter.setFont(font(9))
    painter.drawText(QRectF(x0, y0 + 46, w, 36), Qt.TextWordWrap, subtitle)
    y = y0 + 92
    for h in hits:
        painter.setPen(QPen(QColor("black"), 1))
        painter.setBrush(QColor(h.colour))
        painter.drawRect(QRectF(x0, y + 2, 18, 18))
        painter.setPen(QColor("black"))
        painter.setFont(font(11, True))
        painter.drawText(QRectF(x0 + 26, y, w - 26, 40), Qt.TextWordWrap, f'"{h.query}"')
        y += 28
        painter.setFont(font(9))
        for f in h.features:
            pr = f["properties"]
            bbox = [float(v) for v in str(pr.get("bbox_lonlat", "")).split(",") if v]
            where = ""
            if len(bbox) == 4:
                lon, lat = (bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2
                where = f"{degrees_label(lat, 1e-4, 'N', 'S')}  {degrees_label(lon, 1e-4, 'E', 'W')}"
            painter.drawText(
                QRectF(x0 + 26, y, w - 26, 20),
                Qt.AlignLeft,
                f"{pr.get('rank', '?')}.  score {pr.get('score', 0):.3f}   {where}",
            )
            y += 20
        y += 18

    # scale bar
    y += 8
    bar_m = nice_length(mpp * (w - 80))
    bar_px = bar_m / mpp
    painter.setFont(font(9))
    half = bar_px / 2
    painter.setPen(QPen(QColor("black"), 1))
    painter.setBrush(QColor("black"))
    painter.drawRect(QRectF(x0, y, half, 8))
    painter.setBrush(QColor("white"))
    painter.drawRect(QRectF(x0 + half, y, half, 8))
    label = f"{bar_m / 1000:g} km" if bar_m >= 1000 else f"{bar_m:g} m"
    painter.drawText(QRectF(x0 - 20, y + 10, 40, 16), Qt.AlignHCenter, "0")
    painter.drawText(QRectF(x0 + bar_px - 40, y + 10, 80, 16), Qt.AlignHCenter, label)
    # north arrow
    nx, ny = x0 + w - 40, y - 24
    arrow = QPolygonF([QPointF(nx, ny), QPointF(nx - 10, ny + 30), QPointF(nx, ny + 23), QPointF(nx + 10, ny + 30)])
    painter.setBrush(QColor("black"))
    painter.drawPolygon(arrow)
    painter.setFont(font(11, True))
    painter.drawText(QRectF(nx - 20, ny - 22, 40, 20), Qt.AlignHCenter, "N")
    painter.setFont(font(8))
    painter.setPen(QColor(60, 60, 60))
    note = (
        f"Map in {dest.authid()} ({dest.description()}), north up; ticks in WGS 84 degrees. "
        "Outlines: each query's best tiles, numbered by rank (cosine score); a tile found by several queries "
        "has nested outlines. The last column and row of the grid are shifted to the raster edge, so they "
        "overlap their neighbours."
    )
    painter.drawText(QRectF(x0, y + 32, w, 80), Qt.TextWordWrap, note)


def _save(image, out: Path) -> None:
    """Save as a palette PNG (Floyd-Steinberg dithered) so the map stays small enough to commit."""
    from PIL import Image
    from qgis.PyQt.QtCore import QBuffer, QByteArray, QIODevice

    data = QByteArray()
    buf = QBuffer(data)
    buf.open(QIODevice.WriteOnly)
    if not image.save(buf, "PNG"):
        raise SystemExit(f"render: could not encode {out}")
    buf.close()
    import io

    pil = Image.open(io.BytesIO(bytes(data))).convert("RGB")
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        pil.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG).save(
            out, optimize=True
        )
    except OSError as exc:
        raise SystemExit(f"render: could not write {out}: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("raster", type=Path, help="the raster the results were searched in")
    p.add_argument("out", type=Path, help="PNG to write")
    p.add_argument("results", type=Path, nargs="+", help="GeoJSON results, one per query")
    p.add_argument("--title", default="", help="title in the legend panel (default: the raster's file name)")
    p.add_argument("--subtitle", default="", help="line under the title (model, grid)")
    p.add_argument("--max-size", type=int, default=1500, help="largest map side in pixels (default 1500)")
    a = p.parse_args(argv)
    layout = Layout(map_max_w=min(1100, a.max_size), map_max_h=a.max_size)
    print(render(a.raster, a.results, a.out, a.title, a.subtitle, layout))
    return 0


if __name__ == "__main__":
    sys.exit(main())
