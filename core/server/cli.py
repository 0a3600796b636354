"""``likeness serve``: run the core process that the Blender add-on talks to."""

from __future__ import annotations

import json
import os
import secrets
import signal
import sys

from bridge.protocol import PROTOCOL_VERSION
from bridge.server import IDLE_TIMEOUT_S, Server

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
    """Write ``info`` as JSON, owner-only (0600), atomically: readers never see half a file.

    The temporary name is created with O_EXCL | O_NOFOLLOW, so a link planted
    there never receives the token.
    """
    from core.files import create_new

    tmp = f"{path}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        with create_new(tmp, 0o600) as fh:
            fh.write(json.dumps(info).encode())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# glibc: blocks of at least this many bytes come straight from the OS and go back to it when
# freed, so a burst (a big photo, a template reply) leaves no lasting growth in a long-lived core.
MMAP_THRESHOLD_BYTES = 1 << 20


def release_large_blocks() -> None:
    """Ask glibc (when it is the C library) to map large blocks on their own (M_MMAP_THRESHOLD)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        libc = None
    if libc is not None and hasattr(libc, "mallopt"):
        libc.mallopt(-3, MMAP_THRESHOLD_BYTES)  # M_MMAP_THRESHOLD (also ends glibc's sliding threshold)


def _serve(args) -> int:
    from core.cli import CommandError

    if not 0 <= args.port <= 65535:
        raise CommandError(f"--port {args.port} is not a TCP port; use 0..65535 (0: any free port)")
    if args.ready_file and not os.path.isdir(os.path.dirname(os.path.abspath(args.ready_file))):
        raise CommandError(f"--ready-file {args.ready_file}: its folder does not exist")
    if args.idle_timeout < 0:
        raise CommandError("--idle-timeout must be >= 0 seconds (0: never)")
    if args.threads < 0:
        raise CommandError(f"--threads must be 0 (torch's default) or more, got {args.threads}")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    token = resolve_token(args.token_file)
    # The fit's modules (torch) load only once the command line has passed its checks: a typo is
    # answered at once instead of after the seconds torch takes to import.
    from .session import JobRegistry, Session

    release_large_blocks()
    registry = JobRegistry()
    try:
        server = Server(token, lambda conn: Session(conn, registry), port=args.port, unix_path=args.unix,
                        idle_timeout=args.idle_timeout, allow_paths=args.allow_paths)
    except OSError as exc:
        raise CommandError(f"cannot listen: {exc}") from None
    # SIGTERM (what a parent sends) and SIGINT (Ctrl-C) end the accept loop; serve_forever then
    # cancels every job and joins its thread, so no torch thread outlives the interpreter.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: server.shutdown())
    info = {**server.address, "token": token, "protocol": PROTOCOL_VERSION, "pid": os.getpid()}
    if "host" not in info:
        info["host"] = None
    try:
        if args.ready_file:
            try:
                write_ready_file(args.ready_file, info)
            except OSError as exc:
                raise CommandError(f"cannot write --ready-file {args.ready_file}: {exc.strerror}") from None
        where = f"unix:{info['unix']}" if args.unix else f"tcp://{info['host']}:{info['port']}"
        print(f"likeness core listening on {where} (protocol {PROTOCOL_VERSION}, pid {os.getpid()})", flush=True)
        server.serve_forever()
    finally:
        server.shutdown()
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
    p.add_argument("--allow-paths", action="store_true",
                   help="open photo and template paths that clients send (the add-on's own local core); "
                        "otherwise only a same-user Unix-socket client may send paths, others send files inline")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads for fits (default 0: torch's choice, one per core); 1 suits a machine busy "
                        "with other work, such as Blender drawing the live preview on two cores")
    p.add_argument("--idle-timeout", type=float, default=IDLE_TIMEOUT_S, metavar="S",
                   help=f"drop a client that sends nothing for S seconds while none of its jobs runs "
                        f"(default {IDLE_TIMEOUT_S:g}; 0: never)")
    p.set_defaults(func=_serve)
