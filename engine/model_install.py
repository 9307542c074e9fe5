"""Installing model bundles from release archives: resumable download, sha256 check, atomic unpack.

A release archive is a zip holding one top-level folder (the bundle, docs/contracts.md section 1); its file name
carries the name, version and the first 16 hex digits of its sha256 (``pir-lite-0.3.0-<sha16>.zip``). Downloads
go to ``<models dir>/.downloads/<file>.part`` and resume with an HTTP ``Range`` request; the archive is checked
against the expected sha256 before anything is unpacked; the bundle is unpacked into a temporary folder beside
its target, validated with :func:`engine.bundle.load_bundle`, then swapped into place, so a failed, cancelled or
interrupted install never touches a bundle already installed. Standard library only (urllib honours the
``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` variables).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from engine.bundle import load_bundle
from engine.errors import BadInput, Cancelled, CorruptData, EngineError, NotFound

CHUNK_BYTES = 1 << 20
TIMEOUT_S = 30.0
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
DOWNLOADS = ".downloads"
ALLOWED_SCHEMES = ("http", "https", "file")
MAX_UNPACKED_BYTES = 2 * 1024**3  # a bundle is tens of MB; refuse zip bombs

Progress = Callable[[int, int], None]  # (bytes done, bytes total or 0 when unknown)


class DownloadError(EngineError):
    """The release archive could not be fetched (HTTP error, no network, truncated transfer)."""

    status = 502


@dataclass(frozen=True)
class InstallResult:
    """What :func:`install_archive_url` installed."""

    name: str
    version: str
    path: Path
    archive_bytes: int
    resumed_from: int


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK_BYTES), b""):
            h.update(block)
    return h.hexdigest()


def check_sha256(value: str) -> str:
    """The expected checksum, lower-cased; a one-line error when it is not 64 hex digits."""
    value = value.strip().lower()
    if not SHA256_RE.match(value):
        raise BadInput(f"--sha256 must be 64 hex digits, got {value!r}")
    return value


def _archive_name(url: str) -> str:
    if "://" in url:
        name = PurePosixPath(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).name
    else:
        name = Path(url).name
    if not name.endswith(".zip"):
        raise BadInput(f"a model release archive is a .zip file, got {url!r}")
    return name


def download(
    url: str,
    dest: Path,
    *,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
    timeout: float = TIMEOUT_S,
) -> int:
    """Fetch ``url`` into ``dest`` (``dest.part`` while incomplete, resumed with ``Range``); returns the resumed offset.

    ``file://`` URLs and plain paths work too (offline installs from a folder).
    """
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if "://" not in url:
        url = Path(url).expanduser().resolve().as_uri()
    if urllib.parse.urlsplit(url).scheme not in ALLOWED_SCHEMES:
        raise BadInput(f"a model archive URL is http(s):// or file:// (or a path), got {url!r}")
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "rsitr-engine"})
    if offset and url.startswith(("http://", "https://")):
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # nosec B310 - scheme checked above
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # already complete on our side (or the file shrank): start over once
            part.unlink()
            return download(url, dest, progress=progress, cancelled=cancelled, timeout=timeout)
        raise DownloadError(f"download failed: HTTP {exc.code} {exc.reason} for {url}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"download failed: cannot reach {url} ({' '.join(str(reason).split())})") from None
    with response:
        status = getattr(response, "status", 200)
        if offset and status != 206:  # the server ignored Range: start from scratch
            offset = 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else 0
        done = offset
        with open(part, "ab" if offset else "wb") as f:
            while True:
                if cancelled is not None and cancelled():
                    raise Cancelled("model download cancelled (the partial download is kept and resumes next time)")
                try:
                    block = response.read(CHUNK_BYTES)
                except (TimeoutError, ConnectionError, OSError) as exc:
                    raise DownloadError(f"download interrupted after {done} bytes: {exc}") from None
                if not block:
                    break
                f.write(block)
                done += len(block)
                if progress is not None:
                    progress(done, total)
    if total and done != total:
        raise DownloadError(f"download truncated: got {done} of {total} bytes from {url} (run again to resume)")
    os.replace(part, dest)
    return offset


def _safe_members(archive: zipfile.ZipFile) -> str:
    """The archive's single top-level folder; rejects absolute paths, ``..``, links and oversize content."""
    tops: set[str] = set()
    size = 0
    for info in archive.infolist():
        parts = PurePosixPath(info.filename).parts
        if not parts or info.filename.startswith("/") or ".." in parts or ":" in parts[0]:
            raise CorruptData(f"unsafe path in model archive: {info.filename!r}")
        if (info.external_attr >> 16) & 0o170000 == 0o120000:
            raise CorruptData(f"symbolic link in model archive: {info.filename!r}")
        tops.add(parts[0])
        size += info.file_size
    if len(tops) != 1:
        raise CorruptData(f"a model archive holds exactly one folder, found {sorted(tops) or 'nothing'}")
    if size > MAX_UNPACKED_BYTES:
        raise CorruptData(f"model archive unpacks to {size / 1e9:.1f} GB, over the 2 GB limit")
    return tops.pop()


def unpack_bundle(archive_path: Path, models_dir: Path) -> tuple[Path, str, str]:
    """Unpack a verified archive into ``models_dir/<folder>`` atomically; returns (path, name, version)."""
    models_dir.mkdir(parents=True, exist_ok=True)
    tmp = models_dir / f".unpack-{uuid.uuid4().hex[:8]}"
    try:
        try:
            with zipfile.ZipFile(archive_path) as archive:
                top = _safe_members(archive)
                archive.extractall(tmp)
        except zipfile.BadZipFile as exc:
            raise CorruptData(f"model archive is not a valid zip file: {exc}") from None
        bundle = load_bundle(tmp / top)  # CorruptData when a file is missing or model.json is wrong
        target = models_dir / top
        old = models_dir / f".old-{uuid.uuid4().hex[:8]}"
        if target.exists():
            os.replace(target, old)  # two renames: a directory cannot replace another one on Windows
        os.replace(tmp / top, target)
        shutil.rmtree(old, ignore_errors=True)
        return target, bundle.meta.name, bundle.meta.version
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def install_archive_url(
    url: str,
    sha256: str,
    models_dir: Path,
    *,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> InstallResult:
    """Download (resuming), verify and unpack one release archive into ``models_dir``."""
    expected = check_sha256(sha256)
    name = _archive_name(url)
    archive = models_dir / DOWNLOADS / name
    if archive.exists() and sha256_file(archive) != expected:
        archive.unlink()  # a stale complete file under the same name
    resumed = 0
    if not archive.exists():
        resumed = download(url, archive, progress=progress, cancelled=cancelled)
    actual = sha256_file(archive)
    if actual != expected:
        archive.unlink()
        raise CorruptData(f"checksum mismatch for {name}: expected sha256 {expected[:16]}..., got {actual[:16]}...")
    nbytes = archive.stat().st_size
    path, bundle_name, version = unpack_bundle(archive, models_dir)
    archive.unlink()
    return InstallResult(name=bundle_name, version=version, path=path, archive_bytes=nbytes, resumed_from=resumed)


def remove_bundle(name: str, models_dir: Path) -> Path:
    """Delete the installed bundle folder ``models_dir/<name>``."""
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise BadInput(f"not a model name: {name!r}")
    target = models_dir / name
    if not (target / "model.json").is_file():
        raise NotFound(f"no installed model named {name!r} in {models_dir}")
    trash = models_dir / f".old-{uuid.uuid4().hex[:8]}"
    os.replace(target, trash)
    shutil.rmtree(trash)
    return target
