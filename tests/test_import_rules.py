"""The dependency direction of docs/contracts.md holds: engine has no torch, the plugin only QGIS + stdlib."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import PROJECT_ROOT
from tests.import_rules import ENGINE_FORBIDDEN, PLUGIN_ALLOWED, check_source, check_tree


def test_checker_flags_torch_in_engine_source() -> None:
    bad = "import numpy\nimport torch.nn as nn\nfrom training.models import x\n"
    found = check_source(bad, "engine/x.py", forbidden=ENGINE_FORBIDDEN)
    assert [v.module for v in found] == ["torch.nn", "training.models"]


def test_checker_flags_non_qgis_import_in_plugin_source() -> None:
    bad = "import json\nfrom qgis.core import QgsProject\nimport rasterio\nimport onnxruntime\n"
    found = check_source(bad, "rsitr_qgis/x.py", allowed=PLUGIN_ALLOWED)
    assert [v.module for v in found] == ["rasterio", "onnxruntime"]


def test_checker_sees_dynamic_imports() -> None:
    bad = "import importlib\nm = importlib.import_module('torch')\n"
    assert check_source(bad, "engine/x.py", forbidden=ENGINE_FORBIDDEN)


def test_engine_never_imports_torch_or_training() -> None:
    violations = check_tree(PROJECT_ROOT / "engine", forbidden=ENGINE_FORBIDDEN)
    assert not violations, "\n".join(map(str, violations))


def test_plugin_imports_only_qgis_and_stdlib() -> None:
    violations = check_tree(PROJECT_ROOT / "rsitr_qgis", allowed=PLUGIN_ALLOWED)
    assert not violations, "\n".join(map(str, violations))


def test_importing_every_engine_module_loads_no_torch() -> None:
    """Indirect imports count too: load all engine modules in a fresh interpreter and inspect sys.modules."""
    code = (
        "import importlib, pkgutil, sys, engine\n"
        "for m in pkgutil.walk_packages(engine.__path__, 'engine.'):\n"
        "    if not m.name.endswith('__main__'): importlib.import_module(m.name)\n"
        "bad = sorted(k for k in sys.modules if k.split('.')[0] in {'torch', 'training', 'open_clip', 'timm'})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "", f"engine pulled in: {out.stdout.strip()}"
