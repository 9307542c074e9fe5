"""Probe: WiSE-FT (pretrained <-> fine-tuned interpolation of the trained trunk parts) and soups, fp32 checkpoint path.

usage: soup_wise.py OUT.json SPLIT(holdout|test) CKPT[,CKPT2...]@ALPHA ...   (soup of the listed checkpoints, then
trunk interpolation towards pretrained with weight ALPHA on the fine-tuned side; ALPHA=1: no interpolation)
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, ".")
from training.config import TrainConfig
from training.evaluate import evaluate_model, load_eval_set
from training.models import build_model
from training.train import load_splits

torch.set_num_threads(int(__import__("os").environ.get("THREADS", "2")))
out, split = sys.argv[1], sys.argv[2]
cfg = TrainConfig.load("training/configs/pir_lite_v8.yaml")
if split == "holdout":
    _, val, _, _ = load_splits(cfg)
    paths = [val.image_root / f for f in val.files]
    caps = [r.caption for r in val.rows]
    t2i = np.asarray(val.row_img)
else:
    paths, caps, t2i = load_eval_set(cfg.data_json, "test")
TRUNK = ("image_top.", "text.layers.")
pre_cache = {}


def pretrained(mc):
    key = json.dumps(mc, sort_keys=True)
    if key not in pre_cache:
        torch.manual_seed(0)
        pre_cache[key] = build_model({**mc, "pretrained": True}).state_dict()
    return pre_cache[key]


res = {}
for spec in sys.argv[3:]:
    cks, alpha = spec.split("@")
    alpha = float(alpha)
    loaded = [torch.load(c, map_location="cpu", weights_only=False) for c in cks.split(",")]
    mc = dict(loaded[0]["model_config"])
    pre = pretrained(mc)
    sd = {}
    for k, v in loaded[0]["state_dict"].items():
        if torch.is_floating_point(v):
            v = sum(c["state_dict"][k] for c in loaded) / len(loaded)
            if alpha != 1 and k.startswith(TRUNK) and "running_" not in k:
                v = alpha * v + (1 - alpha) * pre[k]
        sd[k] = v
    model = build_model({**mc, "pretrained": False})
    model.load_state_dict(sd)
    model.eval()
    m = {k: round(float(v), 2) for k, v in evaluate_model(model, paths, caps, t2i).items()}
    res[spec] = m
    print(split, spec, m, flush=True)
    Path(out).write_text(json.dumps(res, indent=1))
