"""Client side of the bridge: used by the Blender add-on, the tests and benchmarks.

A background thread receives everything. The caller sees:
- ``latest_frame(job)``: only the newest frame per job (older ones are dropped),
- ``latest_progress(job)``: the newest progress,
- ``events``: a queue of every other message (results, cancelled, errors,
  templates, status replies) for polling from a UI timer; a long-lived
  caller should drain it,
- ``wait(job, timeout)``: blocks for the reply / final message of a job or
  request (replies of the last MAX_KEPT_JOBS jobs are kept for it).
If the connection drops, ``lost`` is set, waiting calls raise ConnectionLost
at once, and ``on_lost`` is called; a dead core is noticed as soon as its
socket closes (the kernel closes it when the process dies).
"""

from __future__ import annotations

import collections
import itertools
import os
import queue
import socket
import threading
import time

import numpy as np

from . import schema
from ._version import __version__
from .protocol import MAX_MESSAGE_BYTES, PROTOCOL_VERSION, Message, ProtocolError, encode, read_message
from .template import TemplateMessage


MAX_KEPT_JOBS = 64


def _keep(table: collections.OrderedDict, job, msg: Message) -> None:
    table.pop(job, None)
    table[job] = msg
    while len(table) > MAX_KEPT_JOBS:
        table.popitem(last=False)


class BridgeError(Exception):
    """The core answered a request with an error message."""

    def __init__(self, msg: Message):
        self.code = msg.fields.get("code", "")
        self.traceback = msg.fields.get("traceback", "")
        self.message = msg
        super().__init__(f"{self.code}: {msg.fields.get('message', '')}")


class ConnectionLost(Exception):
    """The connection to the core ended (core exited, network dropped, protocol broken)."""


class HandshakeError(Exception):
    """The core refused the connection (wrong token, incompatible protocol) or did not answer."""


_job_ids = itertools.count(1)


def new_job_id(prefix: str = "j") -> str:
    return f"{prefix}{os.getpid()}-{next(_job_ids)}"


