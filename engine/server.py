"""``python -m engine serve``: token file, bind checks, uvicorn, and the JSON ready line."""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import stat
import sys
import threading
import time
from pathlib import Path

from engine.errors import BadInput
from engine.settings import current


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_or_create_token(path: Path) -> str:
    """Read the token file, or create it (mode 0600, parent 0700) with a fresh random token."""
    path = Path(path).expanduser()
    if path.exists():
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            os.chmod(path, 0o600)
        token = path.read_text(encoding="utf-8").strip()
        if len(token) < 16:
            raise BadInput(f"token in {path} is shorter than 16 characters")
        return token
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(token + "\n")
    return token


def _watch_lifelines(args, server) -> None:
    """``--parent-pid`` / ``--exit-on-stdin-eof``: stop the server when the parent goes away."""
    from engine.lifeline import watch_parent, watch_stdin

    def request_exit() -> None:
        server.should_exit = True

    if getattr(args, "parent_pid", None) is not None:
        watch_parent(args.parent_pid, request_exit)
    if getattr(args, "exit_on_stdin_eof", False):
        watch_stdin(request_exit)


def serve(args) -> int:
    """Start the service; prints ``{"event": "ready", ...}`` on stdout once the socket listens."""
    import uvicorn

    from engine.api import create_app
    from engine.config import default_allowed_roots, default_token_file, require_model_dir
    from engine.service import Engine

    explicit_token = bool(args.token_file or current().token)
    if not is_loopback(args.host) and not explicit_token:
        raise BadInput(f"refusing to bind non-loopback address {args.host} without an explicit --token-file")
    if not 0 <= args.port <= 65535:
        raise BadInput(f"port must be 0..65535, got {args.port}")
    if getattr(args, "parent_pid", None) is not None:
        from engine.lifeline import pid_alive

        if not pid_alive(args.parent_pid):
            raise BadInput(f"--parent-pid {args.parent_pid} is not a running process")
    token_file = Path(args.token_file).expanduser() if args.token_file else default_token_file()
    token = current().token or load_or_create_token(token_file)
    roots = [Path(r).expanduser() for r in args.allowed_root] if args.allowed_root else default_allowed_roots()
    for r in roots:
        if not r.is_dir():
            raise BadInput(f"allowed root is not a directory: {r}")
    engine = Engine(default_model=require_model_dir(args.model), caption_bank=args.captions)
    engine.encoder()  # load the default bundle before announcing readiness
    app = create_app(engine, token, roots)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)

    def announce() -> None:
        while not server.started:
            if getattr(server, "should_exit", False):
                return
            time.sleep(0.02)
        port = args.port
        try:
            port = server.servers[0].sockets[0].getsockname()[1]
        except (AttributeError, IndexError):
            pass
        host = f"[{args.host}]" if ":" in args.host else args.host
        print(json.dumps({"event": "ready", "url": f"http://{host}:{port}", "token_file": str(token_file)}), flush=True)

    threading.Thread(target=announce, daemon=True).start()
    _watch_lifelines(args, server)
    server.run()
    if not server.started:
        print(f"error: could not listen on {args.host}:{args.port}", file=sys.stderr)
        return 2
    return 0
