"""Engine errors: one-line messages that the CLI prints and the API maps to 4xx status codes."""

from __future__ import annotations


class EngineError(Exception):
    """Base class: a problem the user can act on. ``status`` is the HTTP status the API answers with."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))  # always one line

    @property
    def message(self) -> str:
        return str(self)


class BadInput(EngineError):
    """Invalid parameters or unreadable input data."""

    status = 400


class Forbidden(EngineError):
    """A path outside the allowed roots."""

    status = 403


class NotFound(EngineError):
    """Unknown raster, store, model or job."""

    status = 404


class Conflict(EngineError):
    """A stale or busy store."""

    status = 409


class CorruptData(EngineError):
    """A corrupted model bundle or tile store."""

    status = 422


class DiskFull(EngineError, OSError):
    """No space (or file size limit) left while writing a store; still an ``OSError`` for callers."""

    status = 400


class Cancelled(EngineError):
    """An index run cancelled by the user (the store stays resumable)."""

    status = 409


def one_line(exc: BaseException) -> str:
    """A single-line description of any exception (no traceback)."""
    if isinstance(exc, EngineError):
        return exc.message
    text = " ".join(str(exc).split()) or exc.__class__.__name__
    return f"{exc.__class__.__name__}: {text}"
