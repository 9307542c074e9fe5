"""Headless trainer: ``python training/train.py --config training/configs/NAME.yaml [--set k=v ...]
[--resume]``.

Stages: (1) frozen-trunk feature caches, (2) scene-prior classifier on the train split, (3) retrieval training
on cached features with InfoNCE or the RRSITR robust recipe (+ affiliation, HVSA, CHNR hash heads),
validation every epoch (best on val mR), JSONL metrics, plots, checkpoints under ``runs/<name>/``,
(4) optional bundle export of the best checkpoint.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch
from tqdm import tqdm

from training import batching, caption_sampling
from training.checkpoints import checkpoint, save_atomic
from training.config import TrainConfig
from training.data.splits import Split, load_splits
from training.features import d4_augment, embed_cached, image_trunk_cache, load_tokenizer, text_trunk_cache
from training.losses import (
    SelfPacedParams,
    affiliation_loss,
    curriculum_triplet,
    hash_contrastive,
    multi_positive_nce,
    per_pair_nce,
    positive_mask,
    quantization_loss,
    self_paced_loss,
    thresholds,
    uniformity_loss,
    word_loss,
)
from training.metrics import retrieval_metrics
from training.models import build_model, load_model_config
from training.models.minilm import minilm_dir
from training.plots import plot_run
from training.scene_prior import instruction_features, train_scene_classifier
from training.word_targets import word_task

LOG_SCALE_MAX = math.log(100.0)


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def evaluate_split(model, split: Split) -> dict[str, float]:
    img, txt = embed_cached(
        model, split.cache["img_mid"], split.instr_feat, split.tcache["h_mid"], split.tcache["mask"]
    )
    return retrieval_metrics(img, txt[split.row_txt], split.row_img)


def make_optimizer(model, cfg: TrainConfig, total_steps: int):
    bb, head = model.trainable_groups()

    def groups(params, lr):
        decay = [p for p in params if p.ndim >= 2]
        no = [p for p in params if p.ndim < 2]
        return [
            {"params": decay, "lr": lr, "weight_decay": cfg.weight_decay},
            {"params": no, "lr": lr, "weight_decay": 0.0},
        ]

    opt = torch.optim.AdamW(groups(bb, cfg.lr_backbone) + groups(head, cfg.lr_head))
    warm = max(1, int(cfg.warmup_frac * total_steps))

    def lr_lambda(step):
        if step < warm:
            return (step + 1) / warm
        prog = (step - warm) / max(1, total_steps - warm)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, prog)))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda)


def epoch_pairs(train: Split, mode: str, rng: np.random.RandomState) -> np.ndarray:
    """Row indices for one epoch: one random caption row per image, or all rows; shuffled."""
    if mode == "all":
        rows = np.arange(len(train.rows))
    elif mode == "images":
        rows = np.array([rng.choice(v) for v in caption_sampling.rows_by_image(train.row_img)])
    else:
        raise ValueError(f"pairs_per_epoch must be 'images' or 'all', got {mode!r}")
    return rows[rng.permutation(len(rows))]


def image_batches(train: Split, cfg: TrainConfig, labels_img: np.ndarray, rng: np.random.RandomState) -> list:
    """Image indices of each step of one epoch: uniform or class-aware (``class_aware_frac``)."""
    if cfg.class_aware_frac > 0:
        return batching.class_aware_batches(
            labels_img, cfg.batch_size, cfg.class_aware_frac, cfg.class_aware_classes, rng
        )
    return batching.uniform_batches(len(train.files), cfg.batch_size, rng)


def epoch_row_batches(
    train: Split, cfg: TrainConfig, labels_img: np.ndarray, rng: np.random.RandomState, distinct_rows: list
) -> list[np.ndarray]:
    """Caption rows of each step: every distinct caption of the batch's images (``captions_per_image=all``) or one
    random caption per image (class-aware ``one``)."""
    out = []
    for imgs in image_batches(train, cfg, labels_img, rng):
        if cfg.captions_per_image == "all":
            out.append(np.concatenate([distinct_rows[i] for i in imgs]))
        else:
            out.append(np.array([rng.choice(distinct_rows[i]) for i in imgs], dtype=np.int64))
    return out


def division_epoch_pairs(
    model, cfg: TrainConfig, sp: SelfPacedParams, train: Split, rng: np.random.RandomState, corrupted: np.ndarray
) -> tuple[np.ndarray, dict]:
    """Rows of one robust epoch drawn by ``caption_sampling.sample_rows`` after a no-grad division of every
    training row; returns them and the division's counts (+ precision/recall against ``corrupted``).
    """
    t0 = time.time()
    img, txt = embed_cached(
        model, train.cache["img_mid"], train.instr_feat, train.tcache["h_mid"], train.tcache["mask"]
    )
    scale = float(cfg.fixed_logit_scale) if cfg.fixed_logit_scale else float(model.logit_scale.exp())
    return divide_and_sample(img, txt, scale, cfg, sp, train, rng, corrupted, t0)


def divide_and_sample(
    img: np.ndarray, txt: np.ndarray, scale: float, cfg, sp, train, rng, corrupted: np.ndarray, t0: float
) -> tuple[np.ndarray, dict]:
    """The division pass on embedded train rows (PIR-Lite and PIR-ViT): per-row losses in image-once batches,
    chance-relative thresholds, division-guided caption sampling; returns the rows and the division's counts."""
    batches = caption_sampling.slot_batches(train.row_img, cfg.batch_size, rng)
    losses = caption_sampling.row_losses(
        torch.from_numpy(img), torch.from_numpy(txt), train.row_img, train.row_txt, scale, batches
    )
    g1, g2 = thresholds(sp, cfg.batch_size, 2, None)
    group = caption_sampling.divide(losses, g1, g2)
    rows = caption_sampling.sample_rows(train.row_img, group, losses, rng, cfg.sampling_all_noisy)
    info = {
        "clean": int((group == caption_sampling.CLEAN).sum()),
        "ambiguous": int((group == caption_sampling.AMBIGUOUS).sum()),
        "noisy": int((group == caption_sampling.NOISY).sum()),
        "sampled_corrupted_frac": round(float(corrupted[rows].mean()), 4),
        "seconds": round(time.time() - t0, 1),
    }
    info.update(division_pr(group == caption_sampling.NOISY, corrupted))
    return rows, info


