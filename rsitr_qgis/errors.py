"""The plugin's one error type for engine problems, always a single user-facing line."""

from __future__ import annotations


def one_line(text: object, limit: int = 300) -> str:
    """``text`` on one line (whitespace collapsed), cut to ``limit`` characters."""
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


class EngineError(Exception):
    """A one-line, user-facing error from (or about) the engine."""

    def __init__(self, message: str, status: int | None = None, unreachable: bool = False):
        super().__init__(one_line(message))
        self.status = status
        self.unreachable = unreachable
