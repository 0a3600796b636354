"""The add-on against a real core process: start it from the operator, stream frames into the
preview (the timer callback is called directly: timers never fire in module mode), pins from
Edit Mode, cancel, a killed core (restarted), a killed client (the core cancels its job)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from test_addon import make_artist_rig
from test_addon_helpers import MODULE, build_zip, install, pump, uninstall

pytestmark = pytest.mark.bpy


@pytest.fixture(scope="module")
def ext(bpy_module, tmp_path_factory):
    module = install(bpy_module, build_zip(tmp_path_factory.mktemp("ext")))
    yield module
    uninstall(bpy_module)


@pytest.fixture(scope="module")
def live(bpy_module, ext):
    """The add-on's live module, connected to a local core started by the operator."""
    bpy = bpy_module
    live = sys.modules[MODULE + ".addon.live"]
    prefs = bpy.context.preferences.addons[MODULE].preferences
    prefs.core_mode, prefs.python_path = "LOCAL", sys.executable
    assert bpy.ops.likeness.start_core() == {"FINISHED"}
    assert pump(live.tick, lambda: live.LIVE.connected or live.LIVE.link.state == "FAILED", 120), "core start"
    assert live.LIVE.connected, live.LIVE.link.error
    yield live
    if live.LIVE.link is not None:
        live.LIVE.link.stop()


@pytest.fixture
def preview(bpy_module, live):
    """A replay job's template: an artist's rig, shown in the preview object."""
    mb = sys.modules[MODULE + ".addon.mesh_build"]
    obj, arm = make_artist_rig(bpy_module, "LiveRig")
    arrays, meta, _ = mb.read_rig(obj, arm)
    live.LIVE.reset_job()
    live.LIVE.template = (arrays, meta)
    live.ensure_preview(arrays)
    yield arrays
    live.LIVE.reset_job()


def _replay(live, poses, count):
    live.LIVE.job = live.LIVE.client.start_replay(poses, count=count)
    live.LIVE.state = live.RUNNING


def _positions(live):
    mb = sys.modules[MODULE + ".addon.mesh_build"]
    return mb.read_positions(live.preview_object().data)


def test_frames_reach_the_preview_one_by_one_until_the_result(bpy_module, live, preview):
    rng = np.random.default_rng(1)
    poses = preview["verts"][None] + rng.normal(0, 0.01, (6, *preview["verts"].shape)).astype(np.float32)
    count = 3000
    _replay(live, poses, count)
    seen = [_positions(live)]

    def record():
        pos = _positions(live)
        if not np.array_equal(pos, seen[-1]):
            seen.append(pos)
        return live.LIVE.state == live.DONE

    assert pump(live.tick, record, 30)
    np.testing.assert_array_equal(seen.pop(0), preview["verts"])
    assert len(seen) >= 2
    for s in seen:  # every write is one whole frame, never a mix
        assert min(np.abs(s - p).max() for p in poses) == 0.0
    np.testing.assert_array_equal(seen[-1], poses[(count - 1) % len(poses)])
    assert live.LIVE.frames >= len(seen) and live.LIVE.stage == "replay" and live.LIVE.total == count
    assert live.LIVE.fps > 0 and live.LIVE.progress == 1.0
    assert live.LIVE.result is not None and live.LIVE.result.kind == "result"
    np.testing.assert_array_equal(live.LIVE.result.buffers["verts"], seen[-1])


def test_edit_mode_holds_frames_and_moved_vertices_become_pins(bpy_module, live, preview):
    bpy = bpy_module
    import bmesh

    poses = np.repeat(preview["verts"][None], 2, axis=0)
    poses[1] += 0.02
    _replay(live, poses, 10_000_000)
    assert pump(live.tick, lambda: live.LIVE.frames >= 2, 10)
    obj = live.preview_object()
    bpy.context.view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode="EDIT")
    frames = live.LIVE.frames
    for _ in range(20):
        live.tick()
        time.sleep(0.005)
    assert live.LIVE.frames == frames and live.LIVE.held
    bm = bmesh.from_edit_mesh(obj.data)
    bm.verts.ensure_lookup_table()
    bm.verts[3].co.z += 0.05
    bm.verts[7].co.x -= 0.05
    bmesh.update_edit_mesh(obj.data)
    edited = np.array([bm.verts[3].co[:], bm.verts[7].co[:]], np.float32)
    bpy.ops.object.mode_set(mode="OBJECT")
    live.tick()
    assert sorted(live.LIVE.pins) == [3, 7] and not live.LIVE.held
    np.testing.assert_allclose(np.array([live.LIVE.pins[3], live.LIVE.pins[7]]), edited, atol=1e-6)
    assert pump(live.tick, lambda: live.LIVE.frames > frames, 10), "streaming resumes after Edit Mode"
    assert bpy.ops.likeness.clear_pins() == {"FINISHED"} and not live.LIVE.pins
    assert bpy.ops.likeness.cancel_fit() == {"FINISHED"}
    assert pump(live.tick, lambda: live.LIVE.state == live.CANCELLED, 5)
    # no control message was refused by the core
    assert "refused" not in live.LIVE.message


