"""What a hostile or careless client can make a real `likeness serve` spend, and the limits around it.

The RSS test runs every attack of the hardening issue against one core and
measures the core's peak resident memory (VmHWM, reset before each attack
through /proc/PID/clear_refs) over its idle size.
"""

from __future__ import annotations

import io
import json
import os
import pathlib
import socket
import stat
import struct
import threading
import time
import zlib

import matplotlib
import numpy as np
import pytest
from PIL import Image

from bridge.client import BridgeError
from bridge.protocol import MAX_MESSAGE_BYTES, Message, encode, read_message
from bridge.server import HELLO_TIMEOUT_S, MAX_CONNECTIONS
from core.priors.image import MAX_DECODED_BYTES, decoded_bytes
from core.server.session import MAX_JOBS_PER_SESSION
from core.template import random_template

from test_server import READY_TIMEOUT, Core, _wait_for, running  # tests/ is on sys.path (pytest rootdir-less tests folder)

from conftest import GRACE_HOPPER  # noqa: E402

PHOTO = GRACE_HOPPER
SHORT = {"schedule": {"only": ["rig"], "stages": {"rig": {"iterations": 1}}}}
ENDLESS = {"schedule": {"only": ["rig"], "stages": {"rig": {"iterations": 100_000, "plateau_patience": 100_000}}}}
RSS_BUDGET_KB = 300 * 1024
IDLE_TIMEOUT = 2.0


@pytest.fixture(scope="module")
def cores(tmp_path_factory):
    """Started together (start-up takes seconds): a core that opens paths (the add-on's own),
    and a TCP core without --allow-paths whose idle clients are dropped after IDLE_TIMEOUT."""
    tmp = tmp_path_factory.mktemp("limits")
    with running(Core(tmp, "--allow-paths", name="paths"),
                 Core(tmp, "--idle-timeout", str(IDLE_TIMEOUT), name="strict")) as started:
        yield started


@pytest.fixture(scope="module")
def core(cores):
    return cores[0]


@pytest.fixture(scope="module")
def strict(cores):
    return cores[1]


def _proc_status(pid: int, key: str) -> int:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {key} in /proc/{pid}/status")


def _cpu_ticks(pid: int) -> int:
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _settle(pid: int, quiet_s: float = 1.0, timeout: float = 30.0) -> None:
    """Wait until the process has used no CPU for ``quiet_s`` (it did all the work an attack gave it)."""
    deadline = time.monotonic() + timeout
    last, since = _cpu_ticks(pid), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = _cpu_ticks(pid)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
    raise AssertionError("the core kept working after the attack")


def _zip(members: list[tuple[str, bytes, int, int]]) -> bytes:
    """A zip from raw deflate streams: (name, deflated data, crc32, declared uncompressed size)."""
    local, central = io.BytesIO(), io.BytesIO()
    for name, data, crc, size in members:
        offset = local.tell()
        raw = name.encode()
        local.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, crc, len(data), size, len(raw), 0))
        local.write(raw + data)
        central.write(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0x21, crc, len(data), size,
                                  len(raw), 0, 0, 0, 0, 0, offset) + raw)
    body, cd = local.getvalue(), central.getvalue()
    return body + cd + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(cd), len(body), 0)


def _deflated_zeros(mib: int) -> tuple[bytes, int]:
    """(raw deflate stream of ``mib`` MiB of zeros, its crc32); about 1 kB per MiB."""
    chunk = bytes(1 << 20)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)  # a full flush: every MiB compresses alike
    crc = 0
    for _ in range(mib):
        crc = zlib.crc32(chunk, crc)
    return block * mib + c.flush(), crc


def _png(size: tuple[int, int], mode: str = "RGBA") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size).save(buf, format="PNG", compress_level=9)
    return buf.getvalue()


def _attacker(core: Core, rcvbuf: int | None = None) -> socket.socket:
    sock = core.raw()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.sendall(encode(Message("hello", fields={"protocol": "1.0", "token": core.info["token"]})))
    assert read_message(sock.makefile("rb")).kind == "hello"
    return sock


