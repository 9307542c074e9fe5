"""AdamW parameter groups for PIR-ViT: layer-wise learning-rate decay over both transformer towers, PIR-CLIP's
weight-decay rule, new parts (instruction projection, hash heads, logit scale) at ``lr_head``; warm-up + cosine."""

from __future__ import annotations

import math
import re

import torch

_NO_DECAY = re.compile(r"(^|\.)(bn\d*|ln\w*|bias|logit_scale)(\.|$)")
HEAD_PREFIXES = ("res_visual.", "vision_proj_res.", "hash_image.", "hash_text.", "logit_scale")


def layer_id(name: str, vision_layers: int, text_layers: int) -> tuple[int, int]:
    """(depth of parameter ``name`` in its tower, tower's top depth): embeddings 0, block i -> i + 1, final
    norm / projection top = layers + 1."""
    m = re.match(r"(visual\.)?transformer\.resblocks\.(\d+)\.", name)
    top = vision_layers + 1 if name.startswith("visual.") else text_layers + 1
    if m:
        return int(m.group(2)) + 1, top
    if name.startswith(("visual.conv1", "visual.class_embedding", "visual.positional_embedding", "visual.ln_pre")):
        return 0, top
    if name.startswith(("token_embedding", "positional_embedding")):
        return 0, top
    return top, top  # visual.ln_post, visual.proj, ln_final, text_projection


def param_groups(model, lr_backbone: float, lr_head: float, weight_decay: float, layer_decay: float) -> list[dict]:
    """One group per (lr, weight decay) pair; only parameters that require grad. No decay for 1-d tensors and
    names with bn/ln/bias/logit_scale (PIR-CLIP's fork)."""
    groups: dict[tuple[float, float], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name.startswith(HEAD_PREFIXES):
            lr = lr_head
        else:
            depth, top = layer_id(name, model.cfg.vision_layers, model.cfg.text_layers)
            lr = lr_backbone * layer_decay ** (top - depth)
        wd = 0.0 if p.ndim < 2 or _NO_DECAY.search(name) else weight_decay
        g = groups.setdefault((lr, wd), {"params": [], "names": [], "lr": lr, "weight_decay": wd})
        g["params"].append(p)
        g["names"].append(name)
    return list(groups.values())


def make_optimizer(model, cfg, opts, total_steps: int):
    """AdamW (``opts.betas``, ``opts.eps``) + linear warm-up over ``cfg.warmup_frac`` of the steps, then
    cosine to 0."""
    groups = param_groups(model, cfg.lr_backbone, cfg.lr_head, cfg.weight_decay, opts.layer_decay)
    opt = torch.optim.AdamW(
        [{k: v for k, v in g.items() if k != "names"} for g in groups], betas=tuple(opts.betas), eps=opts.eps
    )
    warm = max(1, int(cfg.warmup_frac * total_steps))

    def lr_lambda(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        prog = (step - warm) / max(1, total_steps - warm)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, prog)))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda)
