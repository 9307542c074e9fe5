"""CLI: exit codes, one-line errors (never a traceback), JSON output, stores list/clear, info."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli import main
from tests.engine.rasters import colour_quadrants, write_raster

ROOT = Path(__file__).resolve().parents[2]


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(err: str) -> bool:
    # the progress bar (erased with \r on error) is not an error line
    lines = [
        ln for ln in re.split(r"[\r\n]", err) if ln.strip() and not ln.startswith("warning:") and "tile/s" not in ln
    ]
    return len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err


@pytest.fixture
def raster(tmp_path):
    return write_raster(tmp_path / "quad.tif", colour_quadrants(64))


def test_index_search_describe_json(capsys, cache, bundle_dir, raster, tmp_path):
    code, out, _ = run(capsys, "index", raster, "--model", bundle_dir, "--tile", "64", "--json")
    assert code == 0
    idx = json.loads(out)
    assert idx["n_tiles"] == 4 and idx["provider"] == "CPUExecutionProvider"
    code, out, err = run(capsys, "index", raster, "--model", bundle_dir, "--tile", "64")
    assert code == 0 and "reused existing store" in out
    code, out, _ = run(
        capsys,
        "search",
        "red",
        "--raster",
        raster,
        "--model",
        bundle_dir,
        "-k",
        "2",
        "--json",
        "--out",
        tmp_path / "r.geojson",
    )
    res = json.loads(out)
    assert code == 0 and res["results"][0]["tile_id"] == 0 and (tmp_path / "r.geojson").is_file()
    code, out, _ = run(capsys, "search", "green", "--store", idx["store_id"], "-k", "1")
    assert code == 0 and "tile 1 " in out
    code, out, _ = run(capsys, "describe", raster, "--x", 500_010, "--y", 4_999_990, "--model", bundle_dir, "--json")
    assert code == 0 and json.loads(out)["tile_id"] == 0
    code, out, _ = run(capsys, "stores", "list", "--json")
    assert [s["store_id"] for s in json.loads(out)["stores"]] == [idx["store_id"]]
    code, out, _ = run(capsys, "stores", "clear", "--all")
    assert code == 0 and "removed 1" in out


def test_info_shows_provider(capsys, cache, bundle_dir):
    code, out, _ = run(capsys, "info", "--model", bundle_dir)
    assert code == 0 and "provider: CPUExecutionProvider" in out
    code, out, _ = run(capsys, "info", "--model", bundle_dir, "--json")
    assert json.loads(out)["provider"] == "CPUExecutionProvider"


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["index", "{zero}"], "zero-byte"),
        (["index", "{text}"], "not a readable raster"),
        (["index", "{missing}"], "raster not found"),
        (["index", "{raster}", "--bands", "1,9,2"], "band 9 does not exist"),
        (["index", "{raster}", "--bands", "a,b"], "--bands"),
        (["index", "{raster}", "--tile", "0"], "tile must be"),
        (["search", "red", "--raster", "{raster}", "-k", "0"], "-k must be between 1 and 1000"),
        (["search", "   ", "--raster", "{raster}"], "query is empty"),
        (["search", "red", "--store", "0123456789abcdef"], "unknown store"),
        (["search", "red", "--store", "nothex"], "unknown store"),
        (["search", "red", "--raster", "{raster}"], "not indexed"),
        (["search", "red"], "at least one raster or store"),
        (["describe", "{raster}"], "--x and --y"),
        (["stores", "clear", "ffffffffffffffff"], "unknown store"),
        (["index", "{raster}", "--model", "{tmp}/nobundle"], "model bundle not found"),
    ],
)
def test_bad_input_one_line_errors(capsys, cache, bundle_dir, raster, tmp_path, argv, needle):
    (tmp_path / "zero.tif").write_bytes(b"")
    (tmp_path / "text.tif").write_text("this is text\n")
    subst = {
        "zero": tmp_path / "zero.tif",
        "text": tmp_path / "text.tif",
        "missing": tmp_path / "nope.tif",
        "raster": raster,
        "tmp": tmp_path,
    }
    args = [a.format(**subst) for a in argv]
    if "--model" not in args and args[0] in ("index", "search", "describe"):
        args += ["--model", str(bundle_dir)]
    code, out, err = run(capsys, *args)
    assert code == 2, (args, out, err)
    assert _one_line_error(err) and needle in err, err


def test_no_default_model_message(capsys, cache, raster, monkeypatch):
    monkeypatch.delenv("RSITR_MODEL", raising=False)
    monkeypatch.setenv("RSITR_MODELS_DIR", "/nonexistent")
    code, _, err = run(capsys, "index", raster)
    assert code == 2 and _one_line_error(err) and "--model" in err and "models install" in err


def test_subprocess_no_traceback(tmp_path, bundle_dir):
    (tmp_path / "zero.tif").write_bytes(b"")
    env = {"RSITR_CACHE": str(tmp_path / "c"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    r = subprocess.run(
        [sys.executable, "-m", "engine", "index", str(tmp_path / "zero.tif"), "--model", str(bundle_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
    )
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "zero-byte" in r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "engine", "bogus"], capture_output=True, text=True, timeout=60, cwd=ROOT, env=env
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr


def _edge_rasters(tmp_path):
    import numpy as np
    from PIL import Image

    from tests.engine.rasters import rgb_pattern

    d = tmp_path / "dir with spaces ünïcode"
    d.mkdir()
    out = {
        "one_pixel": write_raster(d / "1x1 ü.tif", rgb_pattern(1, 1)),
        "int16_signed": write_raster(d / "s16.tif", (rgb_pattern(64, 64).astype(np.int16) - 300)),
        "float_inf": write_raster(
            d / "finf.tif", np.where(rgb_pattern(64, 64) > 200, np.inf, rgb_pattern(64, 64)).astype(np.float32)
        ),
    }
    Image.fromarray(rgb_pattern(40, 50).transpose(1, 2, 0)).save(d / "plain.png")
    out["png_no_georef"] = d / "plain.png"
    return out


def test_edge_rasters_index(capsys, cache, bundle_dir, tmp_path):
    for name, path in _edge_rasters(tmp_path).items():
        code, out, err = run(capsys, "index", path, "--model", bundle_dir, "--tile", "64", "--json")
        assert code == 0, (name, err)
        res = json.loads(out)
        assert res["n_tiles"] == 1, name
        if name == "png_no_georef":
            assert "warning: " in err and "pixel coordinates" in err
        code, out, err = run(capsys, "search", "red", "--raster", path, "--model", bundle_dir, "--json")
        assert code == 0 and len(json.loads(out)["results"]) == 1, (name, err)


def test_all_nodata_and_truncated(capsys, cache, bundle_dir, tmp_path):
    import numpy as np

    nod = write_raster(tmp_path / "nodata.tif", np.zeros((3, 64, 64), np.uint8), nodata=0)
    code, out, err = run(capsys, "index", nod, "--model", bundle_dir, "--tile", "32", "--quiet")
    assert code == 0 and "0 tiles indexed, 4 skipped" in out and "warning: every tile" in err
    big = write_raster(
        tmp_path / "big.tif", np.random.default_rng(0).integers(0, 255, (3, 512, 512), np.uint8), tiled=True
    )
    data = big.read_bytes()
    big.write_bytes(data[: len(data) // 2])
    code, _, err = run(capsys, "index", big, "--model", bundle_dir, "--tile", "64")
    assert code == 2 and _one_line_error(err) and "truncated or corrupted" in err
    assert run(capsys, "stores", "list", "--json")[0] == 0


def test_long_and_unicode_queries(capsys, cache, bundle_dir, raster):
    run(capsys, "index", raster, "--model", bundle_dir, "--tile", "64")
    code, _, err = run(capsys, "search", "x" * 10_000, "--raster", raster, "--model", bundle_dir)
    assert code == 2 and _one_line_error(err) and "longer than 1000" in err
    code, out, _ = run(capsys, "search", "河流 🌊 rivière", "--raster", raster, "--model", bundle_dir, "-k", "1")
    assert code == 0 and "1 results" in out
    code, _, err = run(capsys, "search", "red", "--raster", raster, "--model", bundle_dir, "-k", "-3")
    assert code == 2 and _one_line_error(err)


def test_every_cli_option_has_help_text():
    """`python -m engine <command> --help` explains every option and positional argument."""
    import argparse

    from engine.cli import build_parser

    missing = []

    def walk(parser: argparse.ArgumentParser, prefix: str) -> None:
        for action in parser._actions:  # argparse has no public accessor for its actions
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{prefix} {name}")
            elif not isinstance(action, argparse._HelpAction) and not (action.help or "").strip():
                missing.append(f"{prefix} {'/'.join(action.option_strings) or action.dest}")

    walk(build_parser(), "python -m engine")
    assert not missing, missing