def test_cancel_is_answered_quickly_and_the_scene_stays_valid(bpy_module, live, preview):
    bpy = bpy_module
    _replay(live, preview["verts"][None], 10_000_000)
    assert pump(live.tick, lambda: live.LIVE.frames >= 1, 10)
    assert bpy.ops.likeness.pause_fit() == {"FINISHED"} and live.LIVE.state == live.PAUSED
    assert bpy.ops.likeness.resume_fit() == {"FINISHED"} and live.LIVE.state == live.RUNNING
    objects = sorted(o.name for o in bpy.data.objects)
    t0 = time.monotonic()
    assert bpy.ops.likeness.cancel_fit() == {"FINISHED"}
    assert pump(live.tick, lambda: live.LIVE.state == live.CANCELLED, 5)
    assert time.monotonic() - t0 < 1.0
    assert "cancelled" in live.LIVE.message.lower()
    assert sorted(o.name for o in bpy.data.objects) == objects
    assert live.LIVE.client.status()["jobs"] == []


def test_a_killed_client_has_its_job_cancelled_within_a_second(live):
    info = live.LIVE.link.core.info
    script = textwrap.dedent(f"""
        import sys, numpy as np
        from bridge.client import Client
        c = Client.connect({info['host']!r}, {info['port']}, {info['token']!r})
        c.start_replay(np.zeros((1, 100, 3), np.float32), count=10_000_000, job="doomed")
        print("started", flush=True)
        sys.stdin.read()
    """)
    client = live.LIVE.client
    before = client.status()["sessions"]
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "started"
        # status lists only this connection's jobs; the other client's session counts until its job ends
        assert "doomed" not in {j["id"] for j in client.status()["jobs"]}
        deadline = time.monotonic() + 10
        while client.status()["sessions"] != before + 1:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        proc.kill()
        proc.wait()
    t0 = time.monotonic()
    while client.status()["sessions"] != before:
        assert time.monotonic() - t0 < 1.0, "the core kept the dead client's job"
        time.sleep(0.02)


def test_a_killed_core_is_reported_and_restarted(bpy_module, live, preview):
    bpy = bpy_module
    _replay(live, preview["verts"][None], 10_000_000)
    assert pump(live.tick, lambda: live.LIVE.frames >= 1, 10)
    objects = sorted(o.name for o in bpy.data.objects)
    pid = live.LIVE.link.core.pid
    os.kill(pid, signal.SIGKILL)
    assert pump(live.tick, lambda: live.LIVE.state == live.LOST, 5)
    assert "exited with code -9" in live.LIVE.message and "Restarting" in live.LIVE.message
    assert bpy.data.texts[live.REPORT_TEXT].as_string().startswith("The core exited")
    assert "likeness core listening" in bpy.data.texts[live.LOG_TEXT].as_string()
    assert sorted(o.name for o in bpy.data.objects) == objects
    assert pump(live.tick, lambda: live.LIVE.connected, 120), live.LIVE.link.error
    assert live.LIVE.link.restarts == 1 and live.LIVE.link.core.pid != pid
    assert live.LIVE.client.status()["jobs"] == []


def test_a_bad_core_python_is_reported(live, tmp_path):
    core_process = sys.modules[MODULE + ".addon.core_process"]
    # an interpreter without the core (the system Python, or Blender's own)
    bare = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    link = core_process.CoreLink(python=str(bare / "bin" / "python"))
    link.start()
    assert link.wait(60) == core_process.FAILED
    assert "module 'core' is missing" in link.error and "Install Likeness" in link.error
    link = core_process.CoreLink(python=str(tmp_path / "nothing" / "python"))
    link.start()
    assert link.wait(10) == core_process.FAILED and "does not exist" in link.error


