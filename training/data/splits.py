"""Data splits for training: the :class:`Split` container (rows grouped by image, with their trunk caches),
``load_splits`` (train / validation per the config, optional noise injection) and a validation split that looks
like test (issue 17).

RSICD's ``val`` is unlike its ``test``: 54 % of val images have five identical captions (2 of 1,027 test images)
and 40 % of val caption rows occur verbatim in train (10.6 % of test rows), so selecting on it is weak. The
holdout split takes ``n_images`` *train* images that have at least ``min_distinct`` distinct captions (after
normalising case, spaces and the final full stop) and at most ``max_shared_rows`` caption rows that occur
verbatim in another train image (test: 66 % of images have none, 22 % one), ordered by the SHA-1 of their
filename (deterministic, independent of file order and class), and removes them from the train set.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from training.config import TrainConfig, resolve_path
from training.data.noise import inject_noise
from training.data.readers import CaptionRecord, read_dataset
from training.data.scene_classes import class_index, resolve_scene_classes


def normalise_caption(caption: str) -> str:
    """Lower case, single spaces, no trailing full stop: 'A  plane.' and 'a plane' are the same caption."""
    return re.sub(r"\s+", " ", caption.strip().lower()).rstrip(" .")


def distinct_captions(rows: Sequence[CaptionRecord]) -> dict[str, set[str]]:
    """filename -> set of its normalised captions."""
    out: dict[str, set[str]] = {}
    for r in rows:
        out.setdefault(r.filename, set()).add(normalise_caption(r.caption))
    return out


def _hash(name: str) -> str:
    return hashlib.sha1(name.encode(), usedforsecurity=False).hexdigest()


def shared_rows(rows: Sequence[CaptionRecord]) -> dict[str, int]:
    """filename -> number of its caption rows whose normalised text also belongs to another image."""
    owners: dict[str, set[str]] = {}
    for r in rows:
        owners.setdefault(normalise_caption(r.caption), set()).add(r.filename)
    out: dict[str, int] = {}
    for r in rows:
        out[r.filename] = out.get(r.filename, 0) + (len(owners[normalise_caption(r.caption)]) > 1)
    return out


def holdout_split(
    rows: Sequence[CaptionRecord], n_images: int, min_distinct: int = 3, max_shared_rows: int | None = None
) -> tuple[list[CaptionRecord], list[CaptionRecord]]:
    """(remaining train rows, holdout rows): the first ``n_images`` eligible images by filename hash."""
    caps = distinct_captions(rows)
    shared = shared_rows(rows)
    eligible = sorted(
        (
            f
            for f, c in caps.items()
            if len(c) >= min_distinct and (max_shared_rows is None or shared[f] <= max_shared_rows)
        ),
        key=_hash,
    )
    if len(eligible) < n_images:
        raise ValueError(f"only {len(eligible)} images are eligible for the holdout, {n_images} asked")
    held = set(eligible[:n_images])
    return [r for r in rows if r.filename not in held], [r for r in rows if r.filename in held]


def split_stats(rows: Sequence[CaptionRecord], train_rows: Sequence[CaptionRecord]) -> dict[str, float]:
    """How test-like a split is: images with one distinct caption (%), caption rows verbatim in train (%),
    mean distinct captions per image."""
    caps = distinct_captions(rows)
    train_caps = {normalise_caption(r.caption) for r in train_rows}
    n = max(len(caps), 1)
    return {
        "images": len(caps),
        "rows": len(rows),
        "single_caption_images_pct": round(100.0 * sum(len(c) == 1 for c in caps.values()) / n, 2),
        "rows_verbatim_in_train_pct": round(
            100.0 * sum(normalise_caption(r.caption) in train_caps for r in rows) / max(len(rows), 1), 2
        ),
        "mean_distinct_captions": round(sum(len(c) for c in caps.values()) / n, 3),
    }


class Split:
    """Rows of one split grouped by image, with cached trunk features.

    ``source_rows``: the rows whose files/texts the trunk caches are computed for (default: ``rows``). A holdout
    validation split and the remaining train split both point at the full train split, so they share its cache.
    """

    def __init__(self, rows: list[CaptionRecord], image_root: Path, source_rows: list[CaptionRecord] | None = None):
        self.rows = rows
        self.files = list(dict.fromkeys(r.filename for r in rows))
        pos = {f: i for i, f in enumerate(self.files)}
        self.row_img = np.array([pos[r.filename] for r in rows], dtype=np.int64)
        self.texts = sorted({r.caption for r in rows})  # order-free: noisy variants share the text cache
        tpos = {t: i for i, t in enumerate(self.texts)}
        self.row_txt = np.array([tpos[r.caption] for r in rows], dtype=np.int64)
        self.image_root = image_root
        src = source_rows if source_rows is not None else rows
        self.source_files = list(dict.fromkeys(r.filename for r in src))
        self.source_texts = sorted({r.caption for r in src})

        self.views: list[dict] = []  # image caches of augmentation views (training/augment.py), train only
        self.view_instr_feat: list[torch.Tensor] = []  # their instruction features (set after the scene prior)
        self.words = None  # training.word_targets.WordTask of the auxiliary word task, train only

    @staticmethod
    def _rows_of(cache: dict, source: list[str], own: list[str]) -> dict:
        """The rows of ``own`` from a cache computed over ``source`` (the cache itself when they are the same)."""
        if source == own:
            return cache
        pos = {x: i for i, x in enumerate(source)}
        idx = torch.tensor([pos[x] for x in own])
        return {k: v[idx] for k, v in cache.items()}

    def attach_caches(self, img_cache: dict, txt_cache: dict) -> None:
        """Select this split's images/texts from caches computed over ``source_files`` / ``source_texts``."""
        self.cache = self._rows_of(img_cache, self.source_files, self.files)
        self.tcache = self._rows_of(txt_cache, self.source_texts, self.texts)

    def attach_views(self, view_caches: list[dict]) -> None:
        """Augmentation-view image caches (each over ``source_files``, like the clean one)."""
        self.views = [self._rows_of(c, self.source_files, self.files) for c in view_caches]

    def distinct_caption_rows(self) -> list[np.ndarray]:
        """Per image, its caption rows with distinct texts (first row of each text)."""
        out: list[list[int]] = [[] for _ in self.files]
        seen: set[tuple[int, int]] = set()
        for j, (i, t) in enumerate(zip(self.row_img, self.row_txt, strict=True)):
            if (int(i), int(t)) not in seen:
                seen.add((int(i), int(t)))
                out[int(i)].append(j)
        return [np.array(v, dtype=np.int64) for v in out]


