"""Server plumbing: listening socket, handshake, per-connection reader and writer.

What a connection *does* is injected: ``Server(token, handler_factory)`` calls
``handler_factory(connection)`` after a successful handshake and feeds the
returned handler every valid message (``handler.on_message(msg)``) from the
connection's reader thread; ``handler.on_close()`` runs once when the
connection ends for any reason. Each connection is its own session: several
clients may be connected at once and never see each other's jobs.

Outbound messages go through a queue drained by a writer thread. Frames and
progress are conflated: only the newest unsent one per (kind, job) is kept,
and it is flushed before that job's final message so a result never overtakes
its last frame.
"""

from __future__ import annotations

import collections
import errno
import hmac
import os
import socket
import stat
import struct
import threading
import time
import traceback

from . import schema
from ._version import __version__
from .protocol import (
    MAX_HELLO_BYTES,
    MAX_MESSAGE_BYTES,
    PROTOCOL_MAJOR,
    PROTOCOL_VERSION,
    FramingError,
    Message,
    ProtocolError,
    encode,
    read_message,
)

LOOPBACK = "127.0.0.1"
# From connect to authenticated, however the bytes trickle in.
HELLO_TIMEOUT_S = 5.0
# Bytes of unconflated messages waiting for a client (one message always fits);
# only a client that stopped reading gets here, and it is dropped.
MAX_QUEUED_BYTES = 64 * 1024 * 1024
# Clients connected at once (authenticated or not); more are told "unavailable".
MAX_CONNECTIONS = 16
# An authenticated client that sends nothing this long, with no job running, is dropped (0: never).
IDLE_TIMEOUT_S = 900.0
# The accept loop wakes this often to notice shutdown().
_ACCEPT_POLL_S = 0.2


def error_message(code: str, message: str, job: str | None = None, tb: str | None = None,
                  about: str | None = None) -> Message:
    """An ``error``; ``about`` is the kind of the message that caused it."""
    fields = {"code": code, "message": message}
    if about:
        fields["about"] = about
    if tb:
        fields["traceback"] = tb
    return Message(schema.ERROR, job=job, fields=fields)


# accept() errors that lose one client and leave the listener working.
_TRANSIENT_ACCEPT_ERRORS = {errno.ECONNABORTED, errno.EPROTO, errno.EMFILE, errno.ENFILE, errno.ENOBUFS,
                            errno.ENOMEM, errno.EINTR}