def curriculum_and_hash_terms(model, cfg: TrainConfig, img, txt, pos, weights, epoch: int) -> dict:
    """HVSA curriculum triplet and CHNR hash terms of one step (PIR-Lite and PIR-ViT), keyed like the loss log."""
    parts = {}
    if cfg.curriculum_weight > 0:
        beta = cfg.curriculum_beta
        if cfg.curriculum_schedule == "linear":  # easy-to-hard schedule: hard triplets regain weight over time
            beta *= max(0.0, 1.0 - epoch / max(1, cfg.epochs - 1))
        parts["curr"] = cfg.curriculum_weight * curriculum_triplet(img @ txt.t(), pos, cfg.curriculum_margin, beta)
    if model.hash_image is not None and cfg.hash_weight > 0:
        hi, ht = model.hash_image(img.detach()), model.hash_text(txt.detach())
        parts["hash"] = cfg.hash_weight * hash_contrastive(hi, ht, pos, weights) + cfg.hash_quant_weight * (
            quantization_loss(hi) + quantization_loss(ht)
        )
    return parts


class WeightEMA:
    """Exponential moving average of the trained weights (float parameters that require grad + float buffers of
    the trained modules), for evaluation; ``swap_in``/``swap_out`` exchange it with the live weights."""

    def __init__(self, model, decay: float):
        self.decay = decay
        trained = {n for n, p in model.named_parameters() if p.requires_grad}
        sd = model.state_dict()
        self.keys = [k for k in sd if k in trained or (sd[k].is_floating_point() and _is_trained_buffer(k, trained))]
        self.shadow = {k: sd[k].detach().clone() for k in self.keys}

    @torch.no_grad()
    def update(self, model) -> None:
        sd = model.state_dict()
        for k in self.keys:
            self.shadow[k].lerp_(sd[k].detach().to(self.shadow[k].dtype), 1.0 - self.decay)

    @torch.no_grad()
    def swap_in(self, model) -> dict:
        sd = model.state_dict()
        raw = {k: sd[k].detach().clone() for k in self.keys}
        for k in self.keys:
            sd[k].copy_(self.shadow[k])
        return raw

    @torch.no_grad()
    def swap_out(self, model, raw: dict) -> None:
        sd = model.state_dict()
        for k in self.keys:
            sd[k].copy_(raw[k])