def test_rss_stays_bounded_under_every_attack_and_clients_are_still_served(core, tmp_path):
    pid = core.proc.pid
    small = random_template(seed=3)
    # Idle is a core that has done what any session does once: a (one-iteration) fit, which
    # loads the detectors, torch and the renderer, and a default-template reply.
    with core.client() as c:
        warm = c.start_fit([("grace.jpg", PHOTO.read_bytes())], options=SHORT)
        assert c.wait_final(warm, 300).kind == "result"
        c.get_template("default", timeout=300)
    _settle(pid)
    idle_kb = _proc_status(pid, "VmRSS")
    idle_threads = _proc_status(pid, "Threads")
    growth: dict[str, int] = {}

    def attack(name: str, run) -> None:
        pathlib.Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
        run()
        growth[name] = _proc_status(pid, "VmHWM") - idle_kb
        with core.client() as c:  # a well-behaved client is still served
            assert c.status()["jobs"] == []
        _settle(pid)

    def template_path(path: pathlib.Path | str, match: str):
        def run():
            with core.client() as c, pytest.raises(BridgeError, match=match) as err:
                c.send_template(str(path))
            assert err.value.code == "bad_message" and not err.value.traceback
        return run

    attack("template /dev/zero", template_path("/dev/zero", "not a regular file"))

    zeros, crc = _deflated_zeros(3 << 10)  # 3 GiB of zeros in 3 MB
    bomb = tmp_path / "bomb.npz"
    bomb.write_bytes(_zip([("meta.json", zlib.compress(b"{}")[2:-4], zlib.crc32(b"{}"), 2),
                           ("verts.npy", zeros, crc, 3 << 30)]))
    attack("zip bomb (3 GiB declared)", template_path(bomb, "unpack to .* above the template limit"))
    liar = tmp_path / "liar.npz"  # declares 100 MiB, inflates to 3 GiB: read up to its declared size, then CRC
    liar.write_bytes(_zip([("meta.json", zlib.compress(b"{}")[2:-4], zlib.crc32(b"{}"), 2),
                           ("verts.npy", zeros, crc, 100 << 20)]))
    attack("zip bomb (declares 100 MiB)", template_path(liar, "not a template file"))
    broken = bytearray(small.to_bytes())
    member = broken.index(b"verts.npy") + len("verts.npy") + 40
    broken[member] ^= 0xFF
    (tmp_path / "crc.npz").write_bytes(bytes(broken))
    attack("CRC-broken template", template_path(tmp_path / "crc.npz", "not a template file"))

    def unread_templates():
        sock = _attacker(core, rcvbuf=4096)
        for i in range(30):
            sock.sendall(encode(Message("get_template", f"g{i}", fields={"name": "default"})))
        _settle(pid)
        with core.client() as c:  # served while the attacker still holds its connection
            assert c.get_template("default", timeout=120).num_verts > 0
        assert _proc_status(pid, "Threads") <= idle_threads + 40
        sock.close()
    attack("30 unread get_template", unread_templates)

    def huge_prefix():
        sock = _attacker(core)
        sock.sendall(struct.pack(">I", MAX_MESSAGE_BYTES) + b"\0" * 64)
        _settle(pid)
        sock.close()
    attack("256 MiB length prefix", huge_prefix)

    def twenty_jobs():
        frames: set[str] = set()
        with core.client(on_frame=lambda m: frames.add(m.job)) as c:
            jobs = [c.start_fit([("grace.jpg", PHOTO.read_bytes())], options=ENDLESS) for _ in range(20)]
            refused = [c.wait_final(j, 60) for j in jobs[MAX_JOBS_PER_SESSION:]]
            assert {(m.kind, m.fields["code"]) for m in refused} == {("error", "unavailable")}
            _wait_for(lambda: frames >= set(jobs[:MAX_JOBS_PER_SESSION]), timeout=300, poll=0.1)
            assert _proc_status(pid, "Threads") <= idle_threads + 20
            for j in jobs[:MAX_JOBS_PER_SESSION]:
                c.cancel(j)
                assert c.wait_final(j, 60).kind == "cancelled"
    attack("20 fit jobs on one connection", twenty_jobs)

    def png(size):
        def run():
            with core.client() as c:
                job = c.start_fit([("bomb.png", _png(size))])
                final = c.wait_final(job, 300)
            assert final.fields.get("code") == "bad_message" and "traceback" not in final.fields
        return run

    attack("PNG bomb 8000x8000 RGBA", png((8000, 8000)))
    side = int((MAX_DECODED_BYTES / decoded_bytes((1, 1), "RGBA")) ** 0.5)
    attack(f"largest RGBA PNG accepted, {side}x{side}", png((side, side)))

    with core.client() as c:  # and afterwards the core still does its work
        job = c.start_replay(np.zeros((2, 50, 3), np.float32), count=20)
        assert c.wait_final(job, 30).kind == "result"
        tid = c.send_template(str(_saved(small, tmp_path / "ok.npz")))
        assert c.get_template(tid).num_verts == small.num_verts
    report = ", ".join(f"{k}: {v / 1024:+.0f} MB" for k, v in growth.items())
    print(f"\ncore idle RSS {idle_kb / 1024:.0f} MB; peak growth per attack: {report}")
    over = {k: v for k, v in growth.items() if v > RSS_BUDGET_KB}
    assert not over, f"RSS grew past {RSS_BUDGET_KB // 1024} MB over idle ({idle_kb // 1024} MB): {over}"


