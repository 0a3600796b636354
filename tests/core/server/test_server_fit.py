"""Real (short) fit jobs through `likeness serve`: frames, progress, control, inline results and photos."""

from __future__ import annotations

import pathlib
import time

import matplotlib
import numpy as np
import pytest

from bridge.protocol import Message

from test_server import Core, _wait_for  # tests/ is on sys.path (pytest rootdir-less tests folder)

from conftest import GRACE_HOPPER  # noqa: E402

PHOTO = GRACE_HOPPER
SHORT = {"schedule": {"only": ["rig"], "stages": {"rig": {"iterations": 3}}}}
ENDLESS = {"schedule": {"only": ["rig"], "stages": {"rig": {"iterations": 100_000, "plateau_patience": 100_000}}}}


@pytest.fixture(scope="module")
def core(tmp_path_factory):
    c = Core(tmp_path_factory.mktemp("fitcore"), "--allow-paths", name="fit").wait()
    yield c
    c.stop()


def test_short_fit_with_inline_photo_streams_frames_and_returns_the_result_inline(core):
    frames = []
    with core.client(on_frame=lambda m: frames.append(m)) as c:
        job = c.start_fit([("grace.jpg", PHOTO.read_bytes())], options={**SHORT, "focal": 85}, device="cpu")
        final = c.wait_final(job, 300)
        assert final.kind == "result", final.fields
        view = final.fields["meta"]["views"][0]
        assert view["focal_source"] == "given" and view["focal_35mm"] == pytest.approx(85.0, rel=1e-3)
        verts = final.buffers["verts"]
        assert verts.dtype == np.float32 and verts.ndim == 2 and verts.shape[1] == 3
        assert np.isfinite(verts).all()
        assert final.buffers["albedo"].shape == final.buffers["normal_map"].shape == (1024, 1024, 3)  # UV maps
        assert final.fields["meta"]["stages"][0]["name"] == "rig"
        assert frames, "no frames streamed"
        assert all(f.buffers["verts"].shape == verts.shape for f in frames)
        assert {f.fields["stage"] for f in frames} <= {"rig", "done"}
        assert frames[0].fields["losses"], "frames carry the loss terms"
        progress = c.latest_progress(job)
        assert progress is not None and progress.fields["total"] >= progress.fields["step"] > 0


def test_fit_pause_pins_resume_cancel_within_one_iteration(core):
    iterations = []
    with core.client(on_frame=lambda m: iterations.append(m.fields["step"])) as c:
        job = c.start_fit([str(PHOTO)], options=ENDLESS)
        _wait_for(lambda: len(iterations) > 3, timeout=120)
        c.pause(job)
        time.sleep(0.5)
        held = iterations[-1]
        time.sleep(0.5)
        assert iterations[-1] - held <= 1, "the fit kept iterating while paused"
        verts = c.latest_frame(job).buffers["verts"]
        ids = np.array([0, verts.shape[0] - 1])
        c.set_pins(job, ids, verts[ids] + np.float32(0.001), weight=1.0)  # nudge two vertices by 1 mm
        c.resume(job)
        _wait_for(lambda: iterations[-1] > held + 2, timeout=60)
        assert c.latest_progress(job).fields["stage"] == "rig"
        c.cancel(job)
        t0 = time.monotonic()
        assert c.wait_final(job, 30).kind == "cancelled"
        assert time.monotonic() - t0 < 5.0
        assert job not in {j["id"] for j in c.status()["jobs"]}


def test_bad_inputs_are_bad_messages_without_the_cores_traceback(core):
    with core.client() as c:
        job = c.start_fit([("broken.jpg", b"\xff\xd8 not really a jpeg")], options=SHORT)
        final = c.wait_final(job, 120)
        assert final.kind == "error" and final.fields["code"] == "bad_message"
        assert "broken.jpg" in final.fields["message"] and "traceback" not in final.fields
        c.send(Message("job", "nophotos", fields={"type": "fit", "photos": []}))
        assert "at least one photo" in c.wait_final("nophotos", 60).fields["message"]
        job = c.start_fit([str(PHOTO)], options={**SHORT, "focal": "wide"})
        final = c.wait_final(job, 60)
        assert final.kind == "error" and final.fields["code"] == "bad_message"
        assert "35 mm-equivalent" in final.fields["message"]


