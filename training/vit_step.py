"""One PIR-ViT optimiser step: the loss recipe on a batch of embeddings and the gradient-cached step that makes
gradient accumulation and DDP exact for a contrastive loss.

Contrastive losses couple every pair of the batch, so summing micro-batch losses would change the loss. With
``accum_steps > 1`` or several processes the step (1) embeds each micro-batch without gradients, (2) gathers the
embeddings of all processes, (3) computes the loss of the *whole* global batch on leaf copies and back-propagates
to them, then (4) re-embeds each micro-batch with gradients and back-propagates the cached embedding gradients
(the GradCache scheme, as open_clip's ``--accum-freq``). The gradient equals that of one big batch.
"""

from __future__ import annotations

import math
from contextlib import nullcontext

import numpy as np
import torch
from torch import nn

from training.losses import (
    SelfPacedParams,
    affiliation_loss,
    per_pair_nce,
    positive_mask,
    self_paced_loss,
    thresholds,
    uniformity_loss,
)
from training.train import curriculum_and_hash_terms

LOG_SCALE_MAX = math.log(100.0)
LOSS_KEYS = ("main", "aff", "unif", "curr", "hash")


class Towers(nn.Module):
    """The two encoders as one module (what DDP wraps): (image embeddings, text embeddings), L2-normalised."""

    def __init__(self, model):
        super().__init__()
        self.m = model

    def forward(self, images: torch.Tensor, tokens: torch.Tensor, instr: torch.Tensor | None = None):
        if instr is None:
            img = self.m.encode_image(images)
        else:
            img = self.m.encode_image_with_instruction(images, instr)
        return img, self.m.encode_text(tokens, normalize=True)


def retrieval_loss(
    model,
    cfg,
    sp: SelfPacedParams,
    img: torch.Tensor,
    txt: torch.Tensor,
    img_idx: torch.Tensor,
    txt_idx: torch.Tensor,
    labels: torch.Tensor,
    epoch: int,
    quantiles,
) -> tuple[torch.Tensor, dict]:
    """PIR-Lite's recipe on fp32 embeddings of one batch (one caption per row): InfoNCE or RRSITR self-paced +
    robust triplet after the warm-up, affiliation, uniformity, HVSA curriculum triplet, CHNR hash heads."""
    if cfg.fixed_logit_scale:
        scale = torch.tensor(float(cfg.fixed_logit_scale), device=img.device)
    else:
        scale = model.logit_scale.exp().float()
    pos = positive_mask(img_idx, txt_idx).to(img.device)
    l_i2t, l_t2i, sim = per_pair_nce(img, txt, scale, pos)
    per = l_i2t + l_t2i
    g1, g2 = thresholds(sp, len(img), 2, quantiles)
    robust = cfg.loss == "robust" and epoch >= cfg.sp_warmup_epochs
    sp_loss, info = self_paced_loss(per, sim, pos, g1, g2, sp, None)
    parts = {"main": sp_loss if robust else 0.5 * per.mean()}
    weights = info["weight"] if robust else None
    if cfg.aff_weight > 0:
        parts["aff"] = cfg.aff_weight * affiliation_loss(img, txt, labels.to(img.device), scale, weights, cfg.aff_mode)
    if cfg.uniformity_weight > 0:
        first = np.unique(img_idx.numpy(), return_index=True)[1]
        parts["unif"] = cfg.uniformity_weight * uniformity_loss(img[torch.from_numpy(first)], cfg.uniformity_t)
    parts.update(curriculum_and_hash_terms(model, cfg, img, txt, pos, weights, epoch))
    total = sum(parts.values())
    stats = {k: float(v.detach()) for k, v in parts.items()}
    stats.update(
        per_pair=per.detach().cpu(),
        group=info["group"].cpu(),
        weight=(info["weight"] if robust else torch.ones_like(per)).detach().cpu(),
        g1=g1,
        g2=g2,
    )
    return total, stats


def _autocast(device: torch.device, dtype: torch.dtype):
    if dtype == torch.float32:
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def _gather(x: torch.Tensor, world: int) -> torch.Tensor:
    if world == 1:
        return x
    import torch.distributed as dist

    out = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(out, x.contiguous())
    return torch.cat(out)


def backward_step(
    towers: nn.Module,
    loss_fn,
    images: torch.Tensor,
    tokens: torch.Tensor,
    instr: torch.Tensor | None,
    accum_steps: int,
    dtype: torch.dtype,
    scaler,
    rank: int = 0,
    world: int = 1,
) -> tuple[torch.Tensor, dict]:
    """Accumulate the gradient of ``loss_fn(global image emb, global text emb)`` for this process's share of the
    batch (``images``/``tokens``/``instr``); returns (loss, stats). The caller steps the optimiser."""
    device = images.device
    n = images.shape[0]
    if accum_steps == 1 and world == 1:  # plain step
        with _autocast(device, dtype):
            ei, et = towers(images, tokens, instr)
        loss, stats = loss_fn(ei.float(), et.float())
        scaler.scale(loss).backward()
        return loss.detach(), stats
    bounds = np.linspace(0, n, accum_steps + 1).astype(int)
    chunks = [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]

    def part(t, a, b):
        return None if t is None else t[a:b]

    with torch.no_grad(), _autocast(device, dtype):  # (1) embeddings without graphs
        embs = [towers(images[a:b], tokens[a:b], part(instr, a, b)) for a, b in chunks]
    ei = torch.cat([e[0].float() for e in embs])
    et = torch.cat([e[1].float() for e in embs])
    gi = _gather(ei, world).requires_grad_(True)  # (2) the global batch, rank order
    gt = _gather(et, world).requires_grad_(True)
    loss, stats = loss_fn(gi, gt)  # (3) the loss of the whole batch
    scaler.scale(loss).backward()
    # DDP averages parameter gradients over processes; each process holds only its own embeddings' share
    gi_own = gi.grad[rank * n : (rank + 1) * n] * world
    gt_own = gt.grad[rank * n : (rank + 1) * n] * world
    for k, (a, b) in enumerate(chunks):  # (4) re-embed with graphs, push the cached gradients through
        sync = nullcontext() if (world == 1 or k == len(chunks) - 1) else towers.no_sync()
        with sync:
            with _autocast(device, dtype):
                ci, ct = towers(images[a:b], tokens[a:b], part(instr, a, b))
            torch.autograd.backward([ci.float(), ct.float()], [gi_own[a:b], gt_own[a:b]])
    return loss.detach(), stats
