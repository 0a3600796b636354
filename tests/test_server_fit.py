"""Real (short) fit jobs through `likeness serve`: frames, progress, control, inline results and photos."""

from __future__ import annotations

import pathlib
import time

import matplotlib
import numpy as np
import pytest

from bridge.protocol import Message

from test_server import Core, _wait_for  # tests/ is on sys.path (pytest rootdir-less tests folder)

PHOTO = pathlib.Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
SHORT = {"schedule": {"only": ["rig"], "stages": {"rig": {"iterations": 3}}}}
ENDLESS = {"schedule": {"only": ["rig"], "stages": {"rig": {"iterations": 100_000, "plateau_patience": 100_000}}}}


@pytest.fixture(scope="module")
def core(tmp_path_factory):
    c = Core(tmp_path_factory.mktemp("fitcore"), name="fit").wait()
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


def test_fit_errors_cross_with_their_traceback(core):
    with core.client() as c:
        job = c.start_fit([("broken.jpg", b"\xff\xd8 not really a jpeg")], options=SHORT)
        final = c.wait_final(job, 120)
        assert final.kind == "error" and final.fields["code"] == "failed"
        assert "broken.jpg" in final.fields["message"] + final.fields["traceback"]
        assert "Traceback" in final.fields["traceback"]
        c.send(Message("job", "nophotos", fields={"type": "fit", "photos": []}))
        assert "at least one photo" in c.wait_final("nophotos", 60).fields["message"]
        job = c.start_fit([str(PHOTO)], options={**SHORT, "focal": "wide"})
        final = c.wait_final(job, 60)
        assert final.kind == "error" and final.fields["code"] == "bad_message"
        assert "35 mm-equivalent" in final.fields["message"]


def test_default_template_travels_to_the_client(core):
    with core.client() as c:
        tpl = c.get_template("default", timeout=300)
    assert tpl.num_verts > 4000 and len(tpl.meta["joint_names"]) == tpl.arrays["joint_parents"].shape[0]
