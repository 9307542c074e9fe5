"""End-to-end PIR-ViT training (issue 19): ``python training/train.py --config training/configs/pir_vit_b32.yaml
--set model.checkpoint=CLIP.pt [--device auto]`` (several GPUs: ``torchrun --nproc_per_node=N training/train.py
...``).

Stages: (1) the model from the user's checkpoint (PIR-CLIP / RemoteCLIP / GeoRSCLIP / OpenAI layouts, the family's
activation applied) or random init for ``model.open_clip=<arch>``; (2) the scene prior: the instruction encoder
+ a linear head trained on the scene classes of the train split, then frozen (``vit.freeze_instruction``);
(3) retrieval training on pixels with PIR-Lite's recipe (InfoNCE or RRSITR robust, affiliation, HVSA, CHNR hash
heads, uniform/division/oracle caption sampling, noise injection), bf16/fp16 autocast, exact gradient
accumulation and DDP (``training/vit_step.py``), layer-wise lr decay, samples/s logged, validation every epoch
(best on val mR), resumable ``last.pt``; (4) export of the best checkpoint as fp32 and fp16 bundles.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from training import caption_sampling
from training.checkpoints import checkpoint, save_atomic
from training.config import TrainConfig
from training.data.splits import Split, load_splits
from training.features import d4_augment
from training.losses import SelfPacedParams
from training.metrics import retrieval_metrics
from training.models import load_model_config
from training.vit_data import ImageFiles, clip_token_ids, image_batches
from training.vit_optim import make_optimizer
from training.vit_options import (
    Dist,
    ViTConfigError,
    ViTOptions,
    init_distributed,
    resolve_device,
    resolve_precision,
)
from training.vit_step import LOG_SCALE_MAX, LOSS_KEYS, Towers, _autocast, backward_step, retrieval_loss

INIT_KEYS = ("checkpoint", "checkpoint_kind", "open_clip", "quick_gelu")


def is_vit_config(cfg: TrainConfig) -> bool:
    """True when ``cfg`` trains a PIR-ViT (its model config's architecture, or ``model.open_clip`` set)."""
    if "open_clip" in cfg.model or "checkpoint" in cfg.model:
        return True
    try:
        arch = load_model_config(cfg.model_config).get("architecture", "")
    except OSError:
        return False
    return str(arch).startswith("PIR-ViT")


def model_config_for(cfg: TrainConfig, n_classes: int) -> tuple[dict, dict]:
    """(PIR-ViT model config, init options {checkpoint, checkpoint_kind, quick_gelu}) from the run config."""
    from training.models.clip_init import open_clip_model_config

    over = dict(cfg.model)
    init = {k: over.pop(k) for k in INIT_KEYS if k in over}
    over.pop("n_scene_classes", None)
    try:
        base = load_model_config(cfg.model_config)
    except OSError as exc:
        raise ViTConfigError(f"model_config {cfg.model_config!r}: {exc}") from None
    if init.get("open_clip"):
        base.update(open_clip_model_config(str(init["open_clip"])))
    base.update(over)
    if base.get("vocab_size") != 49408 or base.get("context_length") != 77:
        raise ViTConfigError("PIR-ViT trains with the CLIP BPE: vocab_size 49408 and context_length 77")
    return base, init


def build_vit(cfg: TrainConfig, n_classes: int, log):
    from training.models.clip_init import build_initialised

    try:
        mcfg, init = model_config_for(cfg, n_classes)
        model, report = build_initialised(
            mcfg, init.get("checkpoint"), init.get("checkpoint_kind", "auto"), init.get("quick_gelu")
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ViTConfigError(f"model: {exc}") from None
    src = report.checkpoint or f"random init ({model.cfg.open_clip or model.cfg.architecture})"
    log(
        f"model {model.cfg.architecture}: {report.kind} from {src}, activation {report.activation}, "
        f"{report.loaded} tensors loaded, {len(report.missing)} initialised here"
    )
    return model, report


class SceneHead(nn.Module):
    """Instruction encoder + linear scene classifier (the scene prior; the head is not exported)."""

    def __init__(self, model, n_classes: int):
        super().__init__()
        self.enc = model.res_visual
        self.head = nn.Linear(model.cfg.embed_dim, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.enc(x))


def split_labels(split: Split, classes: list[str]) -> torch.Tensor:
    pos = {c: i for i, c in enumerate(classes)}
    lab = torch.full((len(split.files),), -1, dtype=torch.long)
    for r, im in zip(split.rows, split.row_img, strict=True):
        lab[im] = pos.get(r.scene_class, -1)
    return lab


def train_scene_prior(model, cfg, opts, data: dict, classes, device, dtype, log) -> dict:
    """Train the instruction encoder + a head on the train split's scene classes; val accuracy; freeze."""
    net = SceneHead(model, len(classes)).to(device)
    for p in net.parameters():
        p.requires_grad_(True)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.scene_lr, weight_decay=1e-4)
    lab = data["labels_img"]
    idx = torch.nonzero(lab >= 0).flatten().numpy()
    steps = max(1, cfg.scene_epochs * int(np.ceil(len(idx) / cfg.scene_batch)))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.scene_lr, total_steps=steps, pct_start=0.1)
    acc = 0.0
    for ep in range(cfg.scene_epochs):
        net.train()
        perm = idx[torch.randperm(len(idx)).numpy()]
        batches = [perm[i : i + cfg.scene_batch] for i in range(0, len(perm), cfg.scene_batch)]
        correct, tot = 0, 0.0
        for b, x in zip(
            batches, image_batches(data["train_ds"], batches, opts.workers, device.type == "cuda"), strict=True
        ):
            x = x.to(device, non_blocking=True)
            if opts.augment == "d4":
                x = d4_augment(x)
            y = lab[b].to(device)
            with _autocast(device, dtype):
                logits = net(x)
            loss = nn.functional.cross_entropy(logits.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss.detach()) * len(b)
            correct += int((logits.argmax(1) == y).sum())
        acc = correct / max(len(idx), 1)
        log(f"scene epoch {ep + 1}: loss {tot / max(len(idx), 1):.3f} train acc {acc:.3f}")
    net.eval()
    vlab = data["labels_val"]
    vb = [np.arange(i, min(i + opts.eval_batch, len(vlab))) for i in range(0, len(vlab), opts.eval_batch)]
    preds = []
    with torch.no_grad():
        for x in image_batches(data["val_ds"], vb, opts.workers, device.type == "cuda"):
            with _autocast(device, dtype):
                preds.append(net(x.to(device)).argmax(1).cpu())
    pred = torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long)
    ok = vlab >= 0
    val_acc = float((pred[ok] == vlab[ok]).float().mean()) if ok.any() else float("nan")
    log(f"scene prior: val acc {val_acc:.3f}")
    return {"scene_train_acc": acc, "scene_val_acc": val_acc}


