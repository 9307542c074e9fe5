"""Readers (Karpathy JSON, CSV, AMFMN precomp) and scene-class resolution."""

import json

import pytest

from training.data.readers import read_amfmn_precomp, read_csv_pairs, read_karpathy_json
from training.data.scene_classes import class_from_filename, resolve_scene_classes, ucm_class_of


def test_karpathy_json_with_class(tmp_path):
    d = {
        "images": [
            {
                "filename": "Airport/airport_1.jpg",
                "split": "train",
                "class": "Airport",
                "sentences": [{"raw": " a plane . "}, {"raw": "runway"}],
            },
            {"filename": "00720.jpg", "split": "test", "sentences": [{"tokens": ["a", "b"]}]},
        ]
    }
    p = tmp_path / "d.json"
    p.write_text(json.dumps(d))
    rows = read_karpathy_json(p)
    assert [r.caption for r in rows] == ["a plane .", "runway", "a b"]
    assert [r.image_id for r in rows] == [0, 0, 1]
    assert read_karpathy_json(p, ("test",))[0].filename == "00720.jpg"
    res = resolve_scene_classes(rows)
    assert [r.scene_class for r in res] == ["airport", "airport", "unknown"]


def test_csv(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("filename,title\nbeach_1.jpg,sand and sea\nbeach_1.jpg,waves\nport_3.jpg,boats\n")
    rows = resolve_scene_classes(read_csv_pairs(p))
    assert [(r.image_id, r.scene_class) for r in rows] == [(0, "beach"), (0, "beach"), (1, "port")]
    bad = tmp_path / "b.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError):
        read_csv_pairs(bad)


def test_precomp_both_layouts(tmp_path):
    (tmp_path / "train_caps.txt").write_text("\n".join(f"c{i}" for i in range(10)) + "\n")
    (tmp_path / "train_filename.txt").write_text("a_1.tif\nb_2.tif\n")
    rows = read_amfmn_precomp(tmp_path, "train")
    assert len(rows) == 10 and rows[4].filename == "a_1.tif" and rows[5].filename == "b_2.tif"
    (tmp_path / "test_caps.txt").write_text("x\ny\n")
    (tmp_path / "test_filename.txt").write_text("a_1.tif\na_1.tif\n")
    assert [r.image_id for r in read_amfmn_precomp(tmp_path, "test")] == [0, 0]


def test_scene_class_rules():
    assert class_from_filename("airport_12.tif") == "airport"
    assert class_from_filename("00720.jpg") is None
    assert ucm_class_of("101.tif") == "1" and ucm_class_of("100.tif", ["agri", "air"]) == "agri"
    rows = read_csv_rows = None  # noqa: F841
    from training.data.readers import CaptionRecord

    r = [CaptionRecord(0, "101.tif", "x", "train")]
    assert resolve_scene_classes(r, lambda f: ucm_class_of(f))[0].scene_class == "1"


def test_real_files(shared):
    rows = read_karpathy_json(shared / "datasets/rsicd_aid150/dataset_rsicd_aid150.json", ("val",))
    assert len({r.filename for r in rows}) == 474
    assert len({r.scene_class for r in resolve_scene_classes(rows)}) == 30
    pre = shared / "datasets/captions/rsitmd_precomp"
    if pre.is_dir():
        assert len(read_amfmn_precomp(pre, "test")) > 1000
