"""Cost of one PIR-ViT training sample, measured: ``python -m training.vit_cost [--arch pir_vit_b_32]
[--device cpu] [--batch 2] [--precision bf16]``.

Prints JSON: parameters (all / trained), training FLOPs per sample (forward + backward of both towers, forward
of the frozen instruction encoder; ``torch.utils.flop_counter``), bytes of the activations autograd saves per
sample under the given autocast precision (slope between batch B and 2B; the intercept is the weights and their
autocast copies), and the measured samples/s of forward + backward on ``device``. The
GPU estimates of docs/training.md are derived from these numbers.
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def measure(arch: str = "pir_vit_b_32", device: str = "cpu", batch: int = 2, precision: str = "bf16", reps: int = 2):
    from torch.utils.flop_counter import FlopCounterMode

    from training.models import build_model, load_model_config
    from training.vit_step import Towers, _autocast

    dev = torch.device(device)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    torch.manual_seed(0)
    model = build_model(load_model_config(arch)).to(dev)
    for p in model.res_visual.parameters():  # the default recipe: instruction encoder frozen after the scene prior
        p.requires_grad_(False)
    model.train()
    model.res_visual.eval()
    towers = Towers(model)
    S, L = model.cfg.image_size, model.cfg.context_length
    x = torch.randn(batch, 3, S, S, device=dev)
    toks = torch.randint(1, 49000, (batch, L), device=dev)
    toks[:, 30] = 49407

    def step():
        with _autocast(dev, dtype):
            i, t = towers(x, toks)
        ((i.float() @ t.float().t()).logsumexp(1).mean()).backward()

    with FlopCounterMode(display=False) as fc:
        step()

    def saved_bytes(n: int) -> int:
        """Bytes autograd saves for a forward of ``n`` samples (storages counted once)."""
        seen: dict[int, int] = {}

        def pack(t):
            st = t.untyped_storage()
            seen[st.data_ptr()] = st.nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), _autocast(dev, dtype):
            out = towers(x[:1].expand(n, -1, -1, -1).contiguous(), toks[:1].expand(n, -1).contiguous())
        del out
        return sum(seen.values())

    with FlopCounterMode(display=False) as fc_fwd, torch.no_grad(), _autocast(dev, dtype):
        towers(x, toks)  # the extra no-grad forward of a gradient-cached step (accumulation / DDP)
    small, large = saved_bytes(batch), saved_bytes(2 * batch)
    per_sample = (large - small) / batch  # the slope: activations; the intercept: weights (and their casts)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        model.zero_grad(set_to_none=True)
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    sec = (time.perf_counter() - t0) / reps
    from PIL import Image

    from training.config import resolve_path
    from training.features import preprocess

    root = resolve_path("shared:datasets/rsicd_aid150/images")
    files = sorted(root.rglob("*.jpg"))[:32] if root.is_dir() else []
    t1 = time.perf_counter()
    for f in files:
        with Image.open(f) as im:
            preprocess(im, S, model.cfg.mean, model.cfg.std)
    decode_ms = 1000 * (time.perf_counter() - t1) / len(files) if files else None
    n_all = sum(p.numel() for p in model.parameters())
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    flops = fc.get_total_flops() / batch
    return {
        "arch": arch,
        "device": str(dev),
        "precision": precision,
        "batch": batch,
        "params": n_all,
        "params_trained": n_train,
        "train_gflop_per_sample": round(flops / 1e9, 2),
        "gradcache_extra_gflop_per_sample": round(fc_fwd.get_total_flops() / batch / 1e9, 2),
        "saved_activation_mb_per_sample": round(per_sample / 1e6, 2),
        "saved_fixed_mb": round((small - batch * per_sample) / 1e6, 1),
        "samples_per_s": round(batch / sec, 3),
        "achieved_gflop_per_s": round(flops * batch / sec / 1e9, 1),
        "decode_ms_per_image": round(decode_ms, 2) if decode_ms else None,  # rsicd_aid150 JPEG -> tensor
        "threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="pir_vit_b_32", help="model config name (training/models/configs)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--precision", default="bf16", choices=["fp32", "bf16", "fp16"])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(json.dumps(measure(args.arch, args.device, args.batch, args.precision)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