def _is_trained_buffer(key: str, trained: set[str]) -> bool:
    """A BatchNorm running statistic whose module has trained parameters."""
    mod = key.rsplit(".", 1)[0]
    return key.endswith(("running_mean", "running_var")) and f"{mod}.weight" in trained


def train_mode(model) -> None:
    """Train mode for the trained parts; the frozen image trunk and scene-prior encoder stay in eval mode."""
    model.train()
    model.image_trunk.eval()
    model.instr.eval()


def warmup_redraw_batch(cfg: TrainConfig, epoch: int, n_batches: int) -> int | None:
    """Batch of the last warm-up epoch at which ``warmup_division_at`` redraws the remaining captions, or None."""
    if not (0 < cfg.warmup_division_at < 1) or cfg.caption_sampling != "division" or cfg.loss != "robust":
        return None
    if epoch != cfg.sp_warmup_epochs - 1:
        return None
    return max(1, min(n_batches - 1, round(cfg.warmup_division_at * n_batches)))


def image_views(train: Split, uimg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cached trunk features and instruction features of images ``uimg``: per image the clean view or one of its
    augmentation views, drawn uniformly (only the clean view when no views are cached)."""
    x = train.cache["img_mid"][uimg].float()
    instr = train.instr_feat[uimg]  # advanced indexing: copies, so the views below write into the copies
    if not train.views:
        return x, instr
    pick = torch.randint(0, len(train.views) + 1, (len(uimg),))
    for v, (cache, feat) in enumerate(zip(train.views, train.view_instr_feat, strict=True), start=1):
        sel = pick == v
        if sel.any():
            x[sel] = cache["img_mid"][uimg[sel]].float()
            instr[sel] = feat[uimg[sel]]
    return x, instr


def batch_loss(
    model,
    cfg: TrainConfig,
    sp: SelfPacedParams,
    train: Split,
    rows: np.ndarray,
    epoch: int,
    labels_row: torch.Tensor,
    quantiles,
) -> tuple[torch.Tensor, dict]:
    img_idx = torch.from_numpy(train.row_img[rows])
    txt_idx = torch.from_numpy(train.row_txt[rows])
    multi = cfg.captions_per_image == "all"
    if multi:  # each image once; ``own`` maps caption rows to it
        uimg, own = torch.unique(img_idx, return_inverse=True)
    else:
        uimg, own = img_idx, None
    x, instr = image_views(train, uimg)
    if cfg.feature_aug:
        x = d4_augment(x)
    x = x.contiguous(memory_format=torch.channels_last)  # ~1.4x faster conv fwd+bwd on CPU
    img_u = model.encode_image_cached(x, instr)
    utxt, tinv = torch.unique(txt_idx, return_inverse=True)  # verbatim-identical captions encoded once
    m = train.tcache["mask"][utxt].long()
    L = int(m.sum(1).max())
    txt = model.encode_text_cached(train.tcache["h_mid"][utxt, :L].float(), m[:, :L])[tinv]
    if cfg.fixed_logit_scale:
        scale = torch.tensor(float(cfg.fixed_logit_scale))
    else:
        scale = model.logit_scale.exp()
    pos = positive_mask(img_idx, txt_idx)  # [rows, rows]: same image or identical caption
    if multi:
        has = torch.zeros(len(uimg), len(utxt), dtype=torch.bool)
        has[own, tinv] = True
        pos_it = has[:, tinv]  # [images, rows]: own captions and identical captions of other images
        l_i2t, l_t2i, sim = multi_positive_nce(img_u, txt, own, pos_it, scale)
        n_neg = (~pos_it).sum(1).float().mean()
        eff_batch = max(2, round(math.sqrt(len(uimg) * (float(n_neg) + 1))))  # chance = ln B + ln(1 + negatives)
        img = img_u[own]
    else:
        pos_it = pos
        l_i2t, l_t2i, sim = per_pair_nce(img_u, txt, scale, pos)
        eff_batch = len(rows)
        img = img_u
    per = l_i2t + l_t2i
    g1, g2 = thresholds(sp, eff_batch, 2, quantiles)
    robust = cfg.loss == "robust" and epoch >= cfg.sp_warmup_epochs
    sp_loss, info = self_paced_loss(per, sim, pos_it, g1, g2, sp, own)
    parts = {}
    if robust:
        parts["main"] = sp_loss
        weights = info["weight"]
    else:
        parts["main"] = 0.5 * per.mean()
        weights = None
    labels = labels_row[torch.from_numpy(rows)]
    if cfg.aff_weight > 0:
        parts["aff"] = cfg.aff_weight * affiliation_loss(img, txt, labels, scale, weights, cfg.aff_mode)
    if cfg.uniformity_weight > 0:
        first = np.unique(train.row_img[rows], return_index=True)[1]
        parts["unif"] = cfg.uniformity_weight * uniformity_loss(img[torch.from_numpy(first)], cfg.uniformity_t)
    parts.update(curriculum_and_hash_terms(model, cfg, img, txt, pos, weights, epoch))
    words = train.words
    if cfg.word_weight > 0 and words is not None:  # the auxiliary word task (training/word_targets.py)
        wm = words.mask.long()
        n = int(wm.sum(1).max())
        wemb = model.encode_text_cached(words.h_mid[:, :n].float(), wm[:, :n])
        parts["word"] = cfg.word_weight * word_loss(img_u, wemb, words.targets[uimg], scale)
    total = sum(parts.values())
    stats = {k: float(v.detach()) for k, v in parts.items()}
    stats.update(
        per_pair=per.detach(),
        group=info["group"],
        weight=info["weight"] if robust else torch.ones_like(per),
        g1=g1,
        g2=g2,
    )
    return total, stats


def division_pr(pred_noisy: np.ndarray, corrupted: np.ndarray) -> dict[str, float]:
    tp = int((pred_noisy & corrupted).sum())
    return {
        "noisy_precision": tp / max(int(pred_noisy.sum()), 1),
        "noisy_recall": tp / max(int(corrupted.sum()), 1),
        "pred_noisy_frac": float(pred_noisy.mean()) if pred_noisy.size else 0.0,
    }


@dataclass
class EpochContext:
    """What every epoch of a run uses (model, optimiser, data, labels); built once by :func:`run`."""

    model: object
    cfg: TrainConfig
    sp: SelfPacedParams
    train: Split
    opt: torch.optim.Optimizer
    sched: object
    ema: WeightEMA | None
    labels_img: np.ndarray
    labels_row: torch.Tensor
    distinct_rows: list
    corrupted: np.ndarray
    log: object


@dataclass
class EpochResult:
    """One epoch's bookkeeping: per-row losses / division groups / weights of the rows seen, loss sums."""

    n_batches: int
    loss_sums: dict
    last_stats: dict
    full_division: dict | None
    rows: np.ndarray
    per_pair: np.ndarray
    group: np.ndarray
    weight: np.ndarray


def train_one_epoch(ctx: EpochContext, ep: int, rng: np.random.RandomState, quantiles) -> EpochResult:
    """Draw the epoch's rows (uniform, division-guided, oracle or image batches) and take its optimiser steps."""
    model, cfg, sp, train, opt, sched, ema = ctx.model, ctx.cfg, ctx.sp, ctx.train, ctx.opt, ctx.sched, ctx.ema
    corrupted, log = ctx.corrupted, ctx.log
    batched = cfg.captions_per_image == "all" or cfg.class_aware_frac > 0
    full_div = None
    if cfg.caption_sampling == "division" and cfg.loss == "robust" and ep >= cfg.sp_warmup_epochs:
        rows_all, full_div = division_epoch_pairs(model, cfg, sp, train, rng, corrupted)
        log(f"epoch {ep + 1}: full-pass division {json.dumps(full_div)}")
    elif cfg.caption_sampling == "oracle":  # analysis only: the injected noise's ground truth
        truth = np.where(corrupted, caption_sampling.NOISY, caption_sampling.CLEAN)
        rows_all = caption_sampling.sample_rows(train.row_img, truth, corrupted.astype(np.float32), rng)
    elif batched:
        row_batches = epoch_row_batches(train, cfg, ctx.labels_img, rng, ctx.distinct_rows)
    else:
        rows_all = epoch_pairs(train, cfg.pairs_per_epoch, rng)
    train_mode(model)
    nb = len(row_batches) if batched else max(1, len(rows_all) // cfg.batch_size)
    sums: dict[str, float] = {}
    seen, pl, grp, wts = [], [], [], []
    bar = tqdm(range(nb), desc=f"epoch {ep + 1}/{cfg.epochs}", mininterval=10, file=sys.stderr)
    redraw_at = warmup_redraw_batch(cfg, ep, nb)
    for b in bar:
        if b == redraw_at:  # part-way through the warm-up: the images still to come get the division's caption
            drawn, full_div = division_epoch_pairs(model, cfg, sp, train, rng, corrupted)
            full_div["at_batch"] = b
            rows_all = caption_sampling.redraw_tail(rows_all, b * cfg.batch_size, drawn, train.row_img)
            log(f"epoch {ep + 1}, batch {b}: warm-up division {json.dumps(full_div)}")
            train_mode(model)  # the division pass left the model in eval mode
        if batched:
            rows = row_batches[b]
        else:
            rows = rows_all[b * cfg.batch_size : (b + 1) * cfg.batch_size] if nb > 1 else rows_all
        loss, st = batch_loss(model, cfg, sp, train, rows, ep, ctx.labels_row, quantiles)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], cfg.grad_clip)
        opt.step()
        sched.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, LOG_SCALE_MAX)
        if ema is not None:
            ema.update(model)
        for k in ("main", "aff", "unif", "curr", "hash", "word"):
            if k in st:
                sums[k] = sums.get(k, 0.0) + st[k]
        seen.append(rows)
        pl.append(st["per_pair"].numpy())
        grp.append(st["group"].numpy())
        wts.append(st["weight"].numpy())
        bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
    rows_seen, per_pair, group, weight = map(np.concatenate, (seen, pl, grp, wts))
    return EpochResult(nb, sums, st, full_div, rows_seen, per_pair, group, weight)


