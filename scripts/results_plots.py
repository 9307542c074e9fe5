"""Plots and markdown tables for docs/results.md from the JSON results in docs/results/ (issue 6).

    .venv/bin/python scripts/results_plots.py        # writes docs/results/noise_mr.png, prints the tables

Only rows that exist as JSON are shown; missing rows are printed as "not run (time)".
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RES = ROOT / "docs" / "results"
RATES = (0.0, 0.2, 0.4, 0.6, 0.8)
KEYS = ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "mr")


def load(kind: str, rate: float) -> dict | None:
    p = RES / "noise" / f"sweep_{kind}_n{rate}.json"
    return json.loads(p.read_text()) if p.exists() else None


def fmt_row(label: str, rec: dict | None, extra: list[str] | None = None) -> str:
    if rec is None:
        cells = ["not run (time)"] + [""] * (len(KEYS) - 1)
        return "| " + " | ".join([label, *cells, *(["" for _ in extra] if extra else [])]) + " |"
    t = rec["test"]
    return "| " + " | ".join([label, *[f"{t[k]:.2f}" for k in KEYS], *(extra or [])]) + " |"


def noise_table() -> str:
    lines = [
        "| rate | method | I2T R@1 | R@5 | R@10 | T2I R@1 | R@5 | R@10 | test mR | val mR (best ep) | noisy P / R "
        "(last epoch) | CPU s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in RATES:
        for kind, lab in (("a", "(a) InfoNCE"), ("b", "(b) robust")):
            rec = load(kind, r)
            if rec is None:
                lines.append(f"| {r} | {lab} | not run (time) |  |  |  |  |  |  |  |  |  |")
                continue
            t = rec["test"]
            dv = rec.get("division_last_epoch") if kind == "b" else None  # (a) does not divide pairs
            pr = f"{100 * dv['noisy_precision']:.1f} / {100 * dv['noisy_recall']:.1f}" if dv else "-"
            lines.append(
                f"| {r} | {lab} | "
                + " | ".join(f"{t[k]:.2f}" for k in KEYS[:-1])
                + f" | **{t['mr']:.2f}** | {rec['best_val_mr']:.2f} ({rec['best_epoch']}) | {pr} | "
                f"{rec['cpu_seconds']:.0f} |"
            )
    return "\n".join(lines)


def ablation_table() -> str:
    lines = [
        "| rate | variant | test mR | val mR | noisy P / R | CPU s |",
        "|---|---|---|---|---|---|",
    ]
    names = (
        ("b", "full robust recipe"),
        ("nopir", "without soft belief and Spatial-PAE"),
        ("noaff", "without affiliation loss"),
        ("nosp", "without self-paced weighting (InfoNCE + aff + PIR)"),
        ("a", "plain InfoNCE, no aff (baseline a)"),
    )
    for r in (0.0, 0.4):
        for kind, lab in names:
            rec = load(kind, r)
            if rec is None:
                lines.append(f"| {r} | {lab} | not run (time) |  |  |  |")
                continue
            robust = kind in ("b", "nopir", "nobelief", "nopae", "noaff")  # InfoNCE rows do not divide pairs
            dv = rec.get("division_last_epoch") if robust else None
            pr = f"{100 * dv['noisy_precision']:.1f} / {100 * dv['noisy_recall']:.1f}" if dv else "-"
            lines.append(
                f"| {r} | {lab} | {rec['test']['mr']:.2f} | {rec['best_val_mr']:.2f} | {pr} | "
                f"{rec['cpu_seconds']:.0f} |"
            )
    return "\n".join(lines)


def plot() -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for kind, lab, mk in (("a", "(a) plain InfoNCE", "o--"), ("b", "(b) robust recipe", "s-")):
        pts = [(r, load(kind, r)) for r in RATES]
        pts = [(r, rec["test"]["mr"]) for r, rec in pts if rec is not None]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], mk, label=lab)
    ax.set_xticks(RATES)
    ax.set_xlim(-0.05, 0.85)
    ax.set_xlabel("noise rate (fraction of train captions permuted)")
    ax.set_ylabel("test mR (%)")
    ax.set_title("rsicd_aid150 test, 2-epoch schedule, seed 0")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out = RES / "noise_mr.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main() -> int:
    print(plot(), file=sys.stderr)
    body = "\n\n".join(
        [
            "### Noise table (test mR; best epoch on val)",
            noise_table(),
            "### Ablations at noise 0 and 0.4",
            ablation_table(),
        ]
    )
    md = ROOT / "docs" / "results.md"
    text = md.read_text()
    a, b = "<!-- NOISE:BEGIN -->", "<!-- NOISE:END -->"
    if a in text and b in text:
        text = text[: text.index(a) + len(a)] + "\n" + body + "\n" + text[text.index(b) :]
        md.write_text(text)
    print(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
