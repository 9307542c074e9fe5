"""Static check that the plugin is written to run on QGIS 4 (Qt6/PyQt6) while it still runs on QGIS 3.22 (PyQt5).

Every ``rsitr_qgis/**/*.py`` file is parsed (ast); findings are listed as ``file:line: rule: message``.
Names are resolved against the QGIS/PyQt5 installed here, so the test knows which attributes are enum values.

Rules (the QGIS Qt5->Qt6 migration guide and QGIS's scripts/pyqt5_to_pyqt6.py):
- ``binding-import``: import Qt through ``qgis.PyQt`` only, never PyQt5/PyQt6/sip/PySide directly;
- ``moved-class``: ``QAction``/``QShortcut`` come from ``qgis.PyQt.QtWidgets`` (QGIS re-exports them there on Qt6;
  ``qgis.PyQt.QtGui`` lacks them on 3.22); other classes that moved between QtWidgets and QtGui are refused;
- ``unscoped-enum``: ``Qt.AlignLeft`` -> ``Qt.AlignmentFlag.AlignLeft`` (PyQt6 has scoped enums only);
- ``missing-name``: a scoped name that does not exist on QGIS 3.22 (unless guarded by ``if hasattr(...)``);
- ``qvariant``: ``QVariant`` types are gone in Qt6: field types go through ``qt_compat.make_field`` (QMetaType);
- ``exec_``: ``exec_()`` is ``exec()``; ``removed-in-qt6``: QRegExp, QDesktopWidget, qApp, ``activated[str]``.
Lines marked ``# qgis-3.22-fallback`` (only in ``rsitr_qgis/qt_compat.py``) may use the old names.
"""

from __future__ import annotations

import ast
import configparser
import enum
import importlib
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import PROJECT_ROOT

PLUGIN_DIR = PROJECT_ROOT / "rsitr_qgis"
FALLBACK_MARK = "# qgis-3.22-fallback"
FALLBACK_FILES = {"rsitr_qgis/qt_compat.py"}
BINDINGS = {"PyQt4", "PyQt5", "PyQt6", "sip", "PySide2", "PySide6"}
REEXPORTED_BY_QGIS_QTWIDGETS = {"QAction", "QShortcut"}
MOVED_TO_QTGUI = {"QActionGroup", "QUndoCommand", "QUndoStack", "QUndoGroup", "QFileSystemModel"}
REMOVED_IN_QT6 = {
    "QRegExp": "use QRegularExpression",
    "QDesktopWidget": "use QScreen (QGuiApplication.screens())",
    "qApp": "use QApplication.instance()",
    "QStringRef": "use str",
    "QTextCodec": "moved to Qt5Compat",
}
RENAMED_METHODS = {"exec_": "exec", "print_": "print"}
QT_MODULE_PREFIXES = ("qgis.core", "qgis.gui", "qgis.analysis", "qgis.PyQt.")


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.rule}: {self.message}"


def _is_enum_value(value: object) -> bool:
    kind = type(value)
    return isinstance(value, enum.Enum) or type(kind).__name__ == "enumtype"  # Python enums, sip (PyQt5) enums


def _is_enum_type(value: object) -> bool:
    return isinstance(value, type) and (issubclass(value, enum.Enum) or type(value).__name__ == "enumtype")


def _imported_classes(tree: ast.AST) -> dict[str, object]:
    """Local name -> object for ``from <qgis/Qt module> import Name`` in the file."""
    names: dict[str, object] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(QT_MODULE_PREFIXES):
            try:
                module = importlib.import_module(node.module)
            except ImportError:
                continue
            for alias in node.names:
                if hasattr(module, alias.name):
                    names[alias.asname or alias.name] = getattr(module, alias.name)
    return names


def _guarded_by_hasattr(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If):
            test = node.test
            calls = [n for n in ast.walk(test) if isinstance(n, ast.Call)]
            if any(isinstance(c.func, ast.Name) and c.func.id == "hasattr" for c in calls):
                return True
    return False


