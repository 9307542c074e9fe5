"""Per-run plots under ``runs/<name>/plots/``: losses, val R@K, noisy-pair division, per-pair weights/losses."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_run(run_dir: Path, history: list[dict], last_weights: dict | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pdir = run_dir / "plots"
    pdir.mkdir(exist_ok=True)
    ep = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    for k in sorted({k for h in history for k in h if k.startswith("loss_")}):
        ax.plot(ep, [h.get(k, np.nan) for h in history], marker="o", label=k[5:])
    ax.set_xlabel("epoch"), ax.set_ylabel("loss"), ax.legend(), fig.tight_layout()
    fig.savefig(pdir / "losses.png"), plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4))
    for k in ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "mr"):
        ax.plot(ep, [h.get(f"val_{k}", np.nan) for h in history], marker="o", label=k)
    ax.set_xlabel("epoch"), ax.set_ylabel("val R@K (%)"), ax.legend(fontsize=7), fig.tight_layout()
    fig.savefig(pdir / "recall.png"), plt.close(fig)
    if any("noisy_precision" in h for h in history):
        fig, ax = plt.subplots(figsize=(6, 4))
        for k in ("noisy_precision", "noisy_recall"):
            ax.plot(ep, [h.get(k, np.nan) for h in history], marker="o", label=k)
        ax.set_xlabel("epoch"), ax.legend(), fig.tight_layout()
        fig.savefig(pdir / "noisy_division.png"), plt.close(fig)
    if last_weights is not None:
        fig, ax = plt.subplots(figsize=(6, 4))
        w, c = last_weights["weight"], last_weights["corrupted"]
        ax.hist([w[~c], w[c]], bins=30, label=["clean pairs", "corrupted pairs"], stacked=True)
        ax.set_xlabel("per-pair weight (last epoch)"), ax.legend(), fig.tight_layout()
        fig.savefig(pdir / "pair_weights.png"), plt.close(fig)
        fig, ax = plt.subplots(figsize=(6, 4))
        lp = last_weights["per_pair"]
        ax.hist([lp[~c], lp[c]], bins=40, label=["clean pairs", "corrupted pairs"], stacked=True)
        ax.set_xlabel("per-pair loss (last epoch)"), ax.legend(), fig.tight_layout()
        fig.savefig(pdir / "pair_losses.png"), plt.close(fig)