class Connection:
    """One authenticated client. ``send`` may be called from any thread."""

    def __init__(self, sock: socket.socket, server: "Server"):
        self.sock = sock
        self.server = server
        self.session_id = f"s{next(server._ids)}"
        self.closed = threading.Event()
        self._cond = threading.Condition()
        self._queue: collections.deque[Message] = collections.deque()
        self._conflated: dict[tuple[str, str | None], Message] = {}
        self._queued_bytes = 0
        self._sending = False  # the writer holds a message it took off the queue and has not sent yet
        self._handler = None
        self.opened = time.monotonic()
        self.last_active = self.opened
        self.authenticated = False
        self.stopping = False  # the sweep has started this connection's stop: it starts it once
        self.may_open_paths = server.allow_paths or _same_user(sock)

    # -- sending (any thread) ----------------------------------------------
    def send(self, msg: Message) -> None:
        """Queue ``msg``; frames/progress replace an unsent one of the same job."""
        overflow = False
        with self._cond:
            if self.closed.is_set():
                return
            if msg.kind in schema.CONFLATED_KINDS:
                self._conflated.pop((msg.kind, msg.job), None)  # re-insert at the end: round robin
                self._conflated[(msg.kind, msg.job)] = msg
            else:
                if msg.job is not None and schema.ends_job(msg):
                    for kind in schema.CONFLATED_KINDS:
                        pending = self._conflated.pop((kind, msg.job), None)
                        if pending is not None:
                            self._queue.append(pending)
                size = _approx_bytes(msg)
                overflow = bool(self._queue) and self._queued_bytes + size > self.server.max_queued_bytes
                self._queue.append(msg)
                self._queued_bytes += size
            self._cond.notify_all()
        if overflow:
            self.close()  # the client stopped reading: drop it rather than grow without bound

    def wait_frame_slot(self, job: str, timeout: float | None = None) -> bool:
        """Block until ``job`` has no unsent frame (the writer took it). False on timeout or close."""
        with self._cond:
            ok = self._cond.wait_for(
                lambda: (schema.FRAME, job) not in self._conflated or self.closed.is_set(), timeout
            )
            return ok and not self.closed.is_set()

    def wait_sent(self, timeout: float | None = None) -> None:
        """Block until every queued message has been handed to the socket (or the connection closed)."""
        with self._cond:
            self._cond.wait_for(self._drained, timeout)

    def _drained(self) -> bool:
        """Nothing queued and nothing taken off the queue still being written (under ``_cond``): a
        close now loses no message (the writer takes a message off the queue before it sends it)."""
        return (not self._queue and not self._sending) or self.closed.is_set()

    def close(self) -> None:
        with self._cond:
            if self.closed.is_set():
                return
            self.closed.set()
            self._queue.clear()
            self._queued_bytes = 0
            self._conflated.clear()
            self._cond.notify_all()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # -- threads ------------------------------------------------------------
    def _writer(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._conflated or self.closed.is_set())
                if self.closed.is_set():
                    return
                if self._queue:
                    msg = self._queue.popleft()
                    self._queued_bytes -= _approx_bytes(msg)
                else:
                    msg = self._conflated.pop(next(iter(self._conflated)))
                self._sending = True
                self._cond.notify_all()  # wakes wait_frame_slot
            try:
                data = encode(msg, self.server.max_message_bytes)
            except ProtocolError as exc:
                data = encode(error_message(schema.E_FAILED, f"core could not encode its reply: {exc}", msg.job))
            try:
                self.sock.sendall(data)
            except OSError:
                self.close()
                return
            finally:
                with self._cond:
                    self._sending = False
                    self._cond.notify_all()  # wakes wait_sent, stop and _finish

    def _send_now(self, msg: Message) -> None:
        """Send synchronously (handshake only, before the writer runs)."""
        try:
            self.sock.sendall(encode(msg))
        except OSError:
            pass

    def _handshake(self, stream) -> bool:
        # the server's sweep closes the socket when the whole handshake overruns hello_timeout
        try:
            msg = read_message(stream, MAX_HELLO_BYTES)
        except (ProtocolError, OSError) as exc:
            self._send_now(error_message(schema.E_PROTOCOL, f"expected a hello message: {exc}"))
            return False
        if msg is None:
            return False
        if msg.kind != schema.HELLO:
            self._send_now(error_message(schema.E_PROTOCOL, f"the first message must be hello, got {msg.kind!r}"))
            return False
        try:
            schema.validate(msg)
            major, _minor = schema.parse_version(msg.fields["protocol"])
        except ProtocolError as exc:
            self._send_now(error_message(schema.E_PROTOCOL, str(exc)))
            return False
        token = msg.fields.get("token")
        if not isinstance(token, str) or not hmac.compare_digest(
            token.encode("utf-8", "surrogatepass"), self.server.token.encode("utf-8")
        ):
            self._send_now(error_message(schema.E_AUTH, "wrong token"))
            return False
        if major != PROTOCOL_MAJOR:
            self._send_now(
                error_message(
                    schema.E_PROTOCOL,
                    f"client speaks protocol {msg.fields['protocol']}, this core speaks {PROTOCOL_VERSION}: "
                    "update the add-on or the core so their major versions match",
                )
            )
            return False
        self.authenticated = True
        self._send_now(
            Message(
                schema.HELLO,
                fields={
                    "protocol": PROTOCOL_VERSION,
                    "software": __version__,
                    "session": self.session_id,
                    "pid": os.getpid(),
                },
            )
        )
        return True

    def _reader(self) -> None:
        stream = self.sock.makefile("rb", buffering=256 * 1024)
        try:
            if not self._handshake(stream):
                return
            self._handler = self.server.handler_factory(self)
            threading.Thread(target=self._writer, name=f"likeness-writer-{self.session_id}", daemon=True).start()
            while not self.closed.is_set():
                try:
                    msg = read_message(stream, self.server.max_message_bytes)
                except FramingError as exc:
                    self.send(error_message(schema.E_PROTOCOL, f"{exc}; closing the connection"))
                    return
                except ProtocolError as exc:
                    self.send(error_message(schema.E_BAD_MESSAGE, str(exc)))
                    continue
                if msg is None or msg.kind == schema.BYE:
                    return
                self.last_active = time.monotonic()
                try:
                    if not schema.validate(msg):
                        continue  # unknown kind: ignored
                except ProtocolError as exc:
                    self.send(error_message(schema.E_BAD_MESSAGE, str(exc), msg.job, about=msg.kind))
                    continue
                try:
                    self._handler.on_message(msg)
                except Exception as exc:  # a handler bug must not kill the connection
                    self.send(error_message(schema.E_FAILED, f"{type(exc).__name__}: {exc}", msg.job,
                                            traceback.format_exc(), about=msg.kind))
        except OSError:
            pass
        finally:
            self._finish(stream)

    def idle_for(self, now: float) -> float:
        """Seconds since the client last sent a message; 0 while one of its jobs runs."""
        busy = getattr(self._handler, "busy", None)
        return 0.0 if busy is not None and busy() else now - self.last_active

    def stop(self, reason: str) -> None:
        """End the session from the server's side: its jobs stop and answer, the client is told why."""
        if self._handler is not None:
            self._handler.on_close()
        self.send(error_message(schema.E_UNAVAILABLE, reason))
        with self._cond:
            self._cond.wait_for(self._drained, 1.0)
        self.close()

    def _finish(self, stream) -> None:
        if self._handler is not None:
            # give a framing error a moment to reach the client before the socket goes
            with self._cond:
                self._cond.wait_for(self._drained, 0.5)
        self.close()
        try:
            if self._handler is not None:
                self._handler.on_close()
        finally:
            stream.close()
            self.sock.close()
            self.server._forget(self)


