"""The core process (`likeness serve`) with real sockets and real subprocesses."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import signal
import socket
import stat
import struct
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge import schema
from bridge.client import BridgeError, Client, ConnectionLost, HandshakeError
from bridge.protocol import Message, encode, read_message
from bridge.template import TemplateMessage
from core.template import random_template

BIN = pathlib.Path(sys.executable).parent
READY_TIMEOUT = 30.0


class Core:
    """A `likeness serve` subprocess."""

    def __init__(self, tmp: pathlib.Path, *args: str, env: dict | None = None, name: str = "core"):
        self.ready = tmp / f"{name}-ready.json"
        self.proc = subprocess.Popen(
            [str(BIN / "likeness"), "serve", "--ready-file", str(self.ready), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "LIKENESS_TOKEN": "", **(env or {})},
        )

    def wait(self) -> "Core":
        """Block until the ready file exists (start several cores first, then wait: start-up is slow)."""
        deadline = time.monotonic() + READY_TIMEOUT
        while not self.ready.exists():
            if self.proc.poll() is not None:
                raise AssertionError(f"likeness serve exited: {self.proc.stderr.read()}")
            assert time.monotonic() < deadline, "likeness serve did not become ready"
            time.sleep(0.02)
        self.info = json.loads(self.ready.read_text())
        return self

    def client(self, **kwargs) -> Client:
        return Client.connect_ready_file(str(self.ready), **kwargs)

    def raw(self) -> socket.socket:
        if "unix" in self.info:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(self.info["unix"])
        else:
            sock = socket.create_connection((self.info["host"], self.info["port"]))
        sock.settimeout(10)
        return sock

    def authenticated_raw(self) -> tuple[socket.socket, object]:
        sock = self.raw()
        sock.sendall(encode(Message("hello", fields={"protocol": "1.0", "token": self.info["token"]})))
        stream = sock.makefile("rb")
        assert read_message(stream).kind == "hello"
        return sock, stream

    def rss_kb(self) -> int:
        for line in pathlib.Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def stop(self) -> None:
        if self.proc.stdout.closed:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()


TOKEN_IN_FILE = "file-token-123"
TOKEN_IN_ENV = "env-token-456"


@contextlib.contextmanager
def running(*cores):
    """Cores launched together (start-up takes seconds), each waited for; all stopped afterwards."""
    try:
        yield [c.wait() for c in cores]
    finally:
        for c in cores:
            c.stop()


@pytest.fixture(scope="module")
def cores(tmp_path_factory):
    """Started together (start-up takes seconds): a TCP core whose token comes from
    --token-file (which beats $LIKENESS_TOKEN), a Unix-socket core with the token from
    $LIKENESS_TOKEN, and a TCP core that makes its own token (killed by a fault test)."""
    tmp = tmp_path_factory.mktemp("cores")
    token_file = tmp / "token"
    token_file.write_text(TOKEN_IN_FILE + "\n")
    env = {"LIKENESS_TOKEN": TOKEN_IN_ENV}
    with running(Core(tmp, "--token-file", str(token_file), "--allow-paths", env=env, name="tcp"),
                 Core(tmp, "--unix", str(tmp / "core.sock"), "--threads", "1", env=env, name="unix"),
                 Core(tmp, name="victim")) as started:
        yield started


@pytest.fixture(scope="module")
def core(cores):
    return cores[0]


@pytest.fixture(scope="module")
def unix_core(cores):
    return cores[1]


def poses(t=4, n=100, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(t, n, 3)).astype(np.float32)


# -- start-up, ready file, token -----------------------------------------------------

def test_ready_file_and_loopback_tcp(core):
    info = core.info
    assert set(info) >= {"host", "port", "token", "protocol", "pid"}
    assert info["host"] == "127.0.0.1" and info["port"] > 0 and info["protocol"] == "1.0"
    assert info["pid"] == core.proc.pid and info["token"] == TOKEN_IN_FILE
    assert stat.S_IMODE(core.ready.stat().st_mode) == 0o600
    with core.client() as c:
        assert c.server_hello.fields["protocol"] == "1.0"
        assert c.server_hello.fields["pid"] == core.proc.pid


def test_unix_socket_is_owner_only_and_streams(unix_core):
    path = unix_core.info["unix"]
    assert stat.S_ISSOCK(os.stat(path).st_mode) and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with unix_core.client() as c:
        job = c.start_replay(poses(), count=50)
        final = c.wait_final(job, 10)
        assert final.kind == "result" and final.fields["meta"]["frames"] == 50


def test_token_from_file_then_env_then_generated(cores, tmp_path):
    tcp, unix, own = cores
    assert tcp.info["token"] == TOKEN_IN_FILE and unix.info["token"] == TOKEN_IN_ENV
    assert own.info["token"] not in (TOKEN_IN_FILE, TOKEN_IN_ENV) and len(own.info["token"]) == 64
    from core.cli import CommandError
    from core.server.cli import resolve_token

    empty = tmp_path / "empty"
    empty.write_text("  \n")
    with pytest.raises(CommandError, match="is empty"):
        resolve_token(str(empty))
    with pytest.raises(CommandError, match="cannot read"):
        resolve_token(str(tmp_path / "missing"))


# -- handshake ----------------------------------------------------------------------

def test_wrong_token_and_protocol_are_refused(core):
    with pytest.raises(HandshakeError, match="wrong token"):
        Client.connect(core.info["host"], core.info["port"], "not-the-token")
    for first, match in [
        (Message("hello", fields={"protocol": "2.0", "token": core.info["token"]}), "major versions"),
        (Message("status", job="r1"), "must be hello"),
        (Message("hello", fields={"protocol": "one", "token": core.info["token"]}), "MAJOR.MINOR"),
    ]:
        sock = core.raw()
        sock.sendall(encode(first))
        stream = sock.makefile("rb")
        reply = read_message(stream)
        assert reply.kind == "error" and match in reply.fields["message"]
        assert read_message(stream) is None  # and the core closed the connection
        sock.close()


def test_nothing_is_accepted_before_the_handshake(core):
    sock = core.raw()
    sock.sendall(encode(Message("job", "j", fields={"type": "replay"}, buffers={"verts": poses(1)})))
    assert read_message(sock.makefile("rb")).fields["code"] == "protocol"
    sock.close()
    sock = core.raw()  # a huge announced hello is refused from its length alone
    sock.sendall(struct.pack(">I", 50_000_000))
    assert "limit" in read_message(sock.makefile("rb")).fields["message"]
    sock.close()
    assert core.client().status()["jobs"] == []


# -- streaming, conflation, control ----------------------------------------------------

def test_replay_streams_every_frame_in_order_then_the_result(core):
    seq = poses(5, 300)
    got = []
    with core.client(on_frame=lambda m: got.append((m.fields["iteration"], m.buffers["verts"].copy()))) as c:
        job = c.start_replay(seq, count=200)
        final = c.wait_final(job, 20)
        assert final.kind == "result"
        np.testing.assert_array_equal(final.buffers["verts"], seq[199 % 5])
        assert [i for i, _ in got] == list(range(200))
        for i, v in got[:10]:
            np.testing.assert_array_equal(v, seq[i % 5])
        last = c.latest_frame(job)
        assert last.fields["iteration"] == 199 and c.latest_frame(job) is None  # only the newest, once
        assert c.latest_progress(job) is None


def test_client_hands_out_only_the_newest_frame(core):
    with core.client() as c:
        job = c.start_replay(poses(3, 50), count=500)
        assert c.wait_final(job, 20).kind == "result"
        frame = c.latest_frame(job)
        assert frame.fields["iteration"] == 499 and c.latest_frame(job) is None


def test_client_keeps_newest_frames_of_recent_jobs_only(core):
    from bridge.client import MAX_KEPT_JOBS

    with core.client() as c:
        jobs = []
        for _ in range(MAX_KEPT_JOBS + 6):  # one at a time: a connection runs few jobs at once
            jobs.append(c.start_replay(poses(1, 8), count=1))
            assert c.events.get(timeout=10).kind == "result"  # read from the queue, never waited for
        assert c.latest_frame(jobs[-1]) is not None
        assert c.latest_frame(jobs[0]) is None  # an untaken frame of an old job does not pile up
        with pytest.raises(TimeoutError):
            c.wait_final(jobs[0], 0.05)
        assert c.wait_final(jobs[-1], 1).kind == "result"


def test_server_conflates_frames_for_a_slow_client(tmp_path):
    """A producer far faster than its reader: the reader gets the newest frames, never a stale one after the result."""
    from bridge.server import Server

    class Flood:
        def __init__(self, conn):
            self.conn = conn

        def on_message(self, msg):
            for i in range(2000):
                self.conn.send(Message("frame", msg.job, fields={"stage": "s", "iteration": i, "step": i, "total": 2000},
                                       buffers={"verts": np.full((2000, 3), i, np.float32)}))
            self.conn.send(Message("result", msg.job, fields={"meta": {}}))

        def on_close(self):
            pass

    server = Server("tok", Flood, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.address["host"], server.address["port"]
        seen = []
        c = Client.connect(host, port, "tok", on_frame=lambda m: (seen.append(m.fields["iteration"]), time.sleep(0.002)))
        c.send(Message("status", job="flood"))
        final = c.wait("flood", 30)
        assert final.kind == "result"
        assert seen[-1] == 1999 and seen == sorted(seen)
        assert len(seen) < 1000, f"{len(seen)} of 2000 frames sent: no conflation"
        c.close()
    finally:
        server.shutdown()
        thread.join(5)



def test_a_stopped_session_is_told_why_even_when_the_writer_is_slow(monkeypatch):
    """The writer takes a message off the queue before it encodes and sends it: a stop must wait for
    that send, not only for the queue to empty, or its message is cut off by the close."""
    import bridge.server as srv

    class Quiet:
        def __init__(self, conn):
            self.conn = conn

        def on_message(self, msg):
            pass

        def on_close(self):
            pass

    def slow_encode(msg, *args):
        time.sleep(0.3)
        return encode(msg, *args)

    server = srv.Server("tok", Quiet, port=0, idle_timeout=0.5)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        sock = socket.create_connection((server.address["host"], server.address["port"]))
        sock.sendall(encode(Message("hello", fields={"protocol": "1.0", "token": "tok"})))
        stream = sock.makefile("rb")
        assert read_message(stream).kind == "hello"
        monkeypatch.setattr(srv, "encode", slow_encode)
        reply = read_message(stream)
        assert reply is not None and "idle" in reply.fields["message"]
        assert read_message(stream) is None  # told once, then closed
        sock.close()
    finally:
        server.shutdown()
        thread.join(5)

def _wait_for(predicate, timeout=5.0, poll=0.01):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError("condition not met in time")


def test_pause_resume_cancel_take_effect_within_one_frame(core):
    frames = []
    with core.client(on_frame=lambda m: frames.append(m.fields["iteration"])) as c:
        job = c.start_replay(poses(2, 20), count=10_000_000)
        _wait_for(lambda: len(frames) > 10)
        c.pause(job)
        time.sleep(0.2)
        paused_at = frames[-1]
        time.sleep(0.3)
        assert frames[-1] - paused_at <= 1  # at most the frame already in flight
        assert {j["id"] for j in c.status()["jobs"]} >= {job}
        c.resume(job)
        _wait_for(lambda: frames[-1] > paused_at + 10)
        c.cancel(job)
        t0 = time.monotonic()
        assert c.wait_final(job, 5).kind == "cancelled"
        assert time.monotonic() - t0 < 1.0
        # a cancel of a finished or unknown job is answered too
        c.cancel(job)
        c.cancel("no-such-job")
        codes = {}
        while len(codes) < 2:
            e = c.events.get(timeout=5)
            if e.kind == "error":
                codes[e.job] = e.fields["code"]
        assert codes == {job: "job_finished", "no-such-job": "unknown_job"}


def test_cancel_while_paused_is_answered(core):
    with core.client() as c:
        job = c.start_replay(poses(1, 10), count=10_000_000)
        c.pause(job)
        c.cancel(job)
        assert c.wait_final(job, 5).kind == "cancelled"


def test_pins_reach_the_job_and_bad_pins_leave_it_running(core):
    with core.client() as c:
        job = c.start_replay(poses(1, 10), count=10_000_000)
        c.set_pins(job, [1, 2], [[0, 0, 0], [1, 1, 1]], weight=2.0)
        c.send(Message("pin", job, buffers={"ids": np.array([1]), "targets": np.array([[np.nan, 0, 0]], np.float32)}))
        c.send(Message("pin", job, buffers={"ids": np.array([1, 2]), "targets": np.zeros((1, 3), np.float32)}))
        errors = [c.events.get(timeout=5) for _ in range(2)]
        assert [e.fields["about"] for e in errors] == ["pin", "pin"]
        assert "finite" in errors[0].fields["message"] and "axis 0" in errors[1].fields["message"]
        assert c.latest_frame(job) is not None or _wait_for(lambda: c.latest_frame(job))
        c.cancel(job)
        assert c.wait_final(job, 5).kind == "cancelled"  # the job survived the bad pins


def test_sessions_are_isolated(core):
    with core.client() as a, core.client() as b:
        job = a.start_replay(poses(1, 10), count=10_000_000, job="same-id")
        b.cancel("same-id")  # b cannot touch a's job
        assert b.events.get(timeout=5).fields["code"] == "unknown_job"
        job_b = b.start_replay(poses(1, 10), count=5, job="same-id")
        assert b.wait_final(job_b, 5).kind == "result"
        assert a.status()["sessions"] >= 2
        a.cancel(job)
        assert a.wait_final(job, 5).kind == "cancelled"


def test_bad_jobs_get_clear_errors(core):
    with core.client() as c:
        c.send(Message("job", "j1", fields={"type": "replay"}, buffers={"verts": np.zeros((2, 5), np.float32)}))
        assert "verts" in c.wait_final("j1", 5).fields["message"]
        c.send(Message("job", "j2", fields={"type": "replay", "count": -3}, buffers={"verts": poses(1)}))
        assert "frames" in c.wait_final("j2", 5).fields["message"]
        c.send(Message("job", "j3", fields={"type": "fit", "photos": [{"name": "a.jpg"}]}))
        assert "path or a buffer" in c.wait_final("j3", 5).fields["message"]
        c.send(Message("job", "j4", fields={"type": "fit", "photos": [{"name": "a", "buffer": "nope"}]}))
        assert "uint8" in c.wait_final("j4", 5).fields["message"]
        c.send(Message("job", "j5", fields={"type": "fit", "photos": [], "template": "unknown"}))
        assert "send it first" in c.wait_final("j5", 5).fields["message"]
        c.start_replay(poses(1), count=1, job="dup")
        c.wait_final("dup", 5)
        c.start_replay(poses(1), count=1, job="dup")
        assert c.wait_final("dup", 5).fields["code"] == "duplicate_job"


# -- templates ------------------------------------------------------------------------

def test_template_inline_and_by_path_round_trip(core, tmp_path):
    tpl = random_template(seed=5)
    arrays, meta = tpl.to_arrays()
    with core.client() as c:
        tid = c.send_template(TemplateMessage.from_arrays(arrays, meta), "artist-rig")
        back = c.get_template(tid)
        for name in arrays:
            np.testing.assert_array_equal(back.arrays[name], arrays[name], err_msg=name)
        assert back.meta == meta
        path = tmp_path / "rig.npz"
        tpl.save(path)
        assert c.send_template(str(path), "from-file") == "from-file"
        np.testing.assert_array_equal(c.get_template("from-file").arrays["verts"], arrays["verts"])
        with pytest.raises(BridgeError, match="template not found"):
            c.send_template(str(tmp_path / "missing.npz"))
        bad = {**arrays, "skin_w": arrays["skin_w"] * 2}
        with pytest.raises(BridgeError, match="sum to"):
            c.request(Message("template", "bad", fields={"meta": meta}, buffers=bad))
        with pytest.raises(BridgeError, match="no template named"):
            c.get_template("nothing-here")


# -- malformed input against the live core (hypothesis) --------------------------------

_kinds = st.sampled_from([*schema.SPECS, "teleport"])
_values = st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=5) | st.lists(st.integers(-3, 3), max_size=3)
_arrays = st.dictionaries(
    st.sampled_from(["verts", "ids", "targets", "photo0", "x"]),
    st.tuples(st.sampled_from(["float32", "float64", "int64", "int32", "uint8"]),
              st.lists(st.integers(0, 4), max_size=3)).map(lambda t: np.zeros(t[1], t[0])),
    max_size=3,
)
_bad_message = st.builds(
    lambda kind, job, fields, arrays: Message(kind, job, fields, arrays),
    _kinds, st.none() | st.sampled_from(["j", "x", "0"]),
    st.dictionaries(st.sampled_from(["type", "count", "photos", "name", "path", "weight", "stage", "meta", "code"]), _values, max_size=4),
    _arrays,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(msgs=st.lists(_bad_message | st.binary(min_size=4, max_size=64).map(lambda b: struct.pack(">I", len(b)) + b), min_size=1, max_size=8))
def test_fuzz_live_core_with_malformed_messages(core, msgs):
    """Thousands of well-framed but wrong messages on one authenticated connection: answered or ignored, never fatal."""
    sock, stream = core.authenticated_raw()
    try:
        for m in msgs:
            if isinstance(m, Message):
                if m.kind in ("job", "template"):
                    m.job = None if m.job is None else f"{m.job}-{time.monotonic_ns()}"
                if m.kind == "bye":
                    continue
                sock.sendall(encode(m))
            else:
                sock.sendall(m)
        sock.sendall(encode(Message("status", "ping")))
        while True:  # the connection still answers, in order
            reply = read_message(stream)
            assert reply is not None, "the core closed a connection over a bad message"
            if reply.kind == "status" and reply.job == "ping":
                break
    finally:
        sock.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(garbage=st.binary(max_size=200), authenticate=st.booleans())
def test_fuzz_live_core_with_garbage_streams(core, garbage, authenticate):
    """Raw garbage (broken framing) before or after the handshake: the core drops that connection only."""
    if authenticate:
        sock, stream = core.authenticated_raw()
    else:
        sock = core.raw()
        stream = sock.makefile("rb")
    try:
        sock.sendall(garbage)
        sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + 10
        while read_message_or_none(stream) is not None:  # drain until the core closes
            assert time.monotonic() < deadline
    finally:
        sock.close()


def read_message_or_none(stream):
    try:
        return read_message(stream)
    except Exception:
        return None


def test_core_keeps_serving_after_the_fuzzing(core):
    with core.client() as c:
        job = c.start_replay(poses(2, 64), count=100)
        assert c.wait_final(job, 10).kind == "result"
        assert c.status()["jobs"] == [] or all(j["type"] == "replay" for j in c.status()["jobs"])


# -- faults ---------------------------------------------------------------------------

def test_killed_core_is_reported_within_one_second(cores):
    core = cores[2]
    lost = threading.Event()
    try:
        c = core.client(on_lost=lambda exc: lost.set())
        job = c.start_replay(poses(2, 1000), count=10_000_000)
        _wait_for(lambda: c.latest_frame(job))
        t0 = time.monotonic()
        os.kill(core.proc.pid, signal.SIGKILL)
        assert lost.wait(1.0), "client did not notice the dead core within 1 s"
        assert time.monotonic() - t0 < 1.0
        with pytest.raises(ConnectionLost):
            c.wait_final(job, 1.0)
        with pytest.raises(ConnectionLost):
            c.pause(job)
    finally:
        core.stop()


CLIENT_SCRIPT = textwrap.dedent(
    """
    import sys, numpy as np
    from bridge.client import Client
    c = Client.connect_ready_file(sys.argv[1])
    job = c.start_replay(np.zeros((1, 500, 3), np.float32), count=10_000_000, job="orphan")
    while c.latest_frame(job) is None:
        pass
    print("streaming", flush=True)
    sys.stdin.read()
    """
)


def test_killed_client_job_is_cancelled_within_one_second(core):
    child = subprocess.Popen([sys.executable, "-c", CLIENT_SCRIPT, str(core.ready)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "streaming"
        with core.client() as watcher:
            assert "orphan" not in {j["id"] for j in watcher.status()["jobs"]}  # status shows own jobs only
            sessions = watcher.status()["sessions"]
            t0 = time.monotonic()
            child.kill()
            child.wait()
            # a session counts until its jobs' threads have ended
            _wait_for(lambda: watcher.status()["sessions"] == sessions - 1, timeout=1.0)
            assert time.monotonic() - t0 < 1.0
    finally:
        child.kill()
        child.wait()
        child.stdin.close()
        child.stdout.close()


def _own_rss_kb() -> int:
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_soak_ten_thousand_frames_without_memory_growth(core):
    seq = poses(8, 4400)
    with core.client() as c:
        warm = c.start_replay(seq, count=1000)
        assert c.wait_final(warm, 30).kind == "result"
        c.latest_frame(warm)
        core_before, own_before = core.rss_kb(), _own_rss_kb()
        job = c.start_replay(seq, count=10_000)
        final = c.wait_final(job, 120)
        assert final.kind == "result" and final.fields["meta"]["frames"] == 10_000
        assert c.latest_frame(job).fields["iteration"] == 9_999
        core_growth, own_growth = core.rss_kb() - core_before, _own_rss_kb() - own_before
    assert core_growth < 4096, f"core grew by {core_growth} kB over 10,000 frames"
    assert own_growth < 4096, f"client grew by {own_growth} kB over 10,000 frames"


def test_stopped_core_removes_its_socket_and_ready_file(unix_core):
    """SIGTERM (last test of the module: it stops the shared Unix-socket core)."""
    unix_core.stop()
    assert unix_core.proc.returncode == 0
    assert not unix_core.ready.exists() and not os.path.exists(unix_core.info["unix"])


# -- the client against a misbehaving peer -----------------------------------------------

class FakeCore:
    """A listening socket whose single connection is driven by ``script(conn)``."""

    def __init__(self, script):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._run, args=(script,), daemon=True)
        self.thread.start()

    def _run(self, script):
        conn, _ = self.listener.accept()
        try:
            script(conn)
        finally:
            conn.close()
            self.listener.close()


def _hello_then(payload: bytes, hold: float = 0.0):
    def script(conn):
        stream = conn.makefile("rb")
        read_message(stream)
        conn.sendall(encode(Message("hello", fields={"protocol": "1.0"})) + payload)
        time.sleep(hold)
    return script


@pytest.mark.parametrize("reply", [b"\x00\x00\x00\x05garbage", b"HTTP/1.1 200 OK\r\n\r\n", b""])
def test_client_handshake_fails_cleanly_on_a_bad_peer(reply):
    def script(conn):
        conn.makefile("rb").read(4)
        conn.sendall(reply)
    fake = FakeCore(script)
    t0 = time.monotonic()
    with pytest.raises(HandshakeError):
        Client.connect("127.0.0.1", fake.port, "tok", timeout=1.0)
    assert time.monotonic() - t0 < 2.0


def test_client_times_out_on_a_silent_peer():
    fake = FakeCore(lambda conn: time.sleep(1.5))
    t0 = time.monotonic()
    with pytest.raises(HandshakeError, match="timed out"):
        Client.connect("127.0.0.1", fake.port, "tok", timeout=0.3)
    assert time.monotonic() - t0 < 1.0


def test_client_reports_a_broken_stream_and_skips_bad_messages():
    bad_content = struct.pack(">I", 8) + struct.pack(">I", 4) + b"{{{{"
    unknown = encode(Message("from_the_future", fields={"x": 1}))
    bad_frame = encode(Message("frame", "j", fields={"stage": "s"}))  # missing fields
    lost = threading.Event()
    fake = FakeCore(_hello_then(unknown + bad_content + bad_frame + struct.pack(">I", 0xFFFFFFF0), hold=0.5))
    c = Client.connect("127.0.0.1", fake.port, "tok", on_lost=lambda exc: lost.set())
    assert lost.wait(2.0)
    assert "limit" in str(c.lost)
    messages = [c.events.get(timeout=1).fields["message"] for _ in range(2)]
    assert "JSON" in messages[0] and "iteration" in messages[1]
    assert c.events.empty() and c.latest_frame("j") is None
    with pytest.raises(ConnectionLost):
        c.status()


def test_core_drops_a_client_that_never_says_hello():
    from bridge.server import Server

    server = Server("tok", lambda conn: None, port=0, hello_timeout=0.3)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        sock = socket.create_connection(("127.0.0.1", server.address["port"]))
        sock.settimeout(5)
        t0 = time.monotonic()
        reply = read_message(sock.makefile("rb"))
        assert reply.kind == "error" and "hello" in reply.fields["message"]
        assert time.monotonic() - t0 < 2.0
        _wait_for(lambda: server.connections == 0, timeout=2.0)
        sock.close()
    finally:
        server.shutdown()
        thread.join(5)


def test_the_handshake_sweep_survives_a_socket_its_reader_already_closed():
    """The sweep works on a list taken under the lock; a connection's reader may close its socket
    before the sweep reaches it. That must drop the connection, never end the accept loop (it once
    did under load: the core exited and every later client was refused)."""
    from bridge.server import Connection, Server

    server = Server("tok", lambda conn: None, port=0, hello_timeout=0.3)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    try:
        a, b = socket.socketpair()
        conn = Connection(a, server)
        conn.opened -= 10.0  # past the handshake deadline
        a.close()  # what the reader's _finish does
        with server._lock:
            server._connections.add(conn)
        server._sweep()
        assert conn.closed.is_set()
        b.close()
        thread.start()
        sock = socket.create_connection(("127.0.0.1", server.address["port"]))
        sock.settimeout(5)
        reply = read_message(sock.makefile("rb"))  # still serving: this client is told about its hello
        assert reply.kind == "error" and "hello" in reply.fields["message"]
        sock.close()
    finally:
        server.shutdown()
        thread.join(5)


def test_core_drops_a_client_that_stops_reading():
    from bridge.server import Server

    budget = 1 << 20

    class Chatty:
        def __init__(self, conn):
            self.conn = conn

        def on_message(self, msg):
            # 64 kB each, 16 MB in all: the kernel's socket buffers (Linux lets a send buffer grow
            # to tcp_wmem's 4 MB) cannot take it all, so well over the 1 MB budget must queue
            for i in range(256):
                self.conn.send(Message("status", job=f"r{i}", buffers={"pad": np.zeros(64 << 10, np.uint8)}))

        def on_close(self):
            pass

    server = Server("tok", Chatty, port=0, max_queued_bytes=budget)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        sock = socket.create_connection(("127.0.0.1", server.address["port"]))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(encode(Message("hello", fields={"protocol": "1.0", "token": "tok"})))
        sock.sendall(encode(Message("status", job="go")))  # and never read the answers
        _wait_for(lambda: server.connections == 0, timeout=10.0)
        sock.close()
    finally:
        server.shutdown()
        thread.join(5)