def set_trainable(model, opts: ViTOptions) -> None:
    for p in model.parameters():
        p.requires_grad_(True)
    frozen = []
    if opts.freeze_instruction:
        frozen.append(model.res_visual)
    if opts.freeze_text:
        frozen += [model.token_embedding, model.transformer, model.ln_final]
        model.positional_embedding.requires_grad_(False)
        model.text_projection.requires_grad_(False)
    for m in frozen:
        for p in m.parameters():
            p.requires_grad_(False)


def train_mode(model, opts: ViTOptions) -> None:
    model.train()
    if opts.freeze_instruction:
        model.res_visual.eval()  # frozen BatchNorm statistics


@torch.no_grad()
def instruction_tokens(model, ds: ImageFiles, opts, device, dtype) -> torch.Tensor:
    """[N,1,W] instruction tokens of every image (frozen encoder, no augmentation) on ``device``."""
    model.eval()
    out = []
    batches = [np.arange(i, min(i + opts.eval_batch, len(ds))) for i in range(0, len(ds), opts.eval_batch)]
    for x in image_batches(ds, batches, opts.workers, device.type == "cuda"):
        with _autocast(device, dtype):
            out.append(model.instruction_token(x.to(device)).float())
    return torch.cat(out)


@torch.no_grad()
def embed_split(model, ds: ImageFiles, tokens: torch.Tensor, opts, device, dtype) -> tuple[np.ndarray, np.ndarray]:
    """(image embeddings [N,D], text embeddings [U,D]) in eval mode, fp32 numpy."""
    model.eval()
    img, txt = [], []
    batches = [np.arange(i, min(i + opts.eval_batch, len(ds))) for i in range(0, len(ds), opts.eval_batch)]
    for x in image_batches(ds, batches, opts.workers, device.type == "cuda"):
        with _autocast(device, dtype):
            img.append(model.encode_image(x.to(device)).float().cpu())
    for i in range(0, len(tokens), opts.eval_batch):
        with _autocast(device, dtype):
            txt.append(model.encode_text(tokens[i : i + opts.eval_batch].to(device), normalize=True).float().cpu())
    return torch.cat(img).numpy(), torch.cat(txt).numpy()


