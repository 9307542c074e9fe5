"""Remote rasters (COGs behind http/https URLs, e.g. STAC asset hrefs): scheme check, GDAL path, fingerprint.

Pixels are read by GDAL through ``/vsicurl/`` (HTTP Range requests; network settings in engine/settings.py).
A remote raster's identity is what its server says in a HEAD response: size, ETag and Last-Modified (a local
file's mtime does not exist there); a server that sends neither ETag nor Last-Modified gets the sha1 of the first
MiB (one Range request) added, so a replaced file is still noticed.
"""

from __future__ import annotations

import hashlib
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from engine.errors import BadInput, EngineError, NotFound

SCHEMES = ("http", "https")
TIMEOUT_S = 30.0
# A store's staleness check asks the server again after this many seconds (each search opens its stores).
FINGERPRINT_TTL_S = 60.0
SAMPLE_BYTES = 1 << 20


class RemoteUnreachable(EngineError):
    """The server of a remote raster did not answer (network down, timeout, 5xx)."""

    status = 502


def is_url(href: str) -> bool:
    """True for anything with a URL scheme (``scheme://``), supported or not; Windows drive letters are paths."""
    scheme = urllib.parse.urlsplit(str(href)).scheme
    return len(scheme) > 1 and "://" in str(href)


def check_url(href: str) -> str:
    """``href`` when it is an http(s) URL with a host, else one clear BadInput line."""
    parts = urllib.parse.urlsplit(href)
    if parts.scheme.lower() not in SCHEMES:
        raise BadInput(f"remote raster {href}: only http:// and https:// URLs are supported, not {parts.scheme}://")
    if not parts.hostname:
        raise BadInput(f"remote raster {href}: the URL has no host")
    return href


def gdal_path(href: str) -> str:
    """The path GDAL opens for a remote raster (``/vsicurl/`` reads byte ranges on demand)."""
    return "/vsicurl/" + check_url(href)


def href_of(gdal_name: str) -> str | None:
    """The URL of a ``/vsicurl/`` GDAL path, None for local paths."""
    return gdal_name[len("/vsicurl/") :] if gdal_name.startswith("/vsicurl/") else None


def _request(url: str, method: str, headers: dict | None = None) -> tuple[dict, bytes]:
    req = urllib.request.Request(check_url(url), method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:  # noqa: S310  # nosec B310 - http(s) checked
            return {k.lower(): v for k, v in resp.headers.items()}, resp.read() if method == "GET" else b""
    except urllib.error.HTTPError as exc:
        if exc.code in (404, 410):
            raise NotFound(f"remote raster not found (HTTP {exc.code}): {url}") from None
        if exc.code in (401, 403):
            raise BadInput(f"remote raster not accessible (HTTP {exc.code}): {url}") from None
        raise RemoteUnreachable(f"remote raster {url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RemoteUnreachable(f"remote raster {url} unreachable: {reason}") from None


def fingerprint(url: str) -> dict:
    """Identity of a remote raster: ``{"size", "etag", "last_modified"}`` (+ ``sha1`` of the first MiB when the
    server sends no validator). NotFound for 404/410, RemoteUnreachable when the server does not answer."""
    head, _ = _request(url, "HEAD")
    size = head.get("content-length")
    fp = {
        "size": int(size) if size and size.isdigit() else None,
        "etag": head.get("etag"),
        "last_modified": head.get("last-modified"),
    }
    if not fp["etag"] and not fp["last_modified"]:
        _, body = _request(url, "GET", {"Range": f"bytes=0-{SAMPLE_BYTES - 1}"})
        fp["sha1"] = hashlib.sha1(body[:SAMPLE_BYTES], usedforsecurity=False).hexdigest()
    return fp


_CACHE: dict[str, tuple[float, dict | None]] = {}
_CACHE_LOCK = threading.Lock()


def current_fingerprint(url: str) -> dict | None:
    """The fingerprint now (asked again after ``FINGERPRINT_TTL_S``); None when the server says it is gone.
    RemoteUnreachable when the server does not answer (the caller decides: indexed embeddings stay searchable)."""
    now = time.monotonic()
    with _CACHE_LOCK:
        hit = _CACHE.get(url)
    if hit is not None and now - hit[0] < FINGERPRINT_TTL_S:
        return hit[1]
    try:
        fp: dict | None = fingerprint(url)
    except NotFound:
        fp = None
    with _CACHE_LOCK:
        if len(_CACHE) > 4096:
            _CACHE.clear()
        _CACHE[url] = (now, fp)
    return fp
