"""scripts/results_plots.py: the results tables are built from the sweep's row JSONs, missing rows are marked."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT


@pytest.fixture()
def plots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    spec = importlib.util.spec_from_file_location("results_plots", PROJECT_ROOT / "scripts" / "results_plots.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(mod, "RES", tmp_path)
    return mod


def write_row(plots, folder: Path, kind: str, rate: float, mr: float, resumed: int = 0) -> None:
    """One row JSON in the sweep's format (the fields the tables read)."""
    folder.mkdir(parents=True, exist_ok=True)
    test = {k: mr + i for i, k in enumerate(plots.KEYS[:-1])}  # R@K columns; the last key is mr
    rec = {
        "row": f"{kind}_{rate}",
        "test": {**test, "mr": mr},
        "best_val_mr": mr + 10,
        "best_epoch": 3,
        "epochs_schedule": 10,
        "cpu_seconds": 1234.4,
        "resumed_at_epoch": resumed,
        "epochs": [
            {
                "epoch": 1,
                "full_division": {"noisy_precision": 0.9, "noisy_recall": 0.95, "sampled_corrupted_frac": 0.04},
            }
        ],
    }
    (folder / f"sweep_{kind}_n{rate}_t.json").write_text(json.dumps(rec))


def test_noise_table_shows_rows_gaps_and_marks_missing_and_resumed(plots, tmp_path: Path) -> None:
    write_row(plots, tmp_path / "f", "a", 0.4, 17.5)
    write_row(plots, tmp_path / "f", "r", 0.4, 21.5, resumed=5)
    table = plots.noise_table("f", "_t", ("r", "(b) robust v2"))
    lines = table.splitlines()
    a04 = next(ln for ln in lines if ln.startswith("| 0.4 | (a)"))
    r04 = next(ln for ln in lines if ln.startswith("| 0.4 | (b)"))
    assert "**17.50**" in a04 and a04.endswith("| - | 1234 |")  # (a) does not divide pairs
    assert "**21.50**" in r04 and "90.0 / 95.0" in r04
    assert r04.endswith("| 1234 (epochs 6-10 only) |")  # resumed: only the resumed epochs' CPU time
    assert next(ln for ln in lines if ln.startswith("| 0.2 | (a)")).startswith("| 0.2 | (a) InfoNCE | not run")
    gaps = plots.v2_table("f", "_t")
    assert "| +4.00 |" in gaps


def test_ablation_table_has_every_variant_at_both_rates(plots, tmp_path: Path) -> None:
    write_row(plots, tmp_path / "f", "nosp", 0.4, 19.0)
    lines = plots.ablation_table("f", "_t", plots.ABLATIONS_V2).splitlines()
    assert len(lines) == 2 + 2 * len(plots.ABLATIONS_V2)
    nosp = next(ln for ln in lines if ln.startswith("| 0.4 | without self-paced"))
    assert nosp.startswith("| 0.4 | without self-paced weighting and division (InfoNCE + aff + PIR) | 19.00 |")
    assert "| - |" in nosp  # InfoNCE rows report no division
    assert sum("not run (time)" in ln for ln in lines) == 2 * len(plots.ABLATIONS_V2) - 1