def _saved(template, path: pathlib.Path) -> pathlib.Path:
    template.save(path)
    return path


# -- connections: handshake deadline, cap, idle timeout -----------------------------------

def test_a_dribbling_handshake_is_dropped_within_ten_seconds(strict):
    hello = encode(Message("hello", fields={"protocol": "1.0", "token": strict.info["token"]}))
    sock = strict.raw()
    sock.settimeout(20)
    t0 = time.monotonic()

    def dribble():
        for byte in hello[:-1]:  # one byte a second, never the whole hello
            try:
                sock.send(bytes([byte]))
            except OSError:
                return
            time.sleep(1.0)
    threading.Thread(target=dribble, daemon=True).start()
    stream = sock.makefile("rb")
    reply = read_message(stream)
    assert reply.kind == "error" and reply.fields["code"] == "protocol" and "within" in reply.fields["message"]
    assert read_message(stream) is None  # closed
    assert HELLO_TIMEOUT_S <= time.monotonic() - t0 <= 10.0
    sock.close()


def test_connections_past_the_cap_are_refused_and_served_again_once_others_leave(strict):
    held = [strict.raw() for _ in range(MAX_CONNECTIONS)]  # not yet authenticated: they count too
    try:
        extra = strict.raw()
        reply = read_message(extra.makefile("rb"))
        assert reply.fields["code"] == "unavailable" and str(MAX_CONNECTIONS) in reply.fields["message"]
        extra.close()
    finally:
        for s in held:
            s.close()
    def served():
        try:
            with strict.client() as c:
                return c.status() is not None
        except Exception:
            return False
    _wait_for(served, timeout=10, poll=0.2)


def test_an_idle_authenticated_client_is_dropped_but_not_while_its_job_runs(strict):
    sock = _attacker(strict)
    stream = sock.makefile("rb")
    t0 = time.monotonic()
    reply = read_message(stream)
    assert reply.fields["code"] == "unavailable" and "idle" in reply.fields["message"]
    assert read_message(stream) is None
    assert IDLE_TIMEOUT <= time.monotonic() - t0 <= IDLE_TIMEOUT + 10
    sock.close()
    frames = []
    with strict.client(on_frame=lambda m: frames.append(m)) as c:
        job = c.start_replay(np.zeros((1, 10, 3), np.float32), count=10_000_000)
        time.sleep(IDLE_TIMEOUT * 2.5)  # sends nothing meanwhile; its job runs
        assert c.lost is None
        c.cancel(job)
        assert c.wait_final(job, 10).kind == "cancelled"


# -- jobs and paths ---------------------------------------------------------------------