class Server:
    """Listens on loopback TCP (``port``, 0 = any free port) or a Unix socket.

    token: the shared secret a client's hello must carry. handler_factory:
    ``(Connection) -> handler`` with ``on_message(msg)`` and ``on_close()``.
    """

    def __init__(
        self,
        token: str,
        handler_factory,
        *,
        port: int = 0,
        unix_path: str | None = None,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        hello_timeout: float = HELLO_TIMEOUT_S,
        max_queued_bytes: int = MAX_QUEUED_BYTES,
        max_connections: int = MAX_CONNECTIONS,
        idle_timeout: float = IDLE_TIMEOUT_S,
        allow_paths: bool = False,
    ):
        if not token:
            raise ValueError("the server needs a non-empty token")
        self.token = token
        self.handler_factory = handler_factory
        self.max_message_bytes = max_message_bytes
        self.hello_timeout = hello_timeout
        self.max_queued_bytes = max_queued_bytes
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.allow_paths = allow_paths
        self.unix_path = unix_path
        self._ids = iter(range(1, 1 << 62))
        self._lock = threading.Lock()
        self._connections: set[Connection] = set()
        self._stop = threading.Event()
        if unix_path is not None:
            self.listener = _bind_unix(unix_path)
        else:
            self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.listener.bind((LOOPBACK, port))
            self.listener.listen(16)
        self.listener.settimeout(_ACCEPT_POLL_S)

    @property
    def address(self) -> dict:
        """{"host", "port"} or {"unix"} for the ready file."""
        if self.unix_path is not None:
            return {"unix": self.unix_path}
        host, port = self.listener.getsockname()[:2]
        return {"host": host, "port": port}

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self._connections)

    def serve_forever(self) -> None:
        """Accept clients until :meth:`shutdown`; each runs on its own threads."""
        try:
            while not self._stop.is_set():
                self._sweep()
                try:
                    sock, _ = self.listener.accept()
                except TimeoutError:
                    continue
                except OSError as exc:
                    if self._stop.is_set():
                        break
                    if exc.errno in _TRANSIENT_ACCEPT_ERRORS:
                        # A peer gone before it was accepted, or no descriptor free for a moment:
                        # that client is lost, the core serves on.
                        time.sleep(0.05)
                        continue
                    raise
                try:
                    sock.settimeout(None)
                    if sock.family == socket.AF_INET:
                        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                except OSError:  # reset between accept and here
                    sock.close()
                    continue
                with self._lock:
                    full = len(self._connections) >= self.max_connections
                if full:
                    _refuse(sock, f"the core already serves {self.max_connections} connections; try again later")
                    continue
                conn = Connection(sock, self)
                with self._lock:
                    self._connections.add(conn)
                threading.Thread(target=conn._reader, name=f"likeness-reader-{conn.session_id}", daemon=True).start()
        finally:
            self._close_all()

    def shutdown(self) -> None:
        self._stop.set()

    def _forget(self, conn: Connection) -> None:
        with self._lock:
            self._connections.discard(conn)

    def _sweep(self) -> None:
        """Drop connections past the handshake deadline or idle past ``idle_timeout``."""
        now = time.monotonic()
        with self._lock:
            conns = list(self._connections)
        for conn in conns:
            if not conn.authenticated and now - conn.opened > self.hello_timeout:
                try:
                    conn.sock.settimeout(0.1)  # a peer that reads nothing must not hold the accept loop
                except OSError:
                    pass  # its reader closed the socket since the list was taken: nothing to tell it
                else:
                    conn._send_now(error_message(schema.E_PROTOCOL, f"expected a hello message within "
                                                 f"{self.hello_timeout:g} s of connecting"))
                conn.close()
            elif (conn.authenticated and self.idle_timeout and not conn.stopping
                  and conn.idle_for(now) > self.idle_timeout):
                conn.stopping = True
                threading.Thread(target=conn.stop, args=(f"idle for {self.idle_timeout:g} s; closing",),
                                 daemon=True).start()

    def _close_all(self) -> None:
        self.listener.close()
        with self._lock:
            conns = list(self._connections)
        stoppers = [threading.Thread(target=conn.stop, args=("the core is shutting down",)) for conn in conns]
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join()
        if self.unix_path is not None:
            try:
                os.unlink(self.unix_path)
            except FileNotFoundError:
                pass


def _approx_bytes(msg: Message) -> int:
    """What ``msg`` will take on the wire, near enough for a queue budget (arrays dominate)."""
    return 1024 + sum(getattr(b, "nbytes", 0) for b in msg.buffers.values())


def _same_user(sock: socket.socket) -> bool:
    """Whether the peer of a Unix socket runs as this process's user (SO_PEERCRED)."""
    if sock.family != getattr(socket, "AF_UNIX", None) or not hasattr(socket, "SO_PEERCRED"):
        return False
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid == os.getuid()


def _refuse(sock: socket.socket, reason: str) -> None:
    try:
        sock.settimeout(1.0)
        sock.sendall(encode(error_message(schema.E_UNAVAILABLE, reason)))
    except OSError:
        pass
    finally:
        sock.close()


def _bind_unix(path: str) -> socket.socket:
    """A listening Unix socket only its owner can connect to."""
    if os.path.lexists(path):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise OSError(f"{path} exists and is not a socket; choose another --unix path")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)  # stale socket of a core that died
        else:
            raise OSError(f"another process is listening on {path}")
        finally:
            probe.close()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # the socket file is created 0600: no window where others may connect
    try:
        listener.bind(path)
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    listener.listen(16)
    return listener