def _chain(node: ast.Attribute) -> tuple[str, list[str]] | None:
    """``A.b.c`` -> ("A", ["b", "c"]) when the chain starts at a plain name."""
    attrs: list[str] = []
    cur: ast.AST = node
    while isinstance(cur, ast.Attribute):
        attrs.append(cur.attr)
        cur = cur.value
    if isinstance(cur, ast.Name):
        return cur.id, attrs[::-1]
    return None


def check_source(source: str, rel_path: str) -> list[Finding]:
    tree = ast.parse(source, filename=rel_path)
    lines = source.splitlines()
    fallback_ok = rel_path in FALLBACK_FILES
    classes = _imported_classes(tree)
    parents = {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
    found: list[Finding] = []

    def add(node: ast.AST, rule: str, message: str) -> None:
        line = getattr(node, "lineno", 0)
        if fallback_ok and 0 < line <= len(lines) and FALLBACK_MARK in lines[line - 1]:
            return
        found.append(Finding(rel_path, line, rule, message))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in BINDINGS:
                    add(node, "binding-import", f"import {alias.name}: import Qt through qgis.PyQt")
        elif isinstance(node, ast.ImportFrom) and node.module:
            root = node.module.split(".")[0]
            if root in BINDINGS:
                add(node, "binding-import", f"from {node.module}: import Qt through qgis.PyQt")
            for alias in node.names:
                if alias.name in REEXPORTED_BY_QGIS_QTWIDGETS and node.module != "qgis.PyQt.QtWidgets":
                    add(node, "moved-class", f"{alias.name}: import it from qgis.PyQt.QtWidgets (works on Qt5 and Qt6)")
                if alias.name in MOVED_TO_QTGUI:
                    add(node, "moved-class", f"{alias.name} moved from QtWidgets (Qt5) to QtGui (Qt6)")
                if alias.name in REMOVED_IN_QT6:
                    add(node, "removed-in-qt6", f"{alias.name}: {REMOVED_IN_QT6[alias.name]}")
                if alias.name == "QVariant":
                    add(node, "qvariant", "QVariant types do not exist in Qt6: use qt_compat.make_field (QMetaType)")
        elif isinstance(node, ast.Name) and node.id in ("QVariant",):
            add(node, "qvariant", "QVariant types do not exist in Qt6: use qt_compat.make_field (QMetaType)")
        elif isinstance(node, ast.Name) and node.id in REMOVED_IN_QT6 and isinstance(node.ctx, ast.Load):
            add(node, "removed-in-qt6", f"{node.id}: {REMOVED_IN_QT6[node.id]}")
        elif isinstance(node, ast.FunctionDef) and node.name in RENAMED_METHODS:
            add(node, "exec_", f"def {node.name}: Qt6 names it {RENAMED_METHODS[node.name]}")
        elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute):
            if isinstance(node.slice, ast.Name) and node.slice.id == "str":
                add(node, "removed-in-qt6", f"{node.value.attr}[str]: overloaded signals are gone in Qt6")
        if not isinstance(node, ast.Attribute):
            continue
        if node.attr in RENAMED_METHODS:
            add(node, "exec_", f".{node.attr}(): use .{RENAMED_METHODS[node.attr]}()")
            continue
        if isinstance(parents.get(node), ast.Attribute):
            continue  # judge the whole chain once, at its outermost attribute
        chain = _chain(node)
        if chain is None or chain[0] not in classes:
            continue
        root, attrs = chain
        if root == "QVariant":
            continue  # the qvariant rule covers it
        obj = classes[root]
        path = root
        for i, attr in enumerate(attrs):
            if not hasattr(obj, attr):
                if not _guarded_by_hasattr(node, parents):
                    add(node, "missing-name", f"{path}.{attr} does not exist in QGIS 3.22 / PyQt5")
                break
            parent_obj, obj = obj, getattr(obj, attr)
            path = f"{path}.{attr}"
            if _is_enum_value(obj) and not _is_enum_type(parent_obj) and isinstance(parent_obj, type):
                scope = type(obj).__name__
                add(node, "unscoped-enum", f"{path}: write {path.rsplit('.', 1)[0]}.{scope}.{attr} (scoped enum)")
                break
            if i == 0 and not isinstance(obj, type) and not _is_enum_type(obj):
                break  # a method or constant of the class: nothing more to resolve statically
    return found