from conftest import GRACE_HOPPER  # noqa: E402

PHOTO = str(GRACE_HOPPER)


def test_fit_a_photo_end_to_end_and_create_the_result(bpy_module, live):
    bpy = bpy_module
    settings = bpy.context.scene.likeness
    settings.photos.clear()
    photo = settings.photos.add()
    photo.name, photo.filepath = "grace_hopper.jpg", os.path.abspath(PHOTO)
    settings.template_source, settings.preset = "DEFAULT", "draft"
    for stage, n in (("rig", 6), ("joint", 3), ("vertex", 3)):
        setattr(settings, f"override_{stage}", True)
        setattr(settings, f"{stage}_iterations", n)
    live.LIVE.reset_job()
    old_camera = bpy.data.objects.get(live.CAMERA_NAME)
    if old_camera is not None:
        bpy.data.objects.remove(old_camera)
    live.report_problem("an earlier problem")  # a success must not leave it in the report
    assert bpy.ops.likeness.start_fit() == {"FINISHED"}
    seen, camera_while_fitting = [], []

    def record():
        obj = live.preview_object()
        if obj is not None and live.LIVE.template is not None:
            pos = _positions(live)
            if not seen or not np.array_equal(pos, seen[-1]):
                seen.append(pos)
        cam = bpy.data.objects.get(live.CAMERA_NAME)
        if live.LIVE.state not in (live.DONE, live.FAILED, live.LOST) and cam is not None:
            camera_while_fitting.append(np.array(cam.matrix_world))
        return live.LIVE.state in (live.DONE, live.FAILED, live.LOST)

    try:
        assert pump(live.tick, record, 300)
        assert live.LIVE.state == live.DONE, live.LIVE.message
        assert len(seen) >= 3  # the template, then at least two different frames
        # The photo camera follows the fit's camera while it runs, not only at the end.
        assert camera_while_fitting, "no photo camera while the fit ran"
        assert photo.status == "fitted"
        assert bpy.data.objects.get(live.CAMERA_NAME) is not None
        assert "earlier problem" not in bpy.data.texts[live.REPORT_TEXT].as_string()
        assert bpy.ops.likeness.create_result() == {"FINISHED"}
        result = sys.modules[MODULE + ".addon.result"]
        coll = result.result_collections()[-1]
        assert coll.name == "grace_hopper"  # named after the photo
        head = coll.objects["grace_hopper Head"]
        parts = coll.objects["grace_hopper Eyes and Mouth"]
        arkit = set(sys.modules[MODULE + ".bridge.template"].ARKIT_EXPRESSIONS)
        keys = {o.name: {k.name: k.value for k in o.data.shape_keys.key_blocks[1:]} for o in (head, parts)}
        # Every expression at rest, ARKit names, each a slider on the head (tongueOut too, which moves
        # only the tongue); the parts' keys are driven by the head's of the same name.
        assert all(v == 0.0 for k in keys.values() for v in k.values())
        assert set(keys[head.name]) == arkit
        assert sorted(live.LIVE.result.fields["meta"]["expression_names"]) == sorted(arkit)
        assert {"tongueOut", "jawOpen", "eyeLookUpLeft"} <= set(keys[parts.name])
        driven = {d.data_path for d in parts.data.shape_keys.animation_data.drivers}
        assert driven == {f'key_blocks["{k}"].value' for k in keys[parts.name]}
        # Check Rig passes on Likeness's own result.
        for o in bpy.context.view_layer.objects:
            o.select_set(False)
        head.select_set(True)
        bpy.context.view_layer.objects.active = head
        assert bpy.ops.likeness.check_template() == {"FINISHED"}
        check = bpy.data.texts[live.REPORT_TEXT].as_string()
        assert "Missing" not in check and "Error" not in check and "(52 expressions)" in check, check
        # A second result gets its own numbered name, never Blender's ".001".
        assert bpy.ops.likeness.create_result() == {"FINISHED"}
        second = result.result_collections()[-1]
        assert second.name == "grace_hopper 2" and "grace_hopper 2 Head" in second.objects
        assert not [o.name for c in (coll, second) for o in c.objects if ".00" in o.name]
        result.remove_result(second)
        # The head wears the fitted albedo and detail normal map.
        mat = head.data.materials[0]
        images = {n.image.name for n in mat.node_tree.nodes if n.type == "TEX_IMAGE"}
        assert len(images) == 2 and all(bpy.data.images[i].size[0] == 1024 for i in images)
        assert any(n.type == "NORMAL_MAP" for n in mat.node_tree.nodes)
        assert any(o.type == "ARMATURE" for o in coll.objects)
    finally:
        for stage in ("rig", "joint", "vertex"):
            setattr(settings, f"override_{stage}", False)
        settings.photos.clear()
        live.LIVE.reset_job()