def test_a_third_job_on_one_connection_is_refused_and_the_others_go_on(strict):
    frames: list[str] = []
    with strict.client(on_frame=lambda m: frames.append(m.job)) as c:
        running = [c.start_replay(np.zeros((1, 10, 3), np.float32), count=10_000_000) for _ in range(MAX_JOBS_PER_SESSION)]
        third = c.start_replay(np.zeros((1, 10, 3), np.float32), count=5)
        refused = c.wait_final(third, 10)
        assert refused.fields["code"] == "unavailable" and f"already runs {MAX_JOBS_PER_SESSION} jobs" in refused.fields["message"]
        assert {j["id"] for j in c.status()["jobs"]} == set(running)
        c.cancel(running[0])
        assert c.wait_final(running[0], 10).kind == "cancelled"
        again = c.start_replay(np.zeros((1, 10, 3), np.float32), count=5)
        assert c.wait_final(again, 10).kind == "result"
        c.cancel(running[1])
        assert c.wait_final(running[1], 10).kind == "cancelled"


def test_a_tcp_core_without_allow_paths_opens_no_path_and_does_not_say_what_exists(strict, tmp_path):
    template = tmp_path / "rig.npz"
    random_template(seed=4).save(template)
    photo = tmp_path / "face.jpg"
    photo.write_bytes(PHOTO.read_bytes())
    messages = {}
    with strict.client() as c:
        for name, path in [("template", template), ("template", tmp_path / "missing.npz")]:
            with pytest.raises(BridgeError) as err:
                c.send_template(str(path))
            assert err.value.code == "bad_message"
            messages.setdefault(name, set()).add(str(err.value).replace(str(path), "PATH"))
        for path in (photo, tmp_path / "missing.jpg"):
            final = c.wait_final(c.start_fit([str(path)]), 30)
            assert final.kind == "error" and final.fields["code"] == "bad_message"
            messages.setdefault("photo", set()).add(final.fields["message"].replace(str(path), "PATH"))
        for path in (photo, tmp_path / "missing.png"):  # a normal map for the files cue provider
            final = c.wait_final(c.start_fit([("face.jpg", photo.read_bytes())], options={
                "cues": {"provider": "files", "normal_maps": [str(path)]}}), 30)
            assert final.kind == "error" and final.fields["code"] == "bad_message"
            assert "--allow-paths" in final.fields["message"]
            messages.setdefault("normal map", set()).add(final.fields["message"].replace(str(path), "PATH"))
        for path in (tmp_path / "weights.pt", tmp_path / "missing.pt"):  # face prior weights other than ours
            path.parent.joinpath("weights.pt").write_bytes(b"not weights")
            final = c.wait_final(c.start_fit([("face.jpg", photo.read_bytes())], options={
                "cues": {"provider": "face_prior", "weights": str(path)}}), 30)
            assert final.kind == "error" and final.fields["code"] == "bad_message"
            assert "--allow-paths" in final.fields["message"]
            messages.setdefault("prior weights", set()).add(final.fields["message"].replace(str(path), "PATH"))
    for what, texts in messages.items():
        assert len(texts) == 1, f"{what}: an existing and a missing file answer differently: {texts}"
        assert "inline" in next(iter(texts)) or what in ("normal map", "prior weights")


def test_the_ready_file_is_not_written_through_a_planted_link(tmp_path):
    from core.files import create_new

    victim = tmp_path / "victim"
    victim.write_text("keep")
    (tmp_path / "linked-ready.json").symlink_to(victim)  # planted where the core's ready file goes
    core = Core(tmp_path, name="linked")
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while core.ready.is_symlink():
            assert core.proc.poll() is None and time.monotonic() < deadline, "the core did not replace the link"
            time.sleep(0.05)
        assert victim.read_text() == "keep"
        assert stat.S_IMODE(os.lstat(core.ready).st_mode) == 0o600
        assert json.loads(core.ready.read_text())["pid"] == core.proc.pid
    finally:
        core.stop()
    # its temporary name is created O_EXCL | O_NOFOLLOW: a link there is refused, never followed
    link = tmp_path / "tmp-link"
    link.symlink_to(victim)
    with pytest.raises(FileExistsError):
        create_new(link, 0o600)
    assert victim.read_text() == "keep"
