"""Training configuration: a dataclass loaded from YAML with ``--set key=value`` overrides."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml


@dataclass
class TrainConfig:
    name: str = "run"
    seed: int = 0
    # data
    data_json: str = "shared:datasets/rsicd_aid150/dataset_rsicd_aid150.json"
    image_root: str | None = None  # default: <json dir>/images
    train_split: str = "train"
    val_split: str = "val"
    max_train_pairs: int | None = None
    max_val_images: int | None = None
    noise_rate: float = 0.0
    noise_seed: int = 42
    # model
    model_config: str = "pir_lite"  # training/models/configs/<name>.json
    model: dict = field(default_factory=dict)  # overrides of the model config
    # schedule
    epochs: int = 10
    batch_size: int = 128
    pairs_per_epoch: str = "images"  # images (one random caption per image) | all (every caption row)
    lr_backbone: float = 1e-4
    lr_head: float = 1e-3
    weight_decay: float = 0.05
    warmup_frac: float = 0.05
    feature_aug: bool = True
    grad_clip: float = 5.0
    fixed_logit_scale: float | None = None
    # scene prior classifier (train split only)
    scene_epochs: int = 4
    scene_lr: float = 1e-3
    scene_batch: int = 128
    # losses
    loss: str = "infonce"  # infonce | robust (RRSITR self-paced + robust triplet)
    sp_warmup_epochs: int = 1
    # robust epochs: uniform (one random caption per image) | division (among rows a full no-grad division pass
    # does not call noisy; training/caption_sampling.py) | oracle (analysis only: among the rows the noise
    # injection left intact, every epoch; the ceiling of any division)
    caption_sampling: str = "uniform"
    sampling_all_noisy: str = "lowest"  # division sampling, image with no non-noisy row: lowest | replace
    # division sampling: fraction of the last warm-up epoch after which one division pass redraws the captions
    # of the images that epoch has not reached yet (0 = off: the warm-up epoch trains on every caption)
    warmup_division_at: float = 0.0
    gamma1: float = 0.27
    gamma2: float = 0.98
    threshold_mode: str = "chance"
    q1: float = 0.5
    q2: float = 0.8
    lambda1: float = 0.8
    lambda2: float = 0.9
    sigma0: float = 0.6
    aff_weight: float = 1.0
    aff_mode: str = "unique"
    uniformity_weight: float = 0.0
    uniformity_t: float = 2.0
    curriculum_weight: float = 0.0
    curriculum_margin: float = 0.2
    curriculum_beta: float = 0.5
    curriculum_schedule: str = "cost"  # cost (HVSA: exp(-beta*cost) only) | linear (beta decays to 0 over epochs)
    hash_weight: float = 1.0
    hash_quant_weight: float = 0.001
    # io
    out_dir: str = "runs"
    cache_dir: str | None = "runs/cache"
    num_threads: int = 2
    export: bool = True
    export_dir: str | None = None  # default: <run dir>/bundle
    version: str = "0.1.0"

    @classmethod
    def load(cls, path: str | Path | None, overrides: list[str] | None = None) -> TrainConfig:
        data = yaml.safe_load(Path(path).read_text()) if path else {}
        data = data or {}
        for item in overrides or []:
            key, _, value = item.partition("=")
            val = yaml.safe_load(value)
            if key.startswith("model."):
                data.setdefault("model", {})[key[6:]] = val
            else:
                data[key] = val
        return from_dict_strict(cls, data, "config")

    def to_dict(self) -> dict:
        return asdict(self)


def from_dict_strict(cls, d: dict, what: str):
    """``cls(**d)`` for a dataclass, rejecting keys it does not have with one clear error."""
    unknown = set(d) - {f.name for f in fields(cls)}
    if unknown:
        raise ValueError(f"unknown {what} keys: {sorted(unknown)}")
    return cls(**d)


def resolve_path(p: str) -> Path:
    """``shared:rel/path`` -> the shared-data root joined with rel/path; other paths unchanged."""
    if p.startswith("shared:"):
        from engine.shared_data import shared_path

        return shared_path(*p[7:].split("/"))
    return Path(p)
