"""metadata.txt holds what the official QGIS plugin repository requires."""

from __future__ import annotations

import configparser
import re

from tests.conftest import PROJECT_ROOT

REQUIRED = (
    "name",
    "qgisMinimumVersion",
    "description",
    "about",
    "version",
    "author",
    "email",
    "repository",
    "tracker",
    "homepage",
    "category",
    "icon",
    "hasProcessingProvider",
    "experimental",
    "license",
)


def read_metadata() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keep camelCase keys
    parser.read(PROJECT_ROOT / "metadata.txt", encoding="utf-8")
    return parser["general"]


def test_required_fields_present_and_not_empty() -> None:
    meta = read_metadata()
    missing = [key for key in REQUIRED if not meta.get(key, "").strip()]
    assert not missing, f"metadata.txt lacks {missing}"


def test_field_values_follow_repository_rules() -> None:
    meta = read_metadata()
    assert meta["qgisMinimumVersion"] == "3.22"
    assert meta["hasProcessingProvider"].lower() in {"yes", "true"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", meta["version"])
    assert "\n" not in meta["description"].strip()
    assert "/" not in meta["author"]
    for key in ("repository", "tracker", "homepage"):
        assert meta[key].startswith("https://") and meta[key] not in {"http://bugs", "http://repo"}
    assert "engine" in meta["about"].lower() and "onnx" in meta["about"].lower()
    assert (PROJECT_ROOT / "rsitr_qgis" / ".." / meta["icon"]).resolve().is_file()
    assert meta["category"] in {"Raster", "Vector", "Database", "Mesh", "Web"}


def test_version_matches_the_engine_it_carries() -> None:
    """The plugin zip carries the engine wheel: both have one version (pyproject reads engine.__version__)."""
    from engine import __version__

    text = (PROJECT_ROOT / "pyproject.toml").read_text()
    assert 'version = {attr = "engine.__version__"}' in text
    assert read_metadata()["version"] == __version__


def test_about_says_what_setup_installs() -> None:
    about = read_metadata()["about"].lower()
    for word in ("set up engine", "virtual environment", "onnx runtime", "onnxruntime-gpu", "model", "mb", "offline"):
        assert word in about, word
