"""RSITR engine: raster tiling, ONNX Runtime inference, tile stores, text search and describe."""

__version__ = "0.2.0"