def check_tree(root: Path = PLUGIN_DIR) -> list[Finding]:
    found: list[Finding] = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(PROJECT_ROOT).as_posix()
        found += check_source(path.read_text(encoding="utf-8"), rel)
    return found


BAD_SNIPPET = """\
from PyQt5.QtWidgets import QDialog
from qgis.PyQt.QtCore import Qt, QVariant
from qgis.PyQt.QtGui import QAction
from qgis.PyQt.QtWidgets import QMessageBox, QActionGroup
from qgis.core import Qgis, QgsField, QgsMapLayerProxyModel

def show(dlg):
    dlg.exec_()
    QMessageBox.question(None, "t", "q", QMessageBox.Yes | QMessageBox.No)
    label.setAlignment(Qt.AlignLeft)
    push(level=Qgis.Warning)
    f = QgsField("n", QVariant.Int)
    combo.setFilters(QgsMapLayerProxyModel.Filter.NoSuchLayer)
    combo.activated[str].connect(print)
"""

GOOD_SNIPPET = """\
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import QAction, QMessageBox
from qgis.core import Qgis, QgsApplication, QgsTask

def show(dlg):
    dlg.exec()
    QMessageBox.question(None, "t", "q", QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No)
    label.setAlignment(Qt.AlignmentFlag.AlignLeft)
    push(level=Qgis.MessageLevel.Warning)
    QgsApplication.taskManager().addTask(QgsTask.fromFunction("x", print))
    flags = QgsTask.Flag.CanCancel
    if hasattr(Qgis, "LayerFilter"):
        flt = Qgis.LayerFilter.RasterLayer
"""


def test_checker_finds_each_kind_of_qt5_only_code(qgis_app):
    found = check_source(BAD_SNIPPET, "rsitr_qgis/bad.py")
    by_line = {(f.line, f.rule) for f in found}
    expected = {
        (1, "binding-import"),
        (2, "qvariant"),
        (3, "moved-class"),
        (4, "moved-class"),
        (8, "exec_"),
        (9, "unscoped-enum"),
        (10, "unscoped-enum"),
        (11, "unscoped-enum"),
        (12, "qvariant"),
        (13, "missing-name"),
        (14, "removed-in-qt6"),
    }
    assert expected <= by_line, sorted(expected - by_line)
    assert "Qt.AlignmentFlag.AlignLeft" in next(f.message for f in found if f.line == 10)
    assert "Qgis.MessageLevel.Warning" in next(f.message for f in found if f.line == 11)
    assert check_source(GOOD_SNIPPET, "rsitr_qgis/good.py") == []


def test_fallback_mark_is_honoured_only_in_qt_compat(qgis_app):
    line = "from qgis.PyQt.QtCore import QVariant  # qgis-3.22-fallback\n"
    assert check_source(line, "rsitr_qgis/qt_compat.py") == []
    assert [f.rule for f in check_source(line, "rsitr_qgis/dock.py")] == ["qvariant"]


def test_every_plugin_file_is_qt6_ready(qgis_app):
    files = sorted(PLUGIN_DIR.rglob("*.py"))
    assert len(files) >= 15 and any("setup" in f.parts for f in files)  # the whole package, sub-packages too
    found = check_tree()
    assert not found, "Qt6 blockers:\n" + "\n".join(map(str, found))


