"""Static import rules between the packages (see docs/contracts.md)."""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

ENGINE_FORBIDDEN = frozenset(
    {"torch", "torchvision", "open_clip", "timm", "transformers", "training", "sentence_transformers", "rsitr_qgis"}
)
PLUGIN_ALLOWED = frozenset({"qgis", "PyQt5", "rsitr_qgis", "processing"}) | frozenset(sys.stdlib_module_names)


@dataclass(frozen=True)
class Violation:
    """One import that breaks a rule."""

    path: str
    line: int
    module: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line} imports {self.module}"


def imported_modules(source: str) -> list[tuple[int, str]]:
    """Absolute modules imported by a source text, with line numbers (relative imports are skipped)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) in {"import_module", "__import__"}
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            found.append((node.lineno, str(node.args[0].value)))
    return found


def check_source(
    source: str, path: str, *, forbidden: frozenset[str] | None = None, allowed: frozenset[str] | None = None
) -> list[Violation]:
    """Violations in one file: top-level module in ``forbidden``, or not in ``allowed``."""
    out = []
    for line, module in imported_modules(source):
        top = module.split(".")[0]
        if (forbidden is not None and top in forbidden) or (allowed is not None and top not in allowed):
            out.append(Violation(path, line, module))
    return out


def check_tree(root: Path, **rules: frozenset[str]) -> list[Violation]:
    """Violations in every ``.py`` file below ``root``."""
    out: list[Violation] = []
    for file in sorted(root.rglob("*.py")):
        out += check_source(file.read_text(encoding="utf-8"), str(file), **rules)
    return out