def _noise_photo(path):
    from PIL import Image

    Image.fromarray((np.random.default_rng(0).random((96, 96, 3)) * 255).astype(np.uint8)).save(path)
    return str(path)


def _fit_until_final(bpy, live, timeout=120):
    assert bpy.ops.likeness.start_fit() == {"FINISHED"}
    assert pump(live.tick, lambda: live.LIVE.state in (live.DONE, live.FAILED, live.CANCELLED, live.LOST), timeout)


def test_custom_rig_is_sent_and_the_cores_refusal_reaches_the_artist(bpy_module, live, tmp_path):
    """A rig without a landmark embedding is accepted as a template; the fit then fails with the core's reason."""
    bpy = bpy_module
    obj, arm = make_artist_rig(bpy, "CustomRig")
    settings = bpy.context.scene.likeness
    settings.photos.clear()
    photo = settings.photos.add()
    photo.name, photo.filepath = "grace.jpg", os.path.abspath(PHOTO)
    settings.template_source, settings.template_mesh, settings.template_armature = "SELECTED", obj, arm
    before = sorted(o.name for o in bpy.data.objects if o.name != live.PREVIEW_NAME)
    try:
        live.LIVE.reset_job()
        _fit_until_final(bpy, live)
        assert live.LIVE.state == live.FAILED
        assert "landmark embedding" in live.LIVE.message
        assert photo.status == "failed"
        assert "Traceback" in bpy.data.texts[live.REPORT_TEXT].as_string()
        assert live.LIVE.template_source == {"mesh": "CustomRig", "armature": "CustomRigRig"}
        assert sorted(o.name for o in bpy.data.objects if o.name != live.PREVIEW_NAME) == before
    finally:
        settings.template_source, settings.template_mesh, settings.template_armature = "DEFAULT", None, None
        settings.photos.clear()
        live.LIVE.reset_job()


def test_remote_core_gets_photos_inline(bpy_module, live, tmp_path):
    """Connected by address + token (remote mode), photos travel as bytes: the core decodes them itself."""
    bpy = bpy_module
    info = live.LIVE.link.core.info
    prefs = bpy.context.preferences.addons[MODULE].preferences
    local_link = live.LIVE.link
    settings = bpy.context.scene.likeness
    settings.photos.clear()
    photo = settings.photos.add()
    photo.name, photo.filepath = "noise.png", _noise_photo(tmp_path / "noise.png")
    prefs.core_mode, prefs.host, prefs.port, prefs.token = "REMOTE", info["host"], info["port"], info["token"]
    try:
        live.LIVE.link = None
        live.LIVE.reset_job()
        _fit_until_final(bpy, live)
        assert live.LIVE.link.remote and live.LIVE.link.core is None
        assert live.LIVE.state == live.FAILED and "no face found in 'noise.png'" in live.LIVE.message
        prefs.token = "wrong"
        assert bpy.ops.likeness.stop_core() == {"FINISHED"}
        assert bpy.ops.likeness.start_core() == {"FINISHED"}
        assert pump(live.tick, lambda: live.LIVE.link.state == "FAILED", 10)
        assert "refused" in live.LIVE.link.error
    finally:
        if live.LIVE.link is not None:
            live.LIVE.link.stop()
        live.LIVE.link = local_link
        prefs.core_mode, prefs.token = "LOCAL", ""
        settings.photos.clear()
        live.LIVE.reset_job()


