"""Noisy-correspondence / ablation sweep with one shortened schedule for every row (issue 6).

``python -m training.sweep --scene-from runs/pir_lite_r1/best.pt --epochs 2 --row a_0.4 --row b_0.4 ...``

Every row starts from the same initial weights: the model is built with the run's seed, and the frozen scene-prior
classifier (trained on the clean train split's *image class labels* only, which caption noise does not touch) is
copied from ``--scene-from`` so the rows do not each spend ~8 CPU minutes retraining the identical classifier. The
seed checkpoint is written as ``runs/<name>/last.pt`` (epoch 0) and ``train.py --resume`` trains from it.
After training, the best-on-val checkpoint is evaluated on the test split from cached frozen-trunk features
(fp16 cache in ``runs/cache``, same as val during training) and one JSON per row is written to ``--out``.

Rows: ``a_<rate>`` = plain InfoNCE, no affiliation loss, same model (CLIP-FT-style baseline), ``b_<rate>`` =
robust recipe (config default), ``r_<rate>`` = robust recipe v2 (b + division-guided caption sampling,
``training/caption_sampling.py``), ``rf_<rate>`` = r with all-noisy images replaced, ``oracle_<rate>`` = b on
the truly intact captions only (analysis: the ceiling of any division), ``nobelief_<rate>``, ``nopae_<rate>``,
``nopir_<rate>``, ``noaff_<rate>``, ``nosp_<rate>`` = robust recipe without soft belief / Spatial-PAE / both /
affiliation loss / self-paced weighting (``loss=infonce`` keeps affiliation + PIR components); ``rnopir_<rate>``,
``rnoaff_<rate>`` = the same ablations of r; ``rw_<rate>`` = r plus a division pass half-way through the warm-up.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from training.config import TrainConfig, resolve_path  # noqa: E402

VARIANTS = {
    "a": ["loss=infonce", "aff_weight=0"],  # plain InfoNCE on the same model (CLIP-FT-style baseline)
    "b": [],
    "r": ["caption_sampling=division"],  # robust recipe v2: b + division-guided caption sampling
    "rw": ["caption_sampling=division", "warmup_division_at=0.5"],  # r + a division pass half-way through warm-up
    "rf": ["caption_sampling=division", "sampling_all_noisy=replace"],  # r; all-noisy images replaced
    "oracle": ["caption_sampling=oracle"],  # analysis only: b trained on the truly clean captions (the ceiling)
    "nobelief": ["model.use_belief=false"],
    "nopae": ["model.use_spatial_pae=false"],
    "nopir": ["model.use_belief=false", "model.use_spatial_pae=false"],  # issue 6 ablation: no belief/Spatial-PAE
    "noaff": ["aff_weight=0"],
    "rnopir": ["caption_sampling=division", "model.use_belief=false", "model.use_spatial_pae=false"],  # r - PIR
    "rnoaff": ["caption_sampling=division", "aff_weight=0"],  # r without affiliation loss
    "nosp": ["loss=infonce"],  # robust recipe minus self-paced weighting/robust triplet: InfoNCE + aff + PIR
}


def row_overrides(row: str, epochs: int, extra: list[str], tag: str = "") -> tuple[str, list[str]]:
    """Run name and config overrides of one row; ``tag`` separates schedules (``_e4``: a 4-epoch series)."""
    kind, _, rate = row.rpartition("_")
    if kind not in VARIANTS:
        raise ValueError(f"unknown row {row!r}")
    name = f"sweep_{kind}_n{rate}{tag}"
    sets = [f"name={name}", f"epochs={epochs}", f"noise_rate={float(rate)}", "export=false", *VARIANTS[kind], *extra]
    return name, sets


def write_seed(cfg: TrainConfig, scene_ckpt: Path, run_dir: Path) -> None:
    """Fresh model (seed cfg.seed) + the scene classifier of ``scene_ckpt`` as an epoch-0 ``last.pt``."""
    from training.checkpoints import checkpoint, save_atomic
    from training.models import build_model, load_model_config
    from training.train import load_splits, seed_all

    seed_all(cfg.seed)
    _, _, classes, _ = load_splits(cfg)
    mcfg = load_model_config(cfg.model_config, {**cfg.model, "n_scene_classes": len(classes)})
    model = build_model(mcfg)
    # our own checkpoint: trusted, so full unpickling is allowed
    src = torch.load(scene_ckpt, map_location="cpu", weights_only=False)  # nosec B614
    if list(src["classes"]) != list(classes):
        raise RuntimeError("scene classes differ from the source checkpoint")
    sd = model.state_dict()
    n = 0
    for k, v in src["state_dict"].items():
        if k.startswith("instr."):
            sd[k] = v.clone()
            n += 1
    model.load_state_dict(sd)
    scene = dict(src["state"]["scene"] or {})
    scene["reused_from"] = str(scene_ckpt)
    run_dir.mkdir(parents=True, exist_ok=True)
    state = {"epoch": 0, "best_mr": -1.0, "history": [], "scene": scene, "quantiles": None}
    save_atomic(checkpoint(model, cfg, classes, state), run_dir / "last.pt")
    print(f"seed checkpoint: {n} scene-classifier tensors from {scene_ckpt}", flush=True)


@torch.no_grad()
def embed_split(model, s, tok, cache_dir: Path | None, name: str) -> tuple:
    """(image embeddings, unique-caption embeddings) of split ``s`` from the frozen-trunk caches (computed once)."""
    from training.features import embed_cached, image_trunk_cache, text_trunk_cache
    from training.scene_prior import instruction_features

    s.attach_caches(
        image_trunk_cache(model, s.image_root, s.source_files, cache_dir, desc=f"{name} image cache"),
        text_trunk_cache(model, tok, s.source_texts, cache_dir, desc=f"{name} text cache"),
    )
    s.instr_feat = instruction_features(model, s.cache["instr_mid"])
    return embed_cached(model, s.cache["img_mid"], s.instr_feat, s.tcache["h_mid"], s.tcache["mask"])


@torch.no_grad()
def test_metrics_cached(ckpt: Path, cache_dir: str = "runs/cache", split: str = "test") -> dict:
    """Retrieval metrics of a checkpoint on ``split`` from the frozen-trunk caches (computed once)."""
    from training.checkpoints import load_checkpoint_model
    from training.data.readers import read_dataset
    from training.data.splits import Split
    from training.features import load_tokenizer
    from training.metrics import retrieval_metrics
    from training.models.minilm import minilm_dir

    torch.set_num_threads(2)
    model, ck = load_checkpoint_model(ckpt)
    model.cfg.pretrained = True  # same cache key as the training caches (the trunks are the frozen ImageNet ones)
    tc = ck["train_config"]
    path = resolve_path(tc["data_json"])
    s = Split(read_dataset(path, (split,)), path.parent / "images")
    tok = load_tokenizer(minilm_dir() / "tokenizer.json", model.cfg.context_length)
    img, txt = embed_split(model, s, tok, Path(cache_dir), split)
    return retrieval_metrics(img, txt[s.row_txt], s.row_img)


def summarize(run_dir: Path) -> dict:
    hist = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    best = max(hist, key=lambda h: h["val_mr"])
    out = {
        "best_epoch": best["epoch"],
        "best_val_mr": best["val_mr"],
        "train_seconds_wall": round(sum(h["train_seconds"] + h["eval_seconds"] for h in hist), 1),
        "epochs": [
            {
                k: h.get(k)
                for k in (
                    "epoch",
                    "val_mr",
                    "loss_main",
                    "division",
                    "noisy_precision",
                    "noisy_recall",
                    "pred_noisy_frac",
                    "full_division",
                )
                if k in h
            }
            for h in hist
        ],
    }
    last = hist[-1]
    if "noisy_precision" in last:
        out["division_last_epoch"] = {
            "noisy_precision": round(last["noisy_precision"], 4),
            "noisy_recall": round(last["noisy_recall"], 4),
            "pred_noisy_frac": round(last["pred_noisy_frac"], 4),
        }
    return out


def run_row(row: str, args) -> dict:
    name, sets = row_overrides(row, args.epochs, args.set, args.tag)
    cfg = TrainConfig.load(args.config, sets)
    run_dir = Path(cfg.out_dir) / cfg.name
    outp = Path(args.out) / f"{name}.json"
    if outp.exists() and not args.force:
        print(f"{row}: {outp} exists, skipped", flush=True)
        return json.loads(outp.read_text())
    if run_dir.exists() and (run_dir / "metrics.jsonl").exists() and args.force:
        import shutil

        shutil.rmtree(run_dir)
    mpath = run_dir / "metrics.jsonl"
    start_epoch = len(mpath.read_text().splitlines()) if mpath.exists() else 0  # > 0: resumed run
    done = start_epoch >= args.epochs
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    if not done:
        if not (run_dir / "last.pt").exists():
            write_seed(cfg, Path(args.scene_from), run_dir)
        cmd = [sys.executable, "training/train.py", "--config", args.config, "--resume"]
        for s in sets:
            cmd += ["--set", s]
        print(" ".join(cmd), flush=True)
        with open(run_dir / "stdout.log", "a") as fh:
            subprocess.run(cmd, check=True, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.time() - t0
    test = test_metrics_cached(run_dir / "best.pt", cfg.cache_dir or "runs/cache")
    rec = {
        "row": row,
        "run": name,
        "noise_rate": cfg.noise_rate,
        "overrides": sets,
        "command": f"python -m training.sweep --config {args.config} --scene-from {args.scene_from} "
        f"--epochs {args.epochs} --row {row}" + (f" --tag {args.tag}" if args.tag else ""),
        "epochs_schedule": args.epochs,
        "test": {k: round(float(v), 2) for k, v in test.items()},
        "cpu_seconds": round((r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime), 1),
        "wall_seconds": round(wall, 1),
        "resumed_at_epoch": start_epoch,  # cpu/wall seconds cover only the epochs after this one
        **summarize(run_dir),
    }
    outp.parent.mkdir(parents=True, exist_ok=True)
    outp.write_text(json.dumps(rec, indent=2))
    print(f"{row}: test mR {rec['test']['mr']:.2f} (val {rec['best_val_mr']:.2f}) -> {outp}", flush=True)
    return rec


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="training/configs/pir_lite.yaml")
    ap.add_argument("--scene-from", required=True, help="checkpoint whose scene classifier every row reuses")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--row", action="append", required=True, help="a_0.4, b_0.6, noaff_0.0, ...")
    ap.add_argument("--set", action="append", default=[], help="extra override for every row")
    ap.add_argument("--tag", default="", help="suffix of run names and JSONs for another schedule, e.g. _e4")
    ap.add_argument("--out", default="docs/results/noise")
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args(argv)
    for row in args.row:
        try:
            run_row(row, args)
        except Exception as e:  # keep going: one failed row must not lose the others
            print(f"{row}: FAILED {type(e).__name__}: {e}", flush=True)
    _ = np
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
