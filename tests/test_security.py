"""Static security checks over the shipped code (issue 8, exposure): no shell or eval on user input, no unsafe
deserialisation, and ``bandit -r rsitr_qgis engine training -ll`` clean at medium severity."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("engine", "rsitr_qgis", "training")

BANNED_BUILTINS = {"eval", "exec", "compile", "__import__"}
BANNED_ATTRS = {
    ("os", "system"),
    ("os", "popen"),
    ("os", "execv"),
    ("os", "execvp"),
    ("os", "spawnl"),
    ("pickle", "load"),
    ("pickle", "loads"),
    ("marshal", "loads"),
    ("shelve", "open"),
    ("subprocess", "getoutput"),
    ("subprocess", "getstatusoutput"),
}


def _sources():
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            if ".venv" not in path.parts:
                yield path


def _dotted(node: ast.AST) -> tuple[str, ...]:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    parts.append(node.id if isinstance(node, ast.Name) else "<expr>")  # dialog().exec() is not exec()
    return tuple(reversed(parts))


def _is_true(node: ast.AST | None) -> bool:
    return node is not None and not (isinstance(node, ast.Constant) and node.value in (False, None, 0))


def find_dangerous_calls(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, what) for eval/exec, os.system-like calls, shell=True, pickle loads and unsafe yaml/numpy loads."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        kwargs = {k.arg: k.value for k in node.keywords if k.arg}
        if len(name) == 1 and name[0] in BANNED_BUILTINS:
            found.append((node.lineno, f"{name[0]}()"))
        elif name[-2:] in BANNED_ATTRS:
            found.append((node.lineno, ".".join(name)))
        if _is_true(kwargs.get("shell")):
            found.append((node.lineno, f"{'.'.join(name)}(shell=True)"))
        if name[-1:] == ("load",) and name[:1] == ("yaml",) and "Loader" not in kwargs:
            found.append((node.lineno, "yaml.load without a safe Loader"))
        if (
            name[-1:] in (("load",), ("loadtxt",))
            and name[:1] in (("np",), ("numpy",))
            and _is_true(kwargs.get("allow_pickle"))
        ):
            found.append((node.lineno, "np.load(allow_pickle=True)"))
    return found


def test_detector_catches_the_patterns():
    src = (
        "import os, subprocess, pickle, yaml, numpy as np\n"
        "eval(x)\nexec(y)\nos.system(c)\nsubprocess.run(c, shell=True)\npickle.loads(b)\n"
        "yaml.load(s)\nnp.load(f, allow_pickle=True)\nmodel.eval()\nsubprocess.run([a, b])\n"
        "yaml.load(s, Loader=yaml.SafeLoader)\nnp.load(f, allow_pickle=False)\nDialog().exec()\n"
    )
    lines = [line for line, _ in find_dangerous_calls(ast.parse(src))]
    assert lines == [2, 3, 4, 5, 6, 7, 8]


def test_no_shell_eval_or_unsafe_deserialisation():
    hits = []
    for path in _sources():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        hits += [f"{path.relative_to(ROOT)}:{line}: {what}" for line, what in find_dangerous_calls(tree)]
    assert not hits, "dangerous calls:\n" + "\n".join(hits)


def _bandit(package: str) -> list[str]:
    exe = shutil.which("bandit", path=str(Path(sys.executable).parent)) or shutil.which("bandit")
    if exe is None:
        pytest.skip("bandit is not installed (pip install -e '.[dev]')")
    r = subprocess.run(
        [exe, "-r", package, "-ll", "-f", "json", "-q"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    report = json.loads(r.stdout)
    assert not report.get("errors"), report["errors"]
    return [
        f"{i['filename']}:{i['line_number']} {i['test_id']} {i['issue_severity']}: {i['issue_text']}"
        for i in report["results"]
        if i["issue_severity"] in ("MEDIUM", "HIGH")
    ]


@pytest.mark.parametrize("package", PACKAGES)
def test_bandit_clean_at_medium_severity(package):
    """What the official QGIS plugin repository scans; fix findings or add ``# nosec BXXX`` with a reason."""
    issues = _bandit(package)
    assert not issues, "bandit findings:\n" + "\n".join(issues)


def test_token_compared_in_constant_time():
    """engine/api.py compares the bearer token with hmac.compare_digest, never with == or !=."""
    tree = ast.parse((ROOT / "engine" / "api.py").read_text(encoding="utf-8"))
    calls = {_dotted(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    assert ("hmac", "compare_digest") in calls
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and any(isinstance(op, (ast.Eq, ast.NotEq)) for op in node.ops):
            names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
            assert "token" not in names, f"engine/api.py:{node.lineno} compares the token with ==/!="