def run(cfg: TrainConfig, resume: bool = False, log_file=None) -> Path:
    """Train per ``cfg``; returns the run directory (``best.pt``, ``last.pt``, ``metrics.jsonl``, plots,
    bundle).
    """
    from training.vit_train import is_vit_config, run_vit  # PIR-ViT end to end (issue 19)

    if is_vit_config(cfg):
        return run_vit(cfg, resume=resume, log_file=log_file)
    if cfg.caption_sampling not in ("uniform", "division", "oracle"):
        raise ValueError(f"caption_sampling must be 'uniform', 'division' or 'oracle', got {cfg.caption_sampling!r}")
    if not 0 <= cfg.warmup_division_at < 1:
        raise ValueError(f"warmup_division_at must be in [0, 1), got {cfg.warmup_division_at}")
    if cfg.caption_sampling != "uniform" and cfg.pairs_per_epoch != "images":
        raise ValueError(f"caption_sampling={cfg.caption_sampling} needs pairs_per_epoch=images")
    if cfg.captions_per_image not in ("one", "all"):
        raise ValueError(f"captions_per_image must be 'one' or 'all', got {cfg.captions_per_image!r}")
    batched = cfg.captions_per_image == "all" or cfg.class_aware_frac > 0
    if batched and (cfg.pairs_per_epoch != "images" or cfg.caption_sampling != "uniform"):
        raise ValueError("captions_per_image=all / class-aware batches need pairs_per_epoch=images, uniform sampling")
    if not 0 <= cfg.class_aware_frac <= 1:
        raise ValueError(f"class_aware_frac must be in [0, 1], got {cfg.class_aware_frac}")
    torch.set_num_threads(cfg.num_threads)
    seed_all(cfg.seed)
    run_dir = Path(cfg.out_dir) / cfg.name
    run_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.time()

    def log(msg: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        print(line, file=log_file or sys.stderr, flush=True)

    (run_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    train, val, classes, noise = load_splits(cfg)
    log(
        f"train {len(train.rows)} pairs / {len(train.files)} images; val {len(val.files)} images; "
        f"{len(classes)} classes"
    )
    if noise is not None:
        log(f"noise: nominal {noise.rate:.2f}, effective {noise.effective_rate:.4f}")
    mcfg = load_model_config(cfg.model_config, {**cfg.model, "n_scene_classes": len(classes)})
    model = build_model(mcfg)
    cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else None
    t0 = time.time()
    tok = load_tokenizer(minilm_dir() / "tokenizer.json", model.cfg.context_length)
    computed: dict[tuple, tuple[dict, dict]] = {}  # a holdout val shares the train split's caches
    for s, nm in ((train, "train"), (val, "val")):
        key = (tuple(s.source_files), tuple(s.source_texts))
        if key not in computed:
            computed[key] = (
                image_trunk_cache(model, s.image_root, s.source_files, cache_dir, desc=f"{nm} image cache"),
                text_trunk_cache(model, tok, s.source_texts, cache_dir, desc=f"{nm} text cache"),
            )
        s.attach_caches(*computed[key])
    del computed
    if cfg.image_aug_views:
        aug = cfg.image_aug_params()
        views = [
            image_trunk_cache(
                model,
                train.image_root,
                train.source_files,
                cache_dir,
                desc=f"train image view {v}",
                view=v,
                aug=aug,
                aug_seed=cfg.image_aug_seed,
            )
            for v in range(1, cfg.image_aug_views + 1)
        ]
        train.attach_views(views)
        del views
    if cfg.word_weight > 0:
        train.words = word_task(model, tok, train, cfg.word_params(), cache_dir)
        (run_dir / "words.json").write_text(json.dumps(train.words.vocab))
        per_image = float(train.words.targets.sum(1).float().mean())
        log(f"word task: {len(train.words.vocab)} words, {per_image:.1f} per train image")
    log(f"feature caches ready in {time.time() - t0:.0f}s")

    labels_img = torch.full((len(train.files),), -1, dtype=torch.long)
    cpos = {c: i for i, c in enumerate(classes)}
    for r, im in zip(train.rows, train.row_img, strict=True):
        labels_img[im] = cpos[r.scene_class]
    labels_row = labels_img[torch.from_numpy(train.row_img)]
    distinct_rows = train.distinct_caption_rows()

    ckpt_last = run_dir / "last.pt"
    state = {"epoch": 0, "best_mr": -1.0, "history": [], "scene": None, "quantiles": None}
    opt_state, ck = None, {}
    if resume and ckpt_last.exists():
        # our own checkpoint: trusted, so full unpickling is allowed
        ck = torch.load(ckpt_last, map_location="cpu", weights_only=False)  # nosec B614
        model.load_state_dict(ck["state_dict"])
        state = ck["state"]
        opt_state = ck.get("optimizer")
        log(f"resumed from {ckpt_last} at epoch {state['epoch']}")
    if state["scene"] is None:
        t0 = time.time()
        state["scene"] = train_scene_classifier(model, cfg, train, val, classes, labels_img, log)
        state["scene"]["seconds"] = round(time.time() - t0, 1)
        # epoch-0 checkpoint: a resumed run (or training.sweep --scene-from) skips the classifier
        save_atomic(checkpoint(model, cfg, classes, state), ckpt_last)
    for s in (train, val):
        s.instr_feat = instruction_features(model, s.cache["instr_mid"])
    train.view_instr_feat = [instruction_features(model, v["instr_mid"]) for v in train.views]
    ema = WeightEMA(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
    if ema is not None and "ema" in ck:  # ck: the checkpoint resumed from, {} for a new run
        ema.shadow = ck["ema"]

    model.image_top.to(memory_format=torch.channels_last)
    steps_per_epoch = max(
        1, (len(train.files) if cfg.pairs_per_epoch == "images" else len(train.rows)) // cfg.batch_size
    )
    opt, sched = make_optimizer(model, cfg, steps_per_epoch * cfg.epochs)
    if opt_state is not None:
        opt.load_state_dict(opt_state["opt"])
        sched.load_state_dict(opt_state["sched"])
    sp = SelfPacedParams(
        cfg.gamma1, cfg.gamma2, cfg.threshold_mode, cfg.q1, cfg.q2, cfg.lambda1, cfg.lambda2, cfg.sigma0
    )
    corrupted = noise.corrupted if noise is not None else np.zeros(len(train.rows), dtype=bool)
    metrics_path = run_dir / "metrics.jsonl"
    last_weights = None
    ctx = EpochContext(
        model, cfg, sp, train, opt, sched, ema, labels_img.numpy(), labels_row, distinct_rows, corrupted, log
    )
    rng = np.random.RandomState(cfg.seed + 1000 * state["epoch"])
    # torch's stream (augmentation, dropout) restarts here too, so a run resumed from the epoch-0 checkpoint
    # (training.sweep --scene-from, or a reused scene prior) trains like one that built its scene prior itself
    torch.manual_seed(cfg.seed + 1000 * state["epoch"] + 1)
    while state["epoch"] < cfg.epochs:
        ep = state["epoch"]
        t0 = time.time()
        ep_out = train_one_epoch(ctx, ep, rng, state["quantiles"])
        nb, sums, st, full_div = ep_out.n_batches, ep_out.loss_sums, ep_out.last_stats, ep_out.full_division
        seen_a, pl_a, grp_a, w_a = ep_out.rows, ep_out.per_pair, ep_out.group, ep_out.weight
        state["quantiles"] = (float(np.quantile(pl_a, cfg.q1)), float(np.quantile(pl_a, cfg.q2)))
        train_s = time.time() - t0
        vm = evaluate_split(model, val)
        use_ema = False
        if ema is not None:  # evaluate the EMA weights too; the better one on val is this epoch's candidate
            raw = ema.swap_in(model)
            vm_ema = evaluate_split(model, val)
            use_ema = vm_ema["mr"] > vm["mr"]
            if not use_ema:
                ema.swap_out(model, raw)
            vm = {**(vm_ema if use_ema else vm), "mr_raw": vm["mr"], "mr_ema": vm_ema["mr"]}
        rec = {
            "epoch": ep + 1,
            "train_seconds": round(train_s, 1),
            "eval_seconds": round(time.time() - t0 - train_s, 1),
            "logit_scale": round(float(model.logit_scale.exp()), 3),
            "g1": st["g1"],
            "g2": st["g2"],
            "lr": sched.get_last_lr()[0],
        }
        rec.update({f"loss_{k}": v / nb for k, v in sums.items()})
        rec.update({f"val_{k}": v for k, v in vm.items()})
        corr = corrupted[seen_a]
        rec["division"] = {
            "clean": int((grp_a == 0).sum()),
            "ambiguous": int((grp_a == 1).sum()),
            "noisy": int((grp_a == 2).sum()),
        }
        if noise is not None:
            rec.update(division_pr(grp_a == 2, corr))
            rec["seen_corrupted_frac"] = round(float(corr.mean()), 4)
        if full_div is not None:
            rec["full_division"] = full_div
        last_weights = {"weight": w_a, "per_pair": pl_a, "corrupted": corr}
        state["epoch"] = ep + 1
        state["history"].append(rec)
        with open(metrics_path, "a") as fh:
            fh.write(json.dumps(rec) + "\n")
        log(f"epoch {ep + 1}: val mR {vm['mr']:.2f} ({json.dumps(vm)}), train {train_s:.0f}s")
        if vm["mr"] > state["best_mr"]:
            state["best_mr"] = vm["mr"]
            state["best_epoch"] = ep + 1
            state["best_weights"] = "ema" if use_ema else "raw"
            save_atomic(checkpoint(model, cfg, classes, state), run_dir / "best.pt")  # the weights just evaluated
        if use_ema:
            ema.swap_out(model, raw)
        ck = checkpoint(model, cfg, classes, state)
        ck["optimizer"] = {"opt": opt.state_dict(), "sched": sched.state_dict()}
        if ema is not None:
            ck["ema"] = ema.shadow
        save_atomic(ck, ckpt_last)
        plot_run(run_dir, state["history"], last_weights)
    summary = {
        "best_val_mr": state["best_mr"],
        "best_epoch": state.get("best_epoch"),
        "scene": state["scene"],
        "seconds": round(time.time() - t_start, 1),
        "noise_effective_rate": noise.effective_rate if noise is not None else 0.0,
    }
    if cfg.export:
        from training.export import export_bundle

        out = Path(cfg.export_dir) if cfg.export_dir else run_dir / "bundle"
        export_bundle(run_dir / "best.pt", out, training_config=cfg.name, version=cfg.version, log=log)
        summary["bundle"] = str(out)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    log(f"done: {json.dumps(summary)}")
    return run_dir


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--set", action="append", nargs="+", default=[], metavar="KEY=VALUE", help="override config keys")
    ap.add_argument("--resume", action="store_true", help="continue from runs/<name>/last.pt")
    ap.add_argument("--device", help="PIR-ViT: auto (default), cpu, cuda or cuda:N (= --set vit.device=...)")
    args = ap.parse_args(argv)
    try:
        cfg = TrainConfig.load(args.config, [kv for group in args.set for kv in group])
    except (ValueError, OSError) as e:
        print(f"train.py: {e}", file=sys.stderr)
        return 2
    from training.vit_options import ViTConfigError  # PIR-ViT (issue 19): bad values / checkpoints, one line

    if args.device:
        cfg.vit["device"] = args.device
    try:
        run(cfg, resume=args.resume)
    except ViTConfigError as e:
        print(f"train.py: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
