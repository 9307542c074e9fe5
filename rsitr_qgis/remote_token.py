"""The remote engine's token, kept in QGIS's authentication database (encrypted with the master password).

QgsSettings holds only the auth config id (``rsitr/authcfg``). The config uses QGIS's "Basic" method as a
container: its password is the token, which the client sends as ``Authorization: Bearer <token>``. A token
that an older plugin version left in plain settings (``rsitr/token``) is moved there on first use and deleted.
Call from the main thread: QGIS may ask for the master password.
"""

from __future__ import annotations

from qgis.core import Qgis, QgsApplication, QgsAuthMethodConfig, QgsMessageLog

from .errors import EngineError

AUTH_METHOD = "Basic"
CONFIG_NAME = "RSITR engine token"
_CACHE: dict[str, str] = {}  # auth config id -> token, so the master password is asked once per session


def _manager():
    return QgsApplication.authManager()


def _log(text: str, level=Qgis.MessageLevel.Info) -> None:
    QgsMessageLog.logMessage(text, "RSITR", level)


def load_token(authcfg: str) -> str:
    """The token stored under ``authcfg``; EngineError when the database cannot give it (locked, missing)."""
    if authcfg in _CACHE:
        return _CACHE[authcfg]
    config = QgsAuthMethodConfig()
    ok = _manager().loadAuthenticationConfig(authcfg, config, True)
    ok = ok[0] if isinstance(ok, tuple) else ok
    if not ok or not config.isValid(True):
        raise EngineError(
            f"the remote engine token (QGIS authentication config {authcfg}) cannot be read: "
            "unlock the QGIS authentication database or enter the token again in the RSITR settings"
        )
    token = config.config("password")
    _CACHE[authcfg] = token
    return token


def save_token(settings, token: str) -> str:
    """Store ``token`` in the authentication database (updating this plugin's config); returns the config id.

    The plain ``token`` setting is removed. EngineError when the database does not accept it (e.g. the
    master password was not given).
    """
    manager = _manager()
    authcfg = settings.get("authcfg")
    config = QgsAuthMethodConfig(AUTH_METHOD)
    config.setName(CONFIG_NAME)
    config.setConfig("username", "")
    config.setConfig("password", token)
    if authcfg and authcfg in manager.configIds():
        config.setId(authcfg)
        ok = manager.updateAuthenticationConfig(config)
    else:
        ok = manager.storeAuthenticationConfig(config)
    ok = ok[0] if isinstance(ok, tuple) else ok
    if not ok or not config.id():
        raise EngineError("the token was not saved: the QGIS authentication database is locked or unavailable")
    settings.set("authcfg", config.id())
    settings.reset("token")
    settings.sync()
    _CACHE.pop(authcfg, None)
    _CACHE[config.id()] = token
    return config.id()


def forget_token(settings) -> None:
    """Remove this plugin's auth config and its settings entries."""
    authcfg = settings.get("authcfg")
    if authcfg:
        _manager().removeAuthenticationConfig(authcfg)
        _CACHE.pop(authcfg, None)
    settings.reset("authcfg")
    settings.reset("token")
    settings.sync()


def migrate_plain_token(settings) -> bool:
    """Move a plain-settings token into the authentication database once; True when one was moved.

    If the database refuses it (no master password given), the plain token stays until the next try.
    """
    plain = settings.get("token")
    if not plain:
        return False
    try:
        save_token(settings, plain)
    except EngineError as exc:
        _log(f"remote token left in plain settings for now: {exc}", Qgis.MessageLevel.Warning)
        return False
    _log("remote engine token moved from plain settings into the QGIS authentication database")
    return True


def remote_token(settings) -> str:
    """The token to send to the remote engine ("" when none is configured); migrates a plain token first."""
    if settings.get("token"):
        if not migrate_plain_token(settings):
            return settings.get("token")
    authcfg = settings.get("authcfg")
    return load_token(authcfg) if authcfg else ""