def division_rows(model, cfg, sp, train: Split, data, opts, device, dtype, rng, corrupted) -> tuple[np.ndarray, dict]:
    """Rows of one robust epoch drawn after a no-grad division of every train row (``caption_sampling``)."""
    from training.train import divide_and_sample

    t0 = time.time()
    img, txt = embed_split(model, data["train_ds"], data["train_tokens"], opts, device, dtype)
    scale = float(cfg.fixed_logit_scale) if cfg.fixed_logit_scale else float(model.logit_scale.detach().exp())
    return divide_and_sample(img, txt, scale, cfg, sp, train, rng, corrupted, t0)


def epoch_rows(model, cfg, sp, train, data, opts, device, dtype, rng, corrupted, ep, log) -> tuple[np.ndarray, dict]:
    from training.train import epoch_pairs

    if cfg.caption_sampling == "division" and cfg.loss == "robust" and ep >= cfg.sp_warmup_epochs:
        rows, info = division_rows(model, cfg, sp, train, data, opts, device, dtype, rng, corrupted)
        log(f"epoch {ep + 1}: full-pass division {json.dumps(info)}")
        return rows, info
    if cfg.caption_sampling == "oracle":
        truth = np.where(corrupted, caption_sampling.NOISY, caption_sampling.CLEAN)
        return caption_sampling.sample_rows(train.row_img, truth, corrupted.astype(np.float32), rng), None
    return epoch_pairs(train, cfg.pairs_per_epoch, rng), None


def check_config(cfg: TrainConfig, world: int, opts: ViTOptions) -> None:
    if cfg.captions_per_image != "one" or cfg.class_aware_frac > 0:
        raise ViTConfigError("PIR-ViT trains one caption per row: captions_per_image=one, class_aware_frac=0")
    if cfg.caption_sampling not in ("uniform", "division", "oracle"):
        raise ViTConfigError(f"caption_sampling must be uniform, division or oracle, got {cfg.caption_sampling!r}")
    if cfg.caption_sampling != "uniform" and cfg.pairs_per_epoch != "images":
        raise ViTConfigError(f"caption_sampling={cfg.caption_sampling} needs pairs_per_epoch=images")
    if cfg.batch_size % (world * opts.accum_steps):
        raise ViTConfigError(
            f"batch_size {cfg.batch_size} must be a multiple of processes x vit.accum_steps "
            f"({world * opts.accum_steps})"
        )