def test_cancel_while_preparing_cancels_once_the_job_is_sent(bpy_module, live):
    bpy = bpy_module
    settings = bpy.context.scene.likeness
    settings.photos.clear()
    photo = settings.photos.add()
    photo.name, photo.filepath = "grace.jpg", os.path.abspath(PHOTO)
    try:
        live.LIVE.reset_job()
        assert bpy.ops.likeness.start_fit() == {"FINISHED"}
        assert live.LIVE.state == live.PREPARING
        assert bpy.ops.likeness.cancel_fit() == {"FINISHED"} and live.LIVE.cancel_requested
        assert pump(live.tick, lambda: live.LIVE.state in (live.DONE, live.FAILED, live.CANCELLED), 60)
        assert live.LIVE.state == live.CANCELLED, live.LIVE.message
        assert photo.status == "cancelled"
    finally:
        settings.photos.clear()
        live.LIVE.reset_job()


def test_core_log_and_rig_check_reach_text_datablocks(bpy_module, live):
    bpy = bpy_module
    assert bpy.ops.likeness.show_core_log() == {"FINISHED"}
    log = bpy.data.texts[live.LOG_TEXT].as_string()
    assert "serve --port 0 --ready-file" in log and "likeness core listening on tcp://127.0.0.1:" in log
    assert live.LIVE.link.core.info["token"] not in log  # the token travels in a file, never on the command line
    obj, _ = make_artist_rig(bpy, "CheckRig")
    bpy.context.view_layer.objects.active = obj
    bpy.context.scene.likeness.template_mesh = None
    assert bpy.ops.likeness.check_template() == {"FINISHED"}
    report = bpy.data.texts[live.REPORT_TEXT].as_string()
    assert report.startswith("Rig check: CheckRig") and "2 joints, 2 controllers (1 expressions)" in report
    assert "Missing: landmark embedding" in report and "region 'eye_l_ring'" in report


def test_a_local_core_finds_its_python_or_names_the_setting(live, tmp_path, monkeypatch):
    core_process = sys.modules[MODULE + ".addon.core_process"]
    checkout = tmp_path / "checkout"
    assert core_process.find_core_python("/given/python", environ={}) == "/given/python"
    assert core_process.find_core_python("", environ={"LIKENESS_CORE_PYTHON": "/env/python"}) == "/env/python"
    # an extension linked from a checkout uses that checkout's .venv
    (checkout / ".venv" / "bin").mkdir(parents=True)
    (checkout / ".venv" / "bin" / "python").symlink_to(sys.executable)
    assert core_process.find_core_python("", environ={}, extension_root=str(checkout)) == str(
        checkout / ".venv" / "bin" / "python")
    # nothing to find: the message names the one setting, not the remote core's host and port
    monkeypatch.delenv("LIKENESS_CORE_PYTHON", raising=False)
    monkeypatch.setattr(core_process, "EXTENSION_ROOT", str(tmp_path / "nowhere"))
    link = core_process.CoreLink(python="", local=True)
    link.start()
    assert link.wait(10) == core_process.FAILED
    assert "Core Python" in link.error and "host" not in link.error


