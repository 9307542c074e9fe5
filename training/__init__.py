"""RSITR training: data, PIR-CLIP models, noise-robust losses, evaluation and ONNX bundle export."""

__version__ = "0.1.0"
