"""RSITR QGIS plugin: text search over imagery tiles through the RSITR engine (HTTP)."""


def classFactory(iface):  # noqa: N802 - QGIS entry point
    from .plugin import RsitrPlugin

    return RsitrPlugin(iface)
