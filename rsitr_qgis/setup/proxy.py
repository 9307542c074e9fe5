"""QGIS's proxy (Settings > Options > Network) as environment variables for pip and the model download.

pip and the engine's download (urllib) do not see QGIS's network settings; they read ``HTTP(S)_PROXY`` and
``NO_PROXY``. "Default proxy" (the system's) and a disabled proxy add nothing: the inherited environment and the
operating system's settings apply as they are.
"""

from __future__ import annotations

import urllib.parse

KEYS = ("proxyEnabled", "proxyType", "proxyHost", "proxyPort", "proxyUser", "proxyPassword", "noProxyUrls")


def proxy_env(values: dict) -> dict[str, str]:
    """``values``: QGIS's ``proxy/*`` settings by key name. Returns the variables to add (may be empty)."""
    if str(values.get("proxyEnabled", "")).lower() not in ("true", "1"):
        return {}
    kind = str(values.get("proxyType") or "DefaultProxy")
    host = str(values.get("proxyHost") or "").strip()
    if kind == "DefaultProxy" or not host:
        return {}
    scheme = "socks5" if kind == "Socks5Proxy" else "http"
    user = str(values.get("proxyUser") or "")
    auth = ""
    if user:
        password = str(values.get("proxyPassword") or "")
        auth = urllib.parse.quote(user, safe="") + (":" + urllib.parse.quote(password, safe="") if password else "")
        auth += "@"
    port = str(values.get("proxyPort") or "").strip()
    url = f"{scheme}://{auth}{host}" + (f":{port}" if port and port != "0" else "")
    env = {name: url for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")}
    excluded = values.get("noProxyUrls") or []
    if isinstance(excluded, str):
        excluded = [u for u in excluded.replace("|", ",").split(",") if u.strip()]
    hosts = [urllib.parse.urlsplit(u).hostname or u.strip() for u in excluded]
    no_proxy = ",".join(["127.0.0.1", "localhost", *[h for h in hosts if h]])
    env["NO_PROXY"] = env["no_proxy"] = no_proxy
    return env


def qgis_proxy_env() -> dict[str, str]:
    """``proxy_env`` of the current QGIS settings."""
    from qgis.core import QgsSettings

    s = QgsSettings()
    return proxy_env({key: s.value(f"proxy/{key}", "") for key in KEYS})