def test_options_are_checked_before_the_fit_and_normal_maps_reach_it(core, tmp_path):
    import cv2

    with core.client() as c:
        job = c.start_fit([str(PHOTO)], options={**SHORT, "texture": 512})
        final = c.wait_final(job, 60)
        assert final.kind == "error" and final.fields["code"] == "bad_message"
        assert "unknown fit options ['texture']" in final.fields["message"]
        # A normal map by path (this core opens paths): the files cue provider feeds the fit's normal term.
        h, w = cv2.imread(str(PHOTO)).shape[:2]
        tilted = np.broadcast_to(np.round((np.array([0.6, 0.0, -0.8]) * 0.5 + 0.5) * 65535).astype(np.uint16),
                                 (h, w, 3))
        assert cv2.imwrite(str(tmp_path / "n.png"), np.ascontiguousarray(tilted))
        verts = {}
        for name, extra in (("plain", {}), ("normals", {"cues": {"normal_maps": [str(tmp_path / "n.png")]}})):
            final = c.wait_final(c.start_fit([str(PHOTO)], options={**SHORT, "texture_size": 0, **extra}), 300)
            assert final.kind == "result", final.fields
            assert "albedo" not in final.buffers  # texture_size 0: no maps
            verts[name] = final.buffers["verts"]
        assert np.abs(verts["plain"] - verts["normals"]).max() > 1e-5


def test_default_template_travels_to_the_client(core):
    with core.client() as c:
        tpl = c.get_template("default", timeout=300)
    assert tpl.num_verts > 4000 and len(tpl.meta["joint_names"]) == tpl.arrays["joint_parents"].shape[0]


def test_bad_pins_are_refused_and_the_fit_goes_on(core):
    steps = []
    with core.client(on_frame=lambda m: steps.append(m.fields["step"])) as c:
        job = c.start_fit([("grace.jpg", PHOTO.read_bytes())], options=ENDLESS)
        _wait_for(lambda: len(steps) > 2, timeout=120)
        n = c.latest_frame(job).buffers["verts"].shape[0]
        zero = np.zeros((1, 3), np.float32)
        bad = [
            (np.array([10**6]), zero, 1.0, "vertices 0.."),
            (np.array([n]), zero, 1.0, "vertices 0.."),
            (np.array([-1]), zero, 1.0, "vertices 0.."),
            (np.array([0]), zero, float("nan"), "weight"),
            (np.array([0]), zero, 1e30, "weight"),
            (np.array([0]), np.full((1, 3), 1e30, np.float32), 1.0, "finite positions"),
            (np.zeros(200_000, np.int64), np.zeros((200_000, 3), np.float32), 1.0, "at most"),
        ]
        for ids, targets, weight, _ in bad:
            c.send(Message("pin", job, fields={"weight": weight}, buffers={"ids": ids, "targets": targets}))
        for *_, expected in bad:
            e = c.events.get(timeout=10)
            assert (e.kind, e.fields["code"], e.fields["about"]) == ("error", "bad_message", "pin")
            assert expected in e.fields["message"]
        c.set_pins(job, [0, n - 1], np.zeros((2, 3), np.float32), weight=1.0)  # a good one still lands
        seen = len(steps)
        _wait_for(lambda: len(steps) > seen + 3, timeout=60)  # still iterating
        c.cancel(job)
        assert c.wait_final(job, 30).kind == "cancelled"


def test_sigterm_and_sigint_stop_a_core_with_fits_running(tmp_path):
    import signal

    for sig in (signal.SIGTERM, signal.SIGINT):
        core = Core(tmp_path, name=f"stop{sig}").wait()
        steps = []
        with core.client(on_frame=lambda m: steps.append(m)) as c:
            jobs = [c.start_fit([("grace.jpg", PHOTO.read_bytes())], options=ENDLESS),
                    c.start_replay(np.zeros((1, 10, 3), np.float32), count=10_000_000)]
            _wait_for(lambda: any(m.job == jobs[0] for m in steps), timeout=300)
            core.proc.send_signal(sig)
            assert {c.wait_final(j, 30).kind for j in jobs} == {"cancelled"}  # jobs cancelled, client told
            assert core.proc.wait(30) == 0, core.proc.stderr.read()
        err = core.proc.stderr.read()
        assert "terminate called" not in err and "likeness core stopped" in err
        assert not core.ready.exists()
