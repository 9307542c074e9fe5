"""Options of the PIR-ViT trainer (``vit:`` section of a training config, ``--set vit.KEY=VALUE``) and the
device / precision / distributed set-up they resolve to (issue 19)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch

from training.config import check_types, from_dict_strict


class ViTConfigError(ValueError):
    """A bad PIR-ViT config value or checkpoint: reported as one line by ``train.py``."""


@dataclass
class ViTOptions:
    device: str = "auto"  # auto (cuda:LOCAL_RANK when CUDA is present, else cpu) | cpu | cuda | cuda:N
    precision: str = "auto"  # auto (bf16 on CUDA with bf16, else fp16 on CUDA, fp32 on CPU) | fp32 | bf16 | fp16
    accum_steps: int = 1  # micro-batches per optimiser step; the contrastive gradient stays the full batch's
    layer_decay: float = 1.0  # layer-wise lr decay per transformer block below the top (1 = off, as the paper)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # PIR-CLIP's fork: RN defaults
    eps: float = 1e-8
    freeze_instruction: bool = True  # freeze the instruction encoder after the scene prior (the paper's figure)
    freeze_text: bool = False
    instr_cache: bool = False  # frozen instruction tokens computed once per image (needs freeze_instruction)
    augment: str = "d4"  # d4 (random flips / 90-degree rotations) | none
    workers: int = 0  # DataLoader worker processes decoding images
    eval_batch: int = 256
    max_steps_per_epoch: int | None = None  # cap (throughput probes, tests)
    log_every: int = 50  # optimiser steps between throughput lines
    fp16_variant: bool = True  # export also <bundle>-fp16 (ONNX fp16 graph) with its cosine and mR cost
    test_eval: bool = False  # at export, measure test mR (engine ONNX path) into model.json (shown by the picker)

    @classmethod
    def from_dict(cls, d: dict) -> ViTOptions:
        try:
            opts = from_dict_strict(cls, d, "vit")
            check_types(opts)
        except (TypeError, ValueError) as exc:
            raise ViTConfigError(str(exc)) from None
        if opts.augment not in ("d4", "none"):
            raise ViTConfigError(f"vit.augment must be d4 or none, got {opts.augment!r}")
        if opts.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ViTConfigError(f"vit.precision must be auto, fp32, bf16 or fp16, got {opts.precision!r}")
        if opts.accum_steps < 1 or not 0 < opts.layer_decay <= 1:
            raise ViTConfigError("vit.accum_steps must be >= 1 and vit.layer_decay in (0, 1]")
        if opts.instr_cache and not opts.freeze_instruction:
            raise ViTConfigError("vit.instr_cache needs vit.freeze_instruction=true")
        return opts


@dataclass
class Dist:
    """torchrun's process group view (world 1 without torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device_kind: str) -> Dist:
    """Join torchrun's process group when ``WORLD_SIZE`` > 1 (NCCL on CUDA, Gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_kind == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def resolve_device(spec: str) -> torch.device:
    """``auto`` -> ``cuda:LOCAL_RANK`` when CUDA is available, else CPU; ``cuda`` without a GPU is an error."""
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ViTConfigError(f"device {spec} asked but CUDA is not available (use --device cpu or auto)")
        return torch.device(spec if ":" in spec else f"cuda:{local}")
    if spec != "cpu":
        raise ViTConfigError(f"device must be auto, cpu, cuda or cuda:N, got {spec!r}")
    return torch.device("cpu")


def resolve_precision(spec: str, device: torch.device) -> torch.dtype:
    """Autocast dtype: bf16/fp16 autocast on CUDA (fp16 with a GradScaler), bf16 or fp32 on CPU."""
    if spec == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if spec == "fp16" and device.type != "cuda":
        raise ViTConfigError("vit.precision=fp16 needs CUDA (use bf16 or fp32 on CPU)")
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[spec]