def test_an_imported_head_fits_from_its_template_file_on_the_artists_head(bpy_module, live, tmp_path):
    """Template: File. A head of another topology, placed away from the default head's spot, made
    a template by ``likeness template import``: the fit runs on it and the preview, the photo
    camera and the result sit on the artist's head, not in the default head's frame."""
    from core.bench.heads import make_head
    from core.export.obj import obj_to_world, read_obj, world_to_obj
    from core.template import load, load_default

    bpy = bpy_module
    mb = sys.modules[MODULE + ".addon.mesh_build"]
    head = read_obj(make_head("anny", load_default(), tmp_path))
    angle = np.radians(20.0)
    turn = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    artist = obj_to_world(head.verts) @ turn.T + np.array([0.3, 0.0, 0.1])
    moved = tmp_path / "moved.obj"
    lines = ["v %.6f %.6f %.6f" % tuple(v) for v in world_to_obj(artist)]
    lines += ["f " + " ".join(str(i + 1) for i in p if i >= 0) for p in head.polygons]
    moved.write_text("\n".join(lines) + "\n")
    npz = tmp_path / "moved.npz"
    res = subprocess.run([sys.executable, "-m", "core.cli", "template", "import", str(moved), "--out", str(npz)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    template = load(npz)
    settings = bpy.context.scene.likeness
    settings.photos.clear()
    photo = settings.photos.add()
    photo.name, photo.filepath = "grace_hopper.jpg", os.path.abspath(PHOTO)
    settings.template_source, settings.template_file, settings.preset = "FILE", str(npz), "draft"
    for stage, n in (("rig", 6), ("joint", 3), ("vertex", 3)):
        setattr(settings, f"override_{stage}", True)
        setattr(settings, f"{stage}_iterations", n)
    try:
        live.LIVE.reset_job()
        _fit_until_final(bpy, live, timeout=300)
        assert live.LIVE.state == live.DONE, live.LIVE.message
        preview = live.preview_object()
        assert len(preview.data.vertices) == template.num_verts
        m = np.array(preview.matrix_world)
        placed = template.verts.astype(np.float64) @ m[:3, :3].T + m[:3, 3]
        assert np.abs(placed - artist).max() < 1e-4  # the template's rest, put back on the artist's head
        assert bpy.ops.likeness.create_result() == {"FINISHED"}
        coll = sys.modules[MODULE + ".addon.result"].result_collections()[-1]
        rig = next(o for o in coll.objects if o.type == "ARMATURE")
        assert np.allclose(np.array(rig.matrix_world), m, atol=1e-6)
        head_obj = next(o for o in coll.objects if o.name.endswith("Head"))
        world = np.array([head_obj.matrix_world @ v.co for v in head_obj.data.vertices])
        assert np.linalg.norm(world.mean(0) - artist.mean(0)) < 0.02  # the fitted head is where the artist's is
        # the photo camera looks at the head in the artist's frame: the head's centre projects inside the photo
        cam = np.array(bpy.data.objects[live.CAMERA_NAME].matrix_world)
        toward = artist.mean(0) - cam[:3, 3]
        forward = -cam[:3, 2] / np.linalg.norm(cam[:3, 2])  # Blender cameras look down -Z
        assert toward @ forward / np.linalg.norm(toward) > np.cos(np.radians(12.0))
        sys.modules[MODULE + ".addon.result"].remove_result(coll)
        assert mb.placement_matrix(None).tolist() == np.eye(4).tolist()
    finally:
        for stage in ("rig", "joint", "vertex"):
            setattr(settings, f"override_{stage}", False)
        settings.template_source, settings.template_file = "DEFAULT", ""
        settings.photos.clear()
        live.LIVE.reset_job()


def test_import_head_makes_a_template_of_the_selected_mesh_and_can_be_cancelled(bpy_module, live, tmp_path):
    """Selected Rig > Import Head: the core imports the mesh in a process of its own; Template becomes
    that file; the artist's object is untouched. A cancelled import writes nothing."""
    from core.bench.heads import make_head
    from core.template import load, load_default

    bpy = bpy_module
    path = make_head("anny", load_default(), tmp_path)
    bpy.ops.wm.obj_import(filepath=str(path))
    obj = bpy.context.selected_objects[0]
    bpy.context.view_layer.objects.active = obj
    before = np.array([v.co[:] for v in obj.data.vertices])
    objects = sorted(o.name for o in bpy.data.objects)
    settings = bpy.context.scene.likeness
    settings.template_source, settings.template_mesh, settings.template_armature = "SELECTED", obj, None
    try:
        # cancelled at once: the process is interrupted, no template appears, Template is unchanged
        assert bpy.ops.likeness.import_head() == {"FINISHED"}
        assert live.IMPORT.process is not None and bpy.ops.likeness.import_head.poll() is False
        assert bpy.ops.likeness.cancel_import() == {"FINISHED"}
        assert pump(live.tick, lambda: live.IMPORT.process is None, 60)
        assert "cancelled" in live.IMPORT.message and settings.template_source == "SELECTED"
        assert live.IMPORT.out.endswith(f"{obj.name}_template.npz") and not os.path.exists(live.IMPORT.out)

        assert bpy.ops.likeness.import_head() == {"FINISHED"}
        assert pump(live.tick, lambda: live.IMPORT.process is None, 300)
        assert settings.template_source == "FILE", bpy.data.texts[live.REPORT_TEXT].as_string()[-600:]
        template = load(settings.template_file)
        assert template.num_verts == len(obj.data.vertices) and template.num_landmarks == 478
        report = bpy.data.texts[live.REPORT_TEXT].as_string()
        assert "landmarks    transferred vs found" in report, report
        assert np.array_equal(np.array([v.co[:] for v in obj.data.vertices]), before)  # the artist's mesh untouched
        assert sorted(o.name for o in bpy.data.objects) == objects
    finally:
        settings.template_source, settings.template_mesh, settings.template_file = "DEFAULT", None, ""
        live.IMPORT.message = ""
        bpy.data.objects.remove(obj)
