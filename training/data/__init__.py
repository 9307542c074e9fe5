"""Datasets: readers for the common RS captioning formats, scene classes, noise injection."""

from training.data.noise import NoiseReport, inject_noise
from training.data.readers import CaptionRecord, read_amfmn_precomp, read_csv_pairs, read_karpathy_json
from training.data.scene_classes import resolve_scene_classes

__all__ = [
    "CaptionRecord",
    "NoiseReport",
    "inject_noise",
    "read_amfmn_precomp",
    "read_csv_pairs",
    "read_karpathy_json",
    "resolve_scene_classes",
]
