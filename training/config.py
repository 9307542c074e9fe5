"""Training configuration: a dataclass loaded from YAML with ``--set key=value`` overrides."""

from __future__ import annotations

import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml

# dotted ``--set`` aliases for flat keys (the README's dataset override ``--set data.json=... data.image_root=...``)
KEY_ALIASES = {"data.json": "data_json", "data.image_root": "image_root", "data.train_split": "train_split"}


@dataclass
class TrainConfig:
    name: str = "run"
    seed: int = 0
    # data
    data_json: str = "shared:datasets/rsicd_aid150/dataset_rsicd_aid150.json"
    image_root: str | None = None  # default: <json dir>/images
    train_split: str = "train"
    val_split: str = "val"
    # validation that looks like test (training/data/splits.py): hold out this many train images with at least
    # ``val_holdout_min_captions`` distinct captions and at most ``val_holdout_max_shared_rows`` caption rows
    # shared verbatim with other train images (deterministic by filename hash); they leave the train set and
    # ``val_split`` is then not used. 0 = validate on ``val_split`` (the 0.1/0.2 recipes).
    val_holdout_images: int = 0
    val_holdout_min_captions: int = 3
    val_holdout_max_shared_rows: int | None = 1
    max_train_pairs: int | None = None
    max_val_images: int | None = None
    noise_rate: float = 0.0
    noise_seed: int = 42
    # model
    model_config: str = "pir_lite"  # training/models/configs/<name>.json
    model: dict = field(default_factory=dict)  # overrides of the model config
    # PIR-ViT trainer options (training/vit_train.py ViTOptions: device, precision, accum_steps, layer_decay...)
    vit: dict = field(default_factory=dict)
    # schedule
    epochs: int = 10
    batch_size: int = 128
    pairs_per_epoch: str = "images"  # images (one random caption per image) | all (every caption row)
    # images mode: one (a random caption per image per step) | all (every distinct caption of each image of the
    # batch in the same step, multi-positive InfoNCE: losses.multi_positive_nce)
    captions_per_image: str = "one"
    # class-aware batches (training/batching.py): this fraction of each batch comes from ``class_aware_classes``
    # scene classes (same-scene negatives); 0 = uniform batches
    class_aware_frac: float = 0.0
    class_aware_classes: int = 4
    lr_backbone: float = 1e-4
    lr_head: float = 1e-3
    weight_decay: float = 0.05
    warmup_frac: float = 0.05
    feature_aug: bool = True
    # image-level augmentation (training/augment.py): views cached through the frozen trunks once; per image and
    # step one of the clean image and its ``image_aug_views`` views is used
    image_aug_views: int = 0
    image_aug: dict = field(default_factory=dict)  # ImageAugParams overrides (``--set image_aug.gsd_factor_max=3``)
    image_aug_seed: int = 0  # the views' random stream (not ``seed``: runs of other seeds share the view caches)
    # EMA of the trained weights (0 = off): each epoch val is measured with the live and the EMA weights and the
    # better of the two is the epoch's candidate for best.pt
    ema_decay: float = 0.0
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
    # auxiliary word task (training/word_targets.py, training/losses/word.py): each image against the embeddings
    # of the content words of its captions (0 = off)
    word_weight: float = 0.0
    words: dict = field(default_factory=dict)  # WordParams overrides (``--set words.size=500``)
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
            key, eq, value = item.partition("=")
            if not eq or not key:
                raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
            val = yaml.safe_load(value)
            key = KEY_ALIASES.get(key, key)
            if key.startswith("model."):
                data.setdefault("model", {})[key[6:]] = val
            elif key.startswith("vit."):  # PIR-ViT trainer options (issue 19)
                data.setdefault("vit", {})[key[4:]] = val
            elif key.startswith("image_aug."):
                data.setdefault("image_aug", {})[key[10:]] = val
            elif key.startswith("words."):
                data.setdefault("words", {})[key[6:]] = val
            else:
                data[key] = val
        cfg = from_dict_strict(cls, data, "config")
        check_types(cfg)
        if cfg.image_aug_views < 0:
            raise ValueError(f"image_aug_views must be >= 0, got {cfg.image_aug_views}")
        cfg.image_aug_params()  # unknown or out-of-range image_aug keys: one clear error now, not mid-run
        cfg.word_params()
        if cfg.word_weight < 0:
            raise ValueError(f"word_weight must be >= 0, got {cfg.word_weight}")
        return cfg

    def image_aug_params(self):
        """The ``ImageAugParams`` of ``image_aug`` (strict keys; ``ImageAugParams`` checks types and ranges)."""
        from training.augment import ImageAugParams

        return from_dict_strict(ImageAugParams, dict(self.image_aug), "image_aug")

    def word_params(self):
        """The ``WordParams`` of ``words`` (strict keys; ``WordParams`` checks types and ranges)."""
        from training.word_targets import WordParams

        return from_dict_strict(WordParams, dict(self.words), "words")

    def to_dict(self) -> dict:
        return asdict(self)


def from_dict_strict(cls, d: dict, what: str):
    """``cls(**d)`` for a dataclass, rejecting keys it does not have with one clear error."""
    unknown = set(d) - {f.name for f in fields(cls)}
    if unknown:
        raise ValueError(f"unknown {what} keys: {sorted(unknown)}")
    return cls(**d)


def _type_ok(value, hint) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, origin or hint)


def check_types(cfg) -> None:
    """Raise one clear ``ValueError`` when a field's value does not match its annotation (``epochs=ten``)."""
    hints = typing.get_type_hints(type(cfg))
    for f in fields(cfg):
        v = getattr(cfg, f.name)
        if not _type_ok(v, hints[f.name]):
            raise ValueError(f"config key {f.name}: expected {hints[f.name]}, got {v!r}")
        if hints[f.name] is float and isinstance(v, int):
            setattr(cfg, f.name, float(v))


def resolve_path(p: str) -> Path:
    """``shared:rel/path`` -> the shared-data root joined with rel/path; other paths unchanged."""
    if p.startswith("shared:"):
        from engine.shared_data import shared_path

        return shared_path(*p[7:].split("/"))
    return Path(p)