class Client:
    """A connected, authenticated client. Build it with :meth:`connect` or :meth:`connect_unix`.

    on_frame(msg): optional, called on the receiver thread for every frame
    before conflation (keep it cheap). on_lost(exc): called once when the
    connection ends.
    """

    def __init__(self, sock: socket.socket, token: str, *, timeout: float = 5.0, on_frame=None, on_lost=None,
                 max_message_bytes: int = MAX_MESSAGE_BYTES):
        self.sock = sock
        self.max_message_bytes = max_message_bytes
        self.on_frame = on_frame
        self.on_lost = on_lost
        self.events: queue.Queue[Message] = queue.Queue()
        self.lost: ConnectionLost | None = None
        self._send_lock = threading.Lock()
        self._cond = threading.Condition()
        self._frames: collections.OrderedDict[str | None, Message] = collections.OrderedDict()
        self._progress: collections.OrderedDict[str | None, Message] = collections.OrderedDict()
        # job id -> newest frame / progress / reply; each keeps the MAX_KEPT_JOBS most recent
        # jobs, so a caller that ignores some of them does not pile up arrays.
        self._replies: collections.OrderedDict[str, Message] = collections.OrderedDict()
        self._stream = sock.makefile("rb", buffering=256 * 1024)
        self.server_hello = self._handshake(token, timeout)
        self._thread = threading.Thread(target=self._receive, name="likeness-client-receiver", daemon=True)
        self._thread.start()

    # -- construction -----------------------------------------------------------
    @classmethod
    def connect(cls, host: str, port: int, token: str, *, timeout: float = 5.0, **kwargs) -> "Client":
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        return cls._start(sock, token, timeout, kwargs)

    @classmethod
    def connect_unix(cls, path: str, token: str, *, timeout: float = 5.0, **kwargs) -> "Client":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except OSError:
            sock.close()
            raise
        return cls._start(sock, token, timeout, kwargs)

    @classmethod
    def connect_ready_file(cls, path: str, *, timeout: float = 5.0, **kwargs) -> "Client":
        """Connect with the address and token a ``likeness serve --ready-file`` wrote."""
        import json

        with open(path, encoding="utf-8") as fh:
            info = json.load(fh)
        if "unix" in info:
            return cls.connect_unix(info["unix"], info["token"], timeout=timeout, **kwargs)
        return cls.connect(info["host"], info["port"], info["token"], timeout=timeout, **kwargs)

    @classmethod
    def _start(cls, sock, token, timeout, kwargs) -> "Client":
        try:
            return cls(sock, token, timeout=timeout, **kwargs)
        except BaseException:
            sock.close()
            raise

    def _handshake(self, token: str, timeout: float) -> Message:
        self.sock.settimeout(timeout)
        try:
            self.sock.sendall(encode(Message(schema.HELLO, fields={
                "protocol": PROTOCOL_VERSION, "token": token, "software": __version__})))
            reply = read_message(self._stream, self.max_message_bytes)
        except (OSError, ProtocolError) as exc:
            raise HandshakeError(f"no valid hello from the core: {exc}") from None
        if reply is None:
            raise HandshakeError("the core closed the connection during the handshake")
        if reply.kind == schema.ERROR:
            raise HandshakeError(f"the core refused the connection: {reply.fields.get('message', '')}")
        if reply.kind != schema.HELLO:
            raise HandshakeError(f"expected hello from the core, got {reply.kind!r}")
        self.sock.settimeout(None)
        return reply

    # -- receiving ----------------------------------------------------------------
    def _receive(self) -> None:
        reason = "the core closed the connection"
        try:
            while True:
                try:
                    msg = read_message(self._stream, self.max_message_bytes)
                except ProtocolError as exc:
                    if type(exc) is not ProtocolError:  # framing broken: cannot resync
                        raise
                    self.events.put(Message(schema.ERROR, fields={"code": schema.E_PROTOCOL, "message": f"bad message from the core: {exc}"}))
                    continue
                if msg is None or msg.kind == schema.BYE:
                    break
                msg.received = time.monotonic()
                self._dispatch(msg)
        except (OSError, ProtocolError) as exc:
            reason = f"connection to the core lost: {exc}"
        self._set_lost(ConnectionLost(reason))

    def _dispatch(self, msg: Message) -> None:
        try:
            known = schema.validate(msg)
        except ProtocolError as exc:
            self.events.put(Message(schema.ERROR, job=msg.job, fields={"code": schema.E_PROTOCOL, "message": f"bad message from the core: {exc}"}))
            return
        if not known:
            return
        if msg.kind == schema.FRAME:
            if self.on_frame is not None:
                self.on_frame(msg)
            with self._cond:
                _keep(self._frames, msg.job, msg)
            return
        if msg.kind == schema.PROGRESS:
            with self._cond:
                _keep(self._progress, msg.job, msg)
            return
        if msg.job is not None and (msg.kind != schema.ERROR or schema.ends_job(msg)):
            with self._cond:
                _keep(self._replies, msg.job, msg)
                self._cond.notify_all()
        self.events.put(msg)

    def _set_lost(self, exc: ConnectionLost) -> None:
        with self._cond:
            if self.lost is not None:
                return
            self.lost = exc
            self._cond.notify_all()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the receiver thread blocked in recv
        except OSError:
            pass
        self.sock.close()
        if self.on_lost is not None:
            self.on_lost(exc)

    # -- what the caller reads ------------------------------------------------------
    def latest_frame(self, job: str | None = None) -> Message | None:
        """The newest frame not yet taken for ``job`` (any job if None), or None."""
        with self._cond:
            if job is None:
                return self._frames.popitem()[1] if self._frames else None
            return self._frames.pop(job, None)

    def latest_progress(self, job: str) -> Message | None:
        with self._cond:
            return self._progress.get(job)

    def wait(self, job: str, timeout: float | None = None, kinds=None) -> Message:
        """Block until a reply for ``job`` arrives (of one of ``kinds`` if given) and take it.

        Raises TimeoutError, or ConnectionLost if the connection ends first.
        """
        def ready():
            reply = self._replies.get(job)
            return (reply is not None and (kinds is None or reply.kind in kinds)) or self.lost is not None

        with self._cond:
            if not self._cond.wait_for(ready, timeout):
                raise TimeoutError(f"no reply for {job!r} within {timeout} s")
            reply = self._replies.get(job)
            if reply is not None and (kinds is None or reply.kind in kinds):
                del self._replies[job]
                return reply
            raise self.lost

    def wait_final(self, job: str, timeout: float | None = None) -> Message:
        """The result, cancelled or error message that ended ``job``."""
        return self.wait(job, timeout, kinds=schema.FINAL_KINDS)

    # -- sending ------------------------------------------------------------------
    def send(self, msg: Message) -> None:
        if self.lost is not None:
            raise self.lost
        data = encode(msg, self.max_message_bytes)
        try:
            with self._send_lock:
                self.sock.sendall(data)
        except OSError as exc:
            self._set_lost(ConnectionLost(f"connection to the core lost: {exc}"))
            raise self.lost from None

    def request(self, msg: Message, timeout: float | None = 30.0) -> Message:
        """Send ``msg`` (given a fresh job id if it has none) and return the reply; errors raise BridgeError."""
        if msg.job is None:
            msg.job = new_job_id("r")
        self.send(msg)
        reply = self.wait(msg.job, timeout)
        if reply.kind == schema.ERROR:
            raise BridgeError(reply)
        return reply

    def start_fit(self, photos, *, template: str | None = None, options: dict | None = None,
                  device: str | None = None, job: str | None = None) -> str:
        """Start a fit. photos: paths on the core's machine (str) or (name, bytes) pairs sent inline."""
        job = job or new_job_id()
        entries, buffers = [], {}
        for i, photo in enumerate(photos):
            if isinstance(photo, (str, os.PathLike)):
                entries.append({"name": os.path.basename(os.fspath(photo)), "path": os.fspath(photo)})
            else:
                name, data = photo
                key = f"photo{i}"
                buffers[key] = np.frombuffer(bytes(data), dtype=np.uint8)
                entries.append({"name": name, "buffer": key})
        fields = {"type": schema.JOB_FIT, "photos": entries, "options": options or {}}
        if template is not None:
            fields["template"] = template
        if device is not None:
            fields["device"] = device
        self.send(Message(schema.JOB, job=job, fields=fields, buffers=buffers))
        return job

    def start_replay(self, verts: np.ndarray, count: int | None = None, job: str | None = None) -> str:
        """Ask the core to stream ``verts`` (T, N, 3) float32 back as ``count`` frames (default T)."""
        job = job or new_job_id()
        fields = {"type": schema.JOB_REPLAY}
        if count is not None:
            fields["count"] = int(count)
        self.send(Message(schema.JOB, job=job, fields=fields, buffers={"verts": np.asarray(verts, np.float32)}))
        return job

    def pause(self, job: str) -> None:
        self.send(Message(schema.PAUSE, job=job))

    def resume(self, job: str) -> None:
        self.send(Message(schema.RESUME, job=job))

    def cancel(self, job: str) -> None:
        self.send(Message(schema.CANCEL, job=job))

    def set_pins(self, job: str, ids: np.ndarray, targets: np.ndarray, weight: float = 1.0) -> None:
        """ids: (P,) int; targets: (P, 3) float world positions in metres. P = 0 clears."""
        self.send(Message(schema.PIN, job=job, fields={"weight": float(weight)}, buffers={
            "ids": np.asarray(ids, np.int64).reshape(-1), "targets": np.asarray(targets, np.float32).reshape(-1, 3)}))

    def send_template(self, template: TemplateMessage | str, template_id: str | None = None,
                      timeout: float = 60.0) -> str:
        """Register a template (inline, or a path on the core's machine); returns the id jobs use."""
        template_id = template_id or new_job_id("t")
        if isinstance(template, TemplateMessage):
            msg = template.to_message(template_id)
        else:
            msg = Message(schema.TEMPLATE, job=template_id, fields={"path": os.fspath(template)})
        self.request(msg, timeout)
        return template_id

    def get_template(self, name: str = "default", timeout: float = 120.0) -> TemplateMessage:
        reply = self.request(Message(schema.GET_TEMPLATE, fields={"name": name}), timeout)
        return TemplateMessage.from_message(reply)

    def status(self, timeout: float = 10.0) -> dict:
        return self.request(Message(schema.STATUS), timeout).fields

    def close(self) -> None:
        """Say bye and close; the core cancels this session's running jobs."""
        if self.lost is None:
            try:
                self.send(Message(schema.BYE))
            except ConnectionLost:
                pass
        self._set_lost(ConnectionLost("closed by this client"))
        self._thread.join(timeout=2.0)
        self._stream.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
