"""Losses as pure functions on embeddings / similarity matrices (each unit-tested on hand values)."""

from training.losses.affiliation import affiliation_loss
from training.losses.contrastive import info_nce, multi_positive_nce, per_pair_nce, positive_mask
from training.losses.hashing import hash_contrastive, quantization_loss
from training.losses.hvsa import curriculum_triplet, curriculum_weight, uniformity_loss
from training.losses.self_paced import (
    SelfPacedParams,
    robust_triplet,
    self_paced_loss,
    sp_regulariser,
    sp_weight,
    thresholds,
)
from training.losses.word import word_loss

__all__ = [
    "SelfPacedParams",
    "affiliation_loss",
    "curriculum_triplet",
    "curriculum_weight",
    "hash_contrastive",
    "info_nce",
    "multi_positive_nce",
    "per_pair_nce",
    "positive_mask",
    "quantization_loss",
    "robust_triplet",
    "self_paced_loss",
    "sp_regulariser",
    "sp_weight",
    "thresholds",
    "uniformity_loss",
    "word_loss",
]
