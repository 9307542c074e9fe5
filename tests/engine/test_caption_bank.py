"""Caption banks: ``python -m engine caption-bank build`` from Karpathy JSON, CSV and GeoJSON; used by describe."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from engine.api import create_app
from engine.caption_bank import CaptionBank, read_texts
from engine.cli import main
from engine.config import PROMPTS_DIR
from engine.errors import BadInput
from engine.indexer import IndexParams
from engine.service import Engine
from engine.shared_data import rsicd_aid150_images, rsicd_aid150_json, shared_path
from tests.engine.rasters import colour_quadrants, write_raster

PIR_LITE = PROMPTS_DIR.parent / "models" / "pir-lite"
TOKEN = "t" * 32
UCM = shared_path("datasets", "captions", "dataset_ucm_modified.json")


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _aid_image(cls: str) -> np.ndarray:
    row = next(
        r for r in json.loads(rsicd_aid150_json().read_text())["images"] if r["split"] == "test" and r["class"] == cls
    )
    return np.asarray(Image.open(rsicd_aid150_images() / row["filename"]).convert("RGB"))


def test_ucm_bank_built_by_the_cli_is_used_by_describe(capsys, tmp_path, cache):
    """Build a bank from the UCM captions with the shipped bundle, then describe a real farmland image with it."""
    bank = tmp_path / "ucm.npz"
    code, out, _ = run(capsys, "caption-bank", "build", UCM, "--out", bank, "--model", PIR_LITE, "--json")
    assert code == 0, out
    res = json.loads(out)
    ucm = {s["raw"].strip() for i in json.loads(UCM.read_text())["images"] for s in i["sentences"]}
    z = np.load(bank, allow_pickle=False)
    texts = [str(t) for t in z["texts"]]
    assert res["n_texts"] == len(texts) == len(set(texts)) and set(texts) <= {" ".join(t.split()) for t in ucm}
    assert z["embeddings"].dtype == np.float16 and z["embeddings"].shape == (len(texts), int(z["embed_dim"]))
    assert str(z["model_name"]) == "pir-lite" and np.allclose(np.linalg.norm(z["embeddings"], axis=1), 1, atol=1e-2)

    raster = write_raster(tmp_path / "farm.tif", _aid_image("Farmland").transpose(2, 0, 1), res=2.0)  # the bundle gsd
    eng = Engine(default_model=PIR_LITE, root=cache, threads=1)
    eng.index(raster, IndexParams(tile=150))
    out = eng.describe(raster=raster, x=500_150, y=4_999_850, top=5, caption_bank=bank)
    caps = out["captions"]
    assert len(caps) == 5 and all(c["text"] in texts for c in caps)
    assert any(re.search(r"farm|crop|field", c["text"].lower()) for c in caps[:3]), caps
    emb = CaptionBank.load(bank, 256, "pir-lite")
    idx = [emb.texts.index(c["text"]) for c in caps]
    cos = emb.embeddings[idx] @ emb.embeddings[idx].T
    assert (cos[np.triu_indices(5, 1)] <= 0.95 + 1e-3).all()  # no near-duplicate captions either
    assert eng.describe(raster=raster, x=500_150, y=4_999_850)["captions"] == []  # only when asked


def test_csv_and_geojson_sources(tmp_path, capsys, bundle_dir, cache):
    csv = tmp_path / "labels.csv"
    csv.write_text('filename,title\na.tif,"many red roofs"\nb.tif,a green park\nc.tif,many red roofs\n')
    assert read_texts(csv) == ["many red roofs", "a green park"]
    other = tmp_path / "notes.csv"
    other.write_text("id,comment\n1,blue water\n")
    assert read_texts(other, column="comment") == ["blue water"]
    folder = tmp_path / "labels"
    (folder / "sub").mkdir(parents=True)
    for name, t in (("a.geojson", "blue water of a lake"), ("sub/b.geojson", "a green park")):
        feature = {"type": "Feature", "geometry": None, "properties": {"text": t, "id": 1}}
        (folder / name).write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    assert read_texts(folder) == ["blue water of a lake", "a green park"]

    bank = tmp_path / "bank.npz"
    code, out, _ = run(capsys, "caption-bank", "build", csv, "--out", bank, "--model", bundle_dir, "--quiet")
    assert code == 0 and "2 texts" in out
    eng = Engine(default_model=bundle_dir, root=cache, threads=1)
    p = write_raster(tmp_path / "q.tif", colour_quadrants(64))
    eng.index(p, IndexParams(tile=64))
    red = eng.describe(raster=p, x=500_010, y=4_999_990, top=1, caption_bank=bank)
    assert red["captions"][0]["text"] == "many red roofs"
    code, _, _ = run(capsys, "caption-bank", "build", folder, "--out", bank, "--model", bundle_dir, "--quiet")
    green = eng.describe(raster=p, x=500_090, y=4_999_990, top=1, caption_bank=bank)  # a new bank at the same path
    assert code == 0 and green["captions"][0]["text"] == "a green park"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.json", "not found"),
        (lambda d: _write(d / "x.csv", "filename,score\na,1\n"), "no text column"),
        (lambda d: _write(d / "x.json", "{not json"), "not a Karpathy-style"),
        (lambda d: _write(d / "empty.csv", "filename,title\n"), "no texts"),
    ],
)
def test_bad_sources_fail_in_one_line(capsys, tmp_path, bundle_dir, make, message):
    src = make(tmp_path)
    code, _, err = run(capsys, "caption-bank", "build", src, "--out", tmp_path / "b.npz", "--model", bundle_dir)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "b.npz").exists()
    with pytest.raises(BadInput):
        read_texts(src)


def _write(path, text):
    path.write_text(text)
    return path


def test_api_describe_takes_a_bank_under_the_allowed_roots(tmp_path, bundle_dir, encoder, cache):
    data = tmp_path / "data"
    data.mkdir()
    texts = ["many red roofs", "a green park"]
    np.savez(data / "bank.npz", texts=np.array(texts), embeddings=encoder.embed_texts(texts).astype(np.float16))
    raster = write_raster(data / "q.tif", colour_quadrants(64))
    eng = Engine(default_model=bundle_dir, root=cache, threads=1)
    eng.index(raster, IndexParams(tile=64))
    app = create_app(eng, TOKEN, [data])
    with TestClient(app, raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        body = {"raster": str(raster), "x": 500_010, "y": 4_999_990, "top": 2, "caption_bank": str(data / "bank.npz")}
        r = client.post("/describe", json=body)
        assert r.status_code == 200 and r.json()["captions"][0]["text"] == "many red roofs"
        d = r.json()
        assert sum(c["probability"] for c in d["classes"]) + d["other"] == pytest.approx(1.0, abs=1e-9)
        assert isinstance(d["uncertain"], bool)
        r = client.post("/describe", json={**body, "caption_bank": str(data / "none.npz")})
        assert r.status_code == 404 and "caption bank not found" in r.json()["detail"]
        r = client.post("/describe", json={**body, "caption_bank": str(tmp_path / "outside.npz")})
        assert r.status_code == 403
