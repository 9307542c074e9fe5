"""Atomic file writes: write to a temporary name, fsync, rename into place; a full disk is one clear error."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from engine.errors import DiskFull

_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def fsync_dir(path: Path) -> None:
    """Flush a directory entry (a rename) to disk where the platform allows it."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def tmp_name(path: Path) -> Path:
    """A hidden temporary name beside ``path``, unique per process and thread."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")


def no_space(exc: OSError) -> bool:
    """ENOSPC-like errors, and numpy's short write ("N requested and M written", no errno) on a full disk."""
    return exc.errno in _NO_SPACE or (exc.errno is None and "requested and" in str(exc) and "written" in str(exc))


def atomic_write(path: Path, writer: Callable[[Path], object]) -> None:
    """Call ``writer(tmp_path)``, fsync, then rename over ``path``; the temp file is removed on failure."""
    path = Path(path)
    tmp = tmp_name(path)
    try:
        writer(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if no_space(exc) and not isinstance(exc, DiskFull):
            raise DiskFull(
                f"disk full while writing {path.name} in {path.parent}: free some space or point "
                "RSITR_CACHE at another disk; the store stays resumable"
            ) from None
        raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    fsync_dir(path.parent)


def atomic_write_json(path: Path, data: dict) -> None:
    atomic_write(path, lambda t: t.write_text(json.dumps(data, indent=1), encoding="utf-8"))


def atomic_save_npy(path: Path, arr: np.ndarray) -> None:
    def _w(t: Path) -> None:
        with open(t, "wb") as fh:
            np.save(fh, arr, allow_pickle=False)

    atomic_write(path, _w)


def atomic_save_npz(path: Path, **arrays) -> None:
    def _w(t: Path) -> None:
        buf = io.BytesIO()  # zip in memory: a failed file write then leaves no half-closed ZipFile behind
        np.savez(buf, **arrays)
        t.write_bytes(buf.getvalue())

    atomic_write(path, _w)