def _spread_subset(rows: list[CaptionRecord], n_images: int, max_rows: int | None) -> list[CaptionRecord]:
    """Rows of ``n_images`` images spread evenly over the file list (covers many classes); at most
    max_rows.
    """
    files = list(dict.fromkeys(r.filename for r in rows))
    step = max(1, len(files) // max(1, n_images))
    keep = set(files[::step][:n_images])
    sub = [r for r in rows if r.filename in keep]
    return sub[:max_rows] if max_rows else sub


def load_splits(cfg: TrainConfig) -> tuple[Split, Split, list[str], object]:
    path = resolve_path(cfg.data_json)
    root = Path(cfg.image_root) if cfg.image_root else path.parent / "images"
    train = resolve_scene_classes(read_dataset(path, (cfg.train_split,)))
    if cfg.max_train_pairs:
        train = _spread_subset(train, max(1, cfg.max_train_pairs // 5), cfg.max_train_pairs)
    source = None
    if cfg.val_holdout_images > 0:
        source = train
        train, val = holdout_split(
            train, cfg.val_holdout_images, cfg.val_holdout_min_captions, cfg.val_holdout_max_shared_rows
        )
    else:
        val = resolve_scene_classes(read_dataset(path, (cfg.val_split,)))
        if cfg.max_val_images:
            val = _spread_subset(val, cfg.max_val_images, None)
    report = None
    if cfg.noise_rate > 0:
        train, report = inject_noise(train, cfg.noise_rate, cfg.noise_seed)
    classes, _ = class_index(train)
    return Split(train, root, source), Split(val, root, source), classes, report
