"""Scene prior: MobileNetV2's top blocks + a linear head fine-tuned as a scene classifier on the train split only,
then frozen; its pooled feature is PIR-Lite's instruction."""

from __future__ import annotations

import math

import torch
from tqdm import tqdm

from training.config import TrainConfig
from training.data.splits import Split
from training.features import d4_augment


def train_scene_classifier(
    model, cfg: TrainConfig, train: Split, val: Split, classes: list[str], img_labels: torch.Tensor, log
) -> dict:
    """Fine-tune MobileNetV2's top blocks + head as a scene classifier (train split only), then freeze."""
    sc = model.instr
    params = list(sc.top.parameters()) + list(sc.head.parameters())
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=cfg.scene_lr, weight_decay=1e-4)
    n = len(train.files)
    steps = max(1, cfg.scene_epochs * math.ceil(n / cfg.scene_batch))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.scene_lr, total_steps=steps, pct_start=0.1)
    mids = train.cache["instr_mid"]
    sc.top.to(memory_format=torch.channels_last)
    for ep in range(cfg.scene_epochs):
        sc.train()
        perm = torch.randperm(n)
        tot, correct = 0.0, 0
        for i in tqdm(range(0, n, cfg.scene_batch), desc=f"scene {ep + 1}/{cfg.scene_epochs}", mininterval=10):
            idx = perm[i : i + cfg.scene_batch]
            x = mids[idx].float()
            if cfg.feature_aug:
                x = d4_augment(x)
            x = x.contiguous(memory_format=torch.channels_last)
            logits = sc.head(sc.pooled_from_trunk(x))
            loss = torch.nn.functional.cross_entropy(logits, img_labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == img_labels[idx]).sum())
        log(f"scene epoch {ep + 1}: loss {tot / n:.3f} train acc {correct / n:.3f}")
    for p in params:
        p.requires_grad_(False)
    sc.eval()
    out = {"scene_train_acc": correct / max(n, 1)}
    vpos = {c: i for i, c in enumerate(classes)}
    vlab = []
    for f in val.files:
        r = next(r for r in val.rows if r.filename == f)
        vlab.append(vpos.get(r.scene_class, -1))
    vlab = torch.tensor(vlab)
    with torch.no_grad():
        pred = torch.cat(
            [
                sc.head(sc.pooled_from_trunk(val.cache["instr_mid"][i : i + 256].float())).argmax(1)
                for i in range(0, len(val.files), 256)
            ]
        )
    ok = vlab >= 0
    out["scene_val_acc"] = float((pred[ok] == vlab[ok]).float().mean()) if ok.any() else float("nan")
    log(f"scene classifier: val acc {out['scene_val_acc']:.3f}")
    return out


@torch.no_grad()
def instruction_features(model, mids: torch.Tensor, batch: int = 256) -> torch.Tensor:
    model.instr.eval()
    return torch.cat([model.instruction_feature(mids[i : i + batch].float()) for i in range(0, len(mids), batch)])
