"""GUI-free logic of the search panel: which layers the engine can read, texts shown for results and jobs."""

from __future__ import annotations

import os

from qgis.core import QgsMapLayer, QgsProviderRegistry, QgsRasterLayer

WEB_PROVIDERS = {
    "wms": "WMS/WMTS/XYZ",
    "wcs": "WCS",
    "arcgismapserver": "ArcGIS MapServer",
    "xyzvectortiles": "vector tiles",
    "vectortile": "vector tiles",
}


def raster_source_path(layer: QgsMapLayer | None) -> tuple[str | None, str]:
    """(file path, "") for a file-based raster layer the engine can read, else (None, one-line reason)."""
    if layer is None:
        return None, "Choose a raster layer"
    if not isinstance(layer, QgsRasterLayer):
        return None, f"'{layer.name()}' is not a raster layer"
    provider = layer.providerType()
    if provider != "gdal":
        kind = WEB_PROVIDERS.get(provider, provider)
        return None, (
            f"'{layer.name()}' is a {kind} layer: the engine reads raster files only; "
            "export it to GeoTIFF first (right click > Export > Save As)"
        )
    parts = QgsProviderRegistry.instance().decodeUri("gdal", layer.source())
    path = parts.get("path") or layer.source()
    if path.startswith("/vsi") or "://" in path:
        return None, f"'{layer.name()}' is not a local file ({path[:60]}): download or export it first"
    if not os.path.isfile(path):
        return None, f"'{layer.name()}': file not found: {path}"
    return os.path.abspath(path), ""


def raster_name(path: str) -> str:
    """The file name of a raster path or URL ('scene.tif')."""
    return str(path or "").rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1]


def format_result(result: dict, description: str = "", with_raster: bool = False) -> str:
    """'#1   0.532  tile 17' (+ ' naip.tif' when results of several rasters are listed together) + description."""
    text = f"#{int(result.get('rank', 0)):<3d} {float(result.get('score', 0.0)):.3f}  tile {result.get('tile_id')}"
    if with_raster:
        text = f"{text}  {raster_name(result.get('raster', ''))}"
    return f"{text}  {description}" if description else text


def short_description(describe: dict) -> str:
    """'forest 62% - many green trees ...' (or 'uncertain - ...') from a /describe answer."""
    parts = []
    classes = describe.get("classes") or []
    if describe.get("uncertain"):
        parts.append("uncertain")
    elif classes:
        parts.append(f"{classes[0].get('name')} {100 * float(classes[0].get('probability', 0)):.0f}%")
    descriptions = describe.get("descriptions") or describe.get("captions") or []
    if descriptions:
        text = str(descriptions[0].get("text", ""))
        parts.append(text if len(text) <= 60 else text[:59] + "\u2026")
    return " - ".join(parts)


def status_text(state: str, health: dict, detail: str = "") -> str:
    if state == "running" and health:
        model = health.get("model") or {}
        provider = str(health.get("provider", "?")).replace("ExecutionProvider", "")
        return f"Engine: running ({provider}), model {model.get('name', '?')} {model.get('version', '')}".strip()
    text = f"Engine: {state}"
    return f"{text} - {detail}" if detail else text


def job_progress(job: dict) -> tuple[int, str, bool, str]:
    """(percent, label, finished, error) for a /jobs/{id} answer."""
    state = job.get("state", "?")
    pct = int(round(100 * float(job.get("progress") or 0.0)))
    done, total = job.get("done"), job.get("total")
    label = f"{state}: {done}/{total} tiles" if total else f"{state}"
    finished = state in ("done", "failed", "cancelled")
    error = ""
    if state == "failed":
        error = str(job.get("error") or "indexing failed")
    elif state == "cancelled":
        error = "indexing cancelled"
    return (100 if state == "done" else pct), label, finished, error


def describe_html(describe: dict) -> str:
    """The popup: the scene (or "uncertain"), the shown classes plus "other" (summing to 100 %), descriptions and
    caption-bank texts."""
    from html import escape

    rows = [f"<h3>Tile {escape(str(describe.get('tile_id', '?')))}</h3>"]
    classes = describe.get("classes") or []
    if describe.get("uncertain"):
        rows.append("<p><b>Scene: uncertain</b><br><i>no class is probable enough; the candidates:</i></p>")
    elif classes:
        rows.append(f"<p><b>Scene: {escape(str(describe.get('scene') or classes[0].get('name')))}</b></p>")
    if classes:
        rows.append("<table>")
        shown = [(str(c.get("name")), float(c.get("probability", 0.0))) for c in classes]
        other = describe.get("other")
        if other is None:  # an older engine: whatever the shown classes leave
            other = max(0.0, 1.0 - sum(p for _, p in shown))
        for name, p in [*shown, ("other", float(other))]:
            style = " style='color:#777'" if name == "other" else ""
            rows.append(f"<tr{style}><td>{escape(name)}</td><td align='right'>&nbsp;{100 * p:.1f}%</td></tr>")
        rows.append("</table>")
    for key, title in (("descriptions", "Descriptions"), ("captions", "From your caption bank")):
        items = describe.get(key) or []
        if items:
            rows.append(f"<b>{title}</b><ol>")
            for d in items:
                rows.append(f"<li>{escape(str(d.get('text')))} <i>({float(d.get('score', 0)):.3f})</i></li>")
            rows.append("</ol>")
    return "\n".join(rows)