def test_metadata_declares_qgis_4():
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    parser.read(PROJECT_ROOT / "metadata.txt", encoding="utf-8")
    meta = parser["general"]
    assert meta["qgisMinimumVersion"] == "3.22"
    assert float(meta["qgisMaximumVersion"]) >= 4.0  # what QGIS 4 and plugins.qgis.org use to decide
    assert meta.get("supportsQt6", "").strip().lower() in ("true", "yes")  # Qt6 builds of QGIS 3.x check this


# ---------------------------------------------------------------- the Qt names, resolved against real PyQt6

# qgis.PyQt.QtWidgets on Qt6 re-exports these from QtGui (python/PyQt/PyQt/QtWidgets.py.in in QGIS)
QGIS_QT6_SHIM = {("QtWidgets", "QAction"): "QtGui", ("QtWidgets", "QShortcut"): "QtGui"}

PYQT6_RESOLVER = r"""
import importlib, json, sys
missing = []
for ref in json.load(sys.stdin):
    module = importlib.import_module("PyQt6." + ref["module"])
    obj = getattr(module, ref["names"][0], None)
    path = ref["module"] + "." + ref["names"][0]
    if obj is None:
        missing.append(f"{ref['where']}: PyQt6.{path} does not exist")
        continue
    for name in ref["names"][1:]:
        if not hasattr(obj, name):
            missing.append(f"{ref['where']}: PyQt6.{path}.{name} does not exist")
            break
        obj = getattr(obj, name)
        path += "." + name
        if callable(obj) and not isinstance(obj, type):
            break
print(json.dumps(missing))
"""


def qt_references(root: Path = PLUGIN_DIR) -> list[dict]:
    """Every ``qgis.PyQt`` name the plugin imports and every attribute chain used on it, with file:line."""
    refs: list[dict] = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(PROJECT_ROOT).as_posix()
        source = path.read_text(encoding="utf-8")
        lines = source.splitlines()
        tree = ast.parse(source)
        parents = {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
        local: dict[str, tuple[str, str]] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("qgis.PyQt."):
                module = node.module.split(".", 2)[2]
                for alias in node.names:
                    module_here = QGIS_QT6_SHIM.get((module, alias.name), module)
                    local[alias.asname or alias.name] = (module_here, alias.name)
                    refs.append({"where": f"{rel}:{node.lineno}", "module": module_here, "names": [alias.name]})
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute) or isinstance(parents.get(node), ast.Attribute):
                continue
            chain = _chain(node)
            if chain is None or chain[0] not in local:
                continue
            module, name = local[chain[0]]
            if rel in FALLBACK_FILES and FALLBACK_MARK in lines[node.lineno - 1]:
                continue  # Qt5-only on purpose (QGIS < 3.38)
            refs.append({"where": f"{rel}:{node.lineno}", "module": module, "names": [name, *chain[1]]})
    return refs


def test_qt_names_resolve_in_pyqt6(qgis_app):
    """Every Qt class, enum and member the plugin names exists in PyQt6 (a cached scratch venv with PyQt6)."""
    import json
    import subprocess

    from tests.plugin.pyqt6_env import pyqt6_python

    python = pyqt6_python()

    def resolve(refs: list[dict]) -> list[str]:
        out = subprocess.run(
            [python, "-c", PYQT6_RESOLVER], input=json.dumps(refs), capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0, out.stderr[-2000:]
        return json.loads(out.stdout)

    qt5_only = [
        {"where": "a.py:1", "module": "QtCore", "names": ["Qt", "AlignLeft"]},
        {"where": "a.py:2", "module": "QtWidgets", "names": ["QAction"]},
        {"where": "a.py:3", "module": "QtCore", "names": ["Qt", "AlignmentFlag", "AlignLeft"]},
    ]
    assert [m.split(":")[1] for m in resolve(qt5_only)] == ["1", "2"]  # the resolver does catch Qt5-only names
    refs = qt_references()
    assert len(refs) > 50 and any(r["names"][:2] == ["Qt", "ItemDataRole"] for r in refs)
    missing = resolve(refs)
    assert not missing, "Qt names missing in PyQt6:\n" + "\n".join(missing)