def run_vit(cfg: TrainConfig, resume: bool = False, log_file=None) -> Path:
    """Train a PIR-ViT per ``cfg``; returns the run directory (``best.pt``, ``last.pt``, ``metrics.jsonl``,
    ``summary.json``, bundles)."""
    opts = ViTOptions.from_dict(cfg.vit)
    device = resolve_device(opts.device)
    dist_ = init_distributed(device.type)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dtype = resolve_precision(opts.precision, device)
    check_config(cfg, dist_.world, opts)
    ckpt = cfg.model.get("checkpoint")
    if ckpt and not Path(str(ckpt)).expanduser().is_file():  # before minutes of data loading
        raise ViTConfigError(f"model.checkpoint: no such file {ckpt}")
    torch.set_num_threads(cfg.num_threads)
    from training.train import seed_all

    seed_all(cfg.seed)
    run_dir = Path(cfg.out_dir) / cfg.name
    run_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.time()

    def log(msg: str) -> None:
        if dist_.main:
            print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=log_file or sys.stderr, flush=True)

    if dist_.main:
        (run_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    train, val, classes, noise = load_splits(cfg)
    log(
        f"train {len(train.rows)} pairs / {len(train.files)} images; val {len(val.files)} images; "
        f"{len(classes)} classes; device {device}, {str(dtype)[6:]}, {dist_.world} process(es), "
        f"accum {opts.accum_steps}"
    )
    model, init_report = build_vit(cfg, len(classes), log)
    mc = model.cfg
    tok_json = run_dir / "clip_tokenizer.json"
    if dist_.main and not tok_json.exists():
        from training.models.clip_tokenizer import write_clip_tokenizer_json

        write_clip_tokenizer_json(tok_json)
    _barrier(dist_)
    data = {
        "train_ds": ImageFiles(train.image_root, train.files, mc.image_size, mc.mean, mc.std),
        "val_ds": ImageFiles(val.image_root, val.files, mc.image_size, mc.mean, mc.std),
        "train_tokens": clip_token_ids(train.texts, tok_json, mc.context_length),
        "val_tokens": clip_token_ids(val.texts, tok_json, mc.context_length),
        "labels_img": split_labels(train, classes),
        "labels_val": split_labels(val, classes),
    }
    labels_row = data["labels_img"][torch.from_numpy(train.row_img)]
    model.to(device)

    ckpt_last = run_dir / "last.pt"
    state = {
        "epoch": 0,
        "best_mr": -1.0,
        "history": [],
        "scene": None,
        "quantiles": None,
        "init": init_report.to_dict(),
        "step": 0,
    }
    ck = None
    if resume and ckpt_last.exists():
        ck = torch.load(ckpt_last, map_location="cpu", weights_only=False)  # nosec B614 - our own checkpoint
        model.load_state_dict(ck["state_dict"])
        state = ck["state"]
        log(f"resumed from {ckpt_last} at epoch {state['epoch']}")
    if state["scene"] is None:
        t0 = time.time()
        state["scene"] = train_scene_prior(model, cfg, opts, data, classes, device, dtype, log)
        state["scene"]["seconds"] = round(time.time() - t0, 1)
        if dist_.main:
            save_atomic(checkpoint(model, cfg, classes, state), ckpt_last)
    set_trainable(model, opts)
    instr = instruction_tokens(model, data["train_ds"], opts, device, dtype) if opts.instr_cache else None

    towers = Towers(model)
    if dist_.world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        loss_side = [f"m.{n}" for n, _ in model.named_parameters() if n.startswith(("logit_scale", "hash_"))]
        loss_side += [f"m.{n}" for n, _ in model.named_buffers() if n.startswith("hash_")]
        DDP._set_params_and_buffers_to_ignore_for_model(towers, loss_side)
        towers = DDP(towers, device_ids=[device.index] if device.type == "cuda" else None)
        for t in [p for n, p in model.named_parameters() if n.startswith(("logit_scale", "hash_"))]:
            torch.distributed.broadcast(t.data, 0)

    n_rows = len(train.files) if cfg.pairs_per_epoch == "images" else len(train.rows)
    steps_per_epoch = max(1, n_rows // cfg.batch_size)
    if opts.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, opts.max_steps_per_epoch)
    opt, sched = make_optimizer(model, cfg, opts, steps_per_epoch * cfg.epochs)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    if ck is not None and "optimizer" in ck:
        opt.load_state_dict(ck["optimizer"]["opt"])
        sched.load_state_dict(ck["optimizer"]["sched"])
        scaler.load_state_dict(ck["optimizer"]["scaler"])
    sp = SelfPacedParams(
        cfg.gamma1, cfg.gamma2, cfg.threshold_mode, cfg.q1, cfg.q2, cfg.lambda1, cfg.lambda2, cfg.sigma0
    )
    corrupted = noise.corrupted if noise is not None else np.zeros(len(train.rows), dtype=bool)
    local = cfg.batch_size // dist_.world
    while state["epoch"] < cfg.epochs:
        ep = state["epoch"]
        rng = np.random.RandomState(cfg.seed + 1000 * ep)
        torch.manual_seed(cfg.seed + 1000 * ep + 1 + dist_.rank)
        rows_all, full_div = epoch_rows(model, cfg, sp, train, data, opts, device, dtype, rng, corrupted, ep, log)
        nb = min(steps_per_epoch, max(1, len(rows_all) // cfg.batch_size))
        step_rows = [rows_all[b * cfg.batch_size : (b + 1) * cfg.batch_size] for b in range(nb)]
        own_imgs = [train.row_img[r[dist_.rank * local : (dist_.rank + 1) * local]] for r in step_rows]
        loader = image_batches(data["train_ds"], own_imgs, opts.workers, device.type == "cuda")
        train_mode(model, opts)
        t0 = time.time()
        sums: dict[str, float] = {}
        seen, pl, grp, wts = [], [], [], []
        st = {}
        tick, tick_n = time.time(), 0
        for b, (rows, x) in enumerate(zip(step_rows, loader, strict=True)):
            x = x.to(device, non_blocking=True)
            if opts.augment == "d4":
                x = d4_augment(x)
            own = rows[dist_.rank * local : (dist_.rank + 1) * local]
            toks = data["train_tokens"][torch.from_numpy(train.row_txt[own])].to(device, non_blocking=True)
            y = instr[torch.from_numpy(train.row_img[own]).to(instr.device)] if instr is not None else None
            img_idx = torch.from_numpy(train.row_img[rows])
            txt_idx = torch.from_numpy(train.row_txt[rows])
            labels = labels_row[torch.from_numpy(rows)]

            def loss_fn(ei, et, img_idx=img_idx, txt_idx=txt_idx, labels=labels, ep=ep):
                return retrieval_loss(model, cfg, sp, ei, et, img_idx, txt_idx, labels, ep, state["quantiles"])

            opt.zero_grad(set_to_none=True)
            loss, st = backward_step(
                towers, loss_fn, x, toks, y, opts.accum_steps, dtype, scaler, dist_.rank, dist_.world
            )
            if cfg.grad_clip:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], cfg.grad_clip)
            scaler.step(opt)
            scaler.update()
            sched.step()
            state["step"] += 1
            with torch.no_grad():
                model.logit_scale.clamp_(0, LOG_SCALE_MAX)
            for k in LOSS_KEYS:
                if k in st:
                    sums[k] = sums.get(k, 0.0) + st[k]
            seen.append(rows)
            pl.append(st["per_pair"].numpy())
            grp.append(st["group"].numpy())
            wts.append(st["weight"].numpy())
            tick_n += len(rows)
            if opts.log_every and (b + 1) % opts.log_every == 0:
                log(
                    f"epoch {ep + 1} step {b + 1}/{nb}: loss {float(loss):.3f}, "
                    f"{tick_n / max(time.time() - tick, 1e-9):.1f} samples/s"
                )
                tick, tick_n = time.time(), 0
        train_s = time.time() - t0
        seen_a, pl_a, grp_a = np.concatenate(seen), np.concatenate(pl), np.concatenate(grp)
        state["quantiles"] = (float(np.quantile(pl_a, cfg.q1)), float(np.quantile(pl_a, cfg.q2)))
        vm = {}
        if dist_.main:
            img, txt = embed_split(model, data["val_ds"], data["val_tokens"], opts, device, dtype)
            vm = retrieval_metrics(img, txt[val.row_txt], val.row_img)
        rec = {
            "epoch": ep + 1,
            "steps": nb,
            "train_seconds": round(train_s, 2),
            "samples_per_s": round(nb * cfg.batch_size / max(train_s, 1e-9), 2),
            "eval_seconds": round(time.time() - t0 - train_s, 2),
            "logit_scale": round(float(model.logit_scale.detach().exp()), 3),
            "g1": st["g1"],
            "g2": st["g2"],
            "lr": sched.get_last_lr()[0],
            "device": str(device),
            "precision": str(dtype)[6:],
            "world_size": dist_.world,
            "accum_steps": opts.accum_steps,
        }
        rec.update({f"loss_{k}": v / nb for k, v in sums.items()})
        rec.update({f"val_{k}": v for k, v in vm.items()})
        rec["division"] = {
            "clean": int((grp_a == 0).sum()),
            "ambiguous": int((grp_a == 1).sum()),
            "noisy": int((grp_a == 2).sum()),
        }
        if noise is not None:
            from training.train import division_pr

            rec.update(division_pr(grp_a == 2, corrupted[seen_a]))
        if full_div is not None:
            rec["full_division"] = full_div
        state["epoch"] = ep + 1
        state["history"].append(rec)
        if dist_.main:
            with open(run_dir / "metrics.jsonl", "a") as fh:
                fh.write(json.dumps(rec) + "\n")
            log(f"epoch {ep + 1}: val mR {vm['mr']:.2f}, train {train_s:.1f}s, {rec['samples_per_s']} samples/s")
            if vm["mr"] > state["best_mr"]:
                state["best_mr"], state["best_epoch"] = vm["mr"], ep + 1
                save_atomic(checkpoint(model, cfg, classes, state), run_dir / "best.pt")
            ck_out = checkpoint(model, cfg, classes, state)
            ck_out["optimizer"] = {"opt": opt.state_dict(), "sched": sched.state_dict(), "scaler": scaler.state_dict()}
            save_atomic(ck_out, ckpt_last)
        _barrier(dist_)
    summary = {
        "best_val_mr": state["best_mr"],
        "best_epoch": state.get("best_epoch"),
        "scene": state["scene"],
        "init": state["init"],
        "activation": "quick_gelu" if mc.quick_gelu else "gelu",
        "seconds": round(time.time() - t_start, 1),
        "noise_effective_rate": noise.effective_rate if noise is not None else 0.0,
    }
    if dist_.main:  # written before the export too, so a failed export leaves the run's summary
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    if dist_.main and cfg.export and (run_dir / "best.pt").exists():
        from training.vit_export import export_vit_bundles

        out = Path(cfg.export_dir) if cfg.export_dir else run_dir / "bundle"
        summary["bundles"] = export_vit_bundles(run_dir / "best.pt", out, cfg, opts, val, log=log)
    if dist_.main:
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        log(f"done: {json.dumps(summary, default=str)}")
    if dist_.world > 1:
        _barrier(dist_)  # the others wait for rank 0's export
        torch.distributed.destroy_process_group()
    return run_dir


def _barrier(d: Dist) -> None:
    if d.world > 1:
        torch.distributed.barrier()
