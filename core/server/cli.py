"""``likeness serve``: run the core process that the Blender add-on talks to."""

from __future__ import annotations

import json
import os
import secrets
import signal
import sys

from bridge.protocol import PROTOCOL_VERSION
from bridge.server import Server

from .session import JobRegistry, Session

TOKEN_ENV = "LIKENESS_TOKEN"


def resolve_token(token_file: str | None) -> str:
    """Token from ``token_file``, else $LIKENESS_TOKEN, else a fresh random one."""
    from core.cli import CommandError

    if token_file:
        try:
            with open(token_file, encoding="utf-8") as fh:
                token = fh.read().strip()
        except OSError as exc:
            raise CommandError(f"cannot read --token-file {token_file}: {exc.strerror}") from None
        if not token:
            raise CommandError(f"--token-file {token_file} is empty")
        return token
    return os.environ.get(TOKEN_ENV, "").strip() or secrets.token_hex(32)


def write_ready_file(path: str, info: dict) -> None:
    """Write ``info`` as JSON, owner-only (0600), atomically: readers never see half a file."""
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(info, fh)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _serve(args) -> int:
    from core.cli import CommandError

    token = resolve_token(args.token_file)
    registry = JobRegistry()
    try:
        server = Server(token, lambda conn: Session(conn, registry), port=args.port, unix_path=args.unix)
    except OSError as exc:
        raise CommandError(f"cannot listen: {exc}") from None
    # SIGTERM (what a parent sends to stop the core) ends the accept loop cleanly
    signal.signal(signal.SIGTERM, lambda *_: server.shutdown())
    info = {**server.address, "token": token, "protocol": PROTOCOL_VERSION, "pid": os.getpid()}
    if "host" not in info:
        info["host"] = None
    if args.ready_file:
        write_ready_file(args.ready_file, info)
    where = f"unix:{info['unix']}" if args.unix else f"tcp://{info['host']}:{info['port']}"
    print(f"likeness core listening on {where} (protocol {PROTOCOL_VERSION}, pid {os.getpid()})", flush=True)
    try:
        server.serve_forever()
    finally:
        if args.ready_file:
            try:
                os.unlink(args.ready_file)
            except FileNotFoundError:
                pass
    print("likeness core stopped", file=sys.stderr, flush=True)
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser(
        "serve",
        help="run the core process for the Blender add-on",
        description="Run the core: listens on loopback TCP (or a Unix socket), one isolated session per "
        "client. On a remote GPU machine, reach it through an SSH tunnel (ssh -L PORT:127.0.0.1:PORT).",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: any free port; default)")
    where.add_argument("--unix", metavar="PATH", help="listen on a Unix socket (owner-only) instead of TCP")
    p.add_argument("--token-file", metavar="F", help=f"read the session token from F (else ${TOKEN_ENV}, else a new one)")
    p.add_argument("--ready-file", metavar="F", help='when listening, write {"host", "port"|"unix", "token", "protocol", "pid"} to F (mode 0600)')
    p.set_defaults(func=_serve)
