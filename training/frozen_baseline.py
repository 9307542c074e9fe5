"""Reference baseline of issue 6: frozen ImageNet image features + frozen MiniLM sentence embeddings, only two
linear projection heads (and the temperature) trained with symmetric multi-positive InfoNCE.

    python -m training.frozen_baseline [--config training/configs/frozen_baseline.yaml] [--json OUT]

Image feature: EfficientNet-Lite0 (ImageNet) global-average-pooled 1280-d penultimate feature (blocks 0-4 from
the shared fp16 cache, blocks 5-6 + head run once here, frozen). Text feature: all-MiniLM-L6-v2 mean-pooled
384-d sentence embedding (layers 0-3 from the cache, 4-5 frozen). Same data/splits/protocol as PIR-Lite: train
on train, select the epoch on val mR, report test.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from training.config import TrainConfig, resolve_path  # noqa: E402


@torch.no_grad()
def frozen_features(model, split, batch: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    from training.models.minilm import mean_pool

    model.eval()
    im = []
    for i in range(0, len(split.files), batch):
        x = split.cache["img_mid"][i : i + batch].float().contiguous(memory_format=torch.channels_last)
        im.append(model.image_top(x).mean((2, 3)))
    tx = []
    fl = model.cfg.text_freeze_layers
    for i in range(0, len(split.texts), 256):
        m = split.tcache["mask"][i : i + 256].long()
        L = int(m.sum(1).max())
        h = model.text.run_layers(split.tcache["h_mid"][i : i + 256, :L].float(), m[:, :L], fl, None)
        tx.append(mean_pool(h, m[:, :L]))
    return torch.cat(im), torch.cat(tx)


def main(argv: list[str] | None = None) -> int:
    from training.data.readers import read_dataset
    from training.data.splits import Split, load_splits
    from training.features import image_trunk_cache, load_tokenizer, text_trunk_cache
    from training.losses import per_pair_nce, positive_mask
    from training.metrics import retrieval_metrics
    from training.models import build_model, load_model_config
    from training.models.minilm import minilm_dir
    from training.train import seed_all

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="training/configs/frozen_baseline.yaml")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--json", default="docs/results/frozen_baseline.json")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    cfg = TrainConfig.load(args.config, args.set)
    torch.set_num_threads(args.threads)
    seed_all(cfg.seed)
    t0 = time.time()
    cpu0 = time.process_time()
    train, val, classes, _ = load_splits(cfg)
    model = build_model(load_model_config(cfg.model_config, {**cfg.model, "n_scene_classes": len(classes)}))
    path = resolve_path(cfg.data_json)
    test = Split(read_dataset(path, ("test",)), path.parent / "images")
    tok = load_tokenizer(minilm_dir() / "tokenizer.json", model.cfg.context_length)
    cache = Path(cfg.cache_dir)
    feats = {}
    for s, nm in ((train, "train"), (val, "val"), (test, "test")):
        s.cache = image_trunk_cache(model, s.image_root, s.files, cache, desc=f"{nm} image cache")
        s.tcache = text_trunk_cache(model, tok, s.texts, cache, desc=f"{nm} text cache")
        feats[nm] = frozen_features(model, s)
        print(f"{nm}: frozen features {tuple(feats[nm][0].shape)} {tuple(feats[nm][1].shape)}", flush=True)
    d = model.cfg.embed_dim
    pi = torch.nn.Linear(feats["train"][0].shape[1], d)
    pt = torch.nn.Linear(feats["train"][1].shape[1], d)
    log_scale = torch.nn.Parameter(torch.tensor(2.6592))
    params = list(pi.parameters()) + list(pt.parameters()) + [log_scale]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=cfg.weight_decay)
    n_rows = len(train.rows)
    steps = args.epochs * (n_rows // cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=steps, pct_start=0.05)

    def embed(nm):
        with torch.no_grad():
            return F.normalize(pi(feats[nm][0]), dim=-1).numpy(), F.normalize(pt(feats[nm][1]), dim=-1).numpy()

    def evaluate(nm, s):
        i, t = embed(nm)
        return retrieval_metrics(i, t[s.row_txt], s.row_img)

    rng = np.random.RandomState(cfg.seed)
    best = (-1.0, None, None)
    hist = []
    fi, ft = feats["train"]
    for ep in range(args.epochs):
        perm = rng.permutation(n_rows)  # every caption row once per epoch
        for b in range(n_rows // cfg.batch_size):
            rows = perm[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            ii = torch.from_numpy(train.row_img[rows])
            tt = torch.from_numpy(train.row_txt[rows])
            img = F.normalize(pi(fi[ii]), dim=-1)
            txt = F.normalize(pt(ft[tt]), dim=-1)
            l1, l2, _ = per_pair_nce(img, txt, log_scale.clamp(0, np.log(100.0)).exp(), positive_mask(ii, tt))
            loss = 0.5 * (l1.mean() + l2.mean())
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        vm = evaluate("val", val)
        hist.append({"epoch": ep + 1, "loss": round(float(loss.detach()), 4), "val_mr": vm["mr"]})
        print(
            f"epoch {ep + 1}: loss {float(loss.detach()):.3f} val mR {vm['mr']:.2f} ({time.time() - t0:.0f}s)",
            flush=True,
        )
        if vm["mr"] > best[0]:
            sd = {
                **{"i." + k: v for k, v in pi.state_dict().items()},
                **{"t." + k: v for k, v in pt.state_dict().items()},
            }
            best = (vm["mr"], ep + 1, {k: v.detach().clone() for k, v in sd.items()})
    pi.load_state_dict({k[2:]: v for k, v in best[2].items() if k.startswith("i.")})
    pt.load_state_dict({k[2:]: v for k, v in best[2].items() if k.startswith("t.")})
    tm = evaluate("test", test)
    res = {
        "model": "frozen EfficientNet-Lite0 (ImageNet) GAP 1280-d + frozen all-MiniLM-L6-v2 mean-pooled 384-d; "
        "only two linear projections to 256-d + temperature trained (InfoNCE, multi-positive)",
        "command": f"python -m training.frozen_baseline --config {args.config} --epochs {args.epochs} --lr {args.lr}",
        "epochs": args.epochs,
        "best_epoch": best[1],
        "best_val_mr": best[0],
        "test": tm,
        "cpu_seconds": round(time.process_time() - cpu0, 1),
        "wall_seconds": round(time.time() - t0, 1),
        "history": hist,
    }
    print(json.dumps({k: v for k, v in res.items() if k != "history"}))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
