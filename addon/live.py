"""The live fit: one core link, one job, frames into a preview object, pins back.

The main thread owns bpy. Sockets live in ``bridge.client`` (its receiver
thread conflates frames); slow requests (fetching or sending a template,
starting the core) run on worker threads. :func:`tick`, a ``bpy.app.timers``
callback, does the rest within a small time budget: it finishes worker tasks,
reads the client's events, and writes only the newest frame into the preview
mesh with one ``foreach_set``. While the preview is in Edit Mode frames are
held back; on leaving it, moved vertices become pins.
"""

from __future__ import annotations

import collections
import queue
import threading
import time
import traceback

import numpy as np

import bpy

from ..bridge import schema
from ..bridge.client import ConnectionLost
from . import core_process, mesh_build

TICK_S = 1.0 / 60.0
IDLE_TICK_S = 0.25
# Main-thread time per tick for events + frame writes; a 24k-vertex write takes ~0.05 ms.
BUDGET_S = 0.004
LOST_GRACE_S = 1.0
PIN_EPSILON = 1e-6  # metres: smaller moves in Edit Mode are not pins
LIVE_COLLECTION = "Likeness Live"
PREVIEW_NAME = "Likeness Preview"
CAMERA_NAME = "Likeness Camera"
# The photo camera follows the fit's camera at most this often (seconds).
CAMERA_UPDATE_S = 0.25
REPORT_TEXT = "Likeness Report"
LOG_TEXT = "Likeness Core Log"

# Job states shown to the artist.
NONE, PREPARING, RUNNING, PAUSED, DONE, CANCELLED, FAILED, LOST = (
    "NONE", "PREPARING", "RUNNING", "PAUSED", "DONE", "CANCELLED", "FAILED", "LOST")
ACTIVE_STATES = (PREPARING, RUNNING, PAUSED)


class Live:
    """Everything the add-on knows about its core and the current job (main thread only)."""

    def __init__(self):
        self.link: core_process.CoreLink | None = None
        self.template: tuple[dict, dict] | None = None  # (arrays, meta) of the job's template
        self.default_template: tuple[dict, dict] | None = None
        self.template_source: dict = {}  # {"mesh": name, "armature": name} for a custom rig
        self.job: str | None = None
        self.state = NONE
        self.message = ""
        self.stage, self.step, self.total, self.iteration = "", 0, 0, 0
        self.losses: dict[str, float] = {}
        self.frames = 0
        self.frame_times: collections.deque[float] = collections.deque(maxlen=120)
        self.last_verts: np.ndarray | None = None
        self.frame_emitted = 0.0  # the core's time.monotonic() when it queued the newest applied frame
        self.camera_updated = 0.0  # perf_counter() when the photo camera last followed a frame
        self.held = False
        self.cancel_requested = False
        self.pins: dict[int, np.ndarray] = {}
        self.result = None  # bridge Message (kind result)
        self.result_photo: str = ""
        self.tasks: list[tuple[threading.Thread, dict, object]] = []
        self.lost_reported = False
        self.lost_since = 0.0

    # -- status for the panels ------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self.link is not None and self.link.state == core_process.CONNECTED

    @property
    def client(self):
        return self.link.client if self.connected else None

    @property
    def progress(self) -> float:
        return self.step / self.total if self.total else 0.0

    @property
    def fps(self) -> float:
        t = self.frame_times
        return (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else 0.0

    def reset_job(self) -> None:
        self.job, self.state, self.message = None, NONE, ""
        self.stage, self.step, self.total, self.iteration = "", 0, 0, 0
        self.losses, self.frames, self.held, self.pins, self.result = {}, 0, False, {}, None
        self.cancel_requested = False
        self.frame_times.clear()
        self.last_verts = None
        self.camera_updated = 0.0

    # -- background work ------------------------------------------------------------
    def run_async(self, work, on_done) -> None:
        """Run ``work()`` on a thread; ``on_done(value, error)`` runs later on the main thread in :func:`tick`."""
        box: dict = {}

        def target():
            try:
                box["value"] = work()
            except Exception as exc:  # reported to the artist by on_done
                box["error"] = exc
                box["traceback"] = traceback.format_exc()

        thread = threading.Thread(target=target, daemon=True, name="likeness-task")
        thread.start()
        self.tasks.append((thread, box, on_done))
        ensure_timer()

    def _finish_tasks(self) -> None:
        for item in [t for t in self.tasks if not t[0].is_alive()]:
            self.tasks.remove(item)
            _, box, on_done = item
            on_done(box.get("value"), box.get("error"), box.get("traceback", ""))


LIVE = Live()


class HeadImport:
    """The one head import that may run: the core's ``likeness template import`` in a process of its own
    (``process``: its Popen while it runs; ``out``: the template file it writes; ``message``: what the
    Template panel shows)."""

    def __init__(self):
        self.process = None
        self.out = ""
        self.cancelled = False
        self.message = ""


IMPORT = HeadImport()


# -- text datablocks the artist can read -------------------------------------------
def write_text(name: str, content: str) -> bpy.types.Text:
    text = bpy.data.texts.get(name) or bpy.data.texts.new(name)
    text.clear()
    text.write(content)
    return text


def report_problem(message: str, details: str = "") -> None:
    LIVE.message = message
    write_text(REPORT_TEXT, message + ("\n\n" + details if details else "") + "\n")


def clear_report() -> None:
    """A success replaces an earlier problem's text: the report never shows a stale error."""
    text = bpy.data.texts.get(REPORT_TEXT)
    if text is not None:
        text.clear()
        text.write("No problems: the last fit finished.\n")


# -- the preview object -------------------------------------------------------------
def live_collection() -> bpy.types.Collection:
    coll = bpy.data.collections.get(LIVE_COLLECTION)
    if coll is None:
        coll = bpy.data.collections.new(LIVE_COLLECTION)
    scene = bpy.context.scene
    if coll.name not in scene.collection.children:
        scene.collection.children.link(coll)
    return coll


def preview_object() -> bpy.types.Object | None:
    return bpy.data.objects.get(PREVIEW_NAME)


def ensure_preview(arrays: dict) -> bpy.types.Object:
    """The preview: the template's topology, no shape keys (they would hide position writes)."""
    obj = preview_object()
    n = len(arrays["verts"])
    if obj is not None and obj.type == "MESH" and len(obj.data.vertices) == n and obj.data.shape_keys is None:
        mesh_build.write_positions(obj.data, arrays["verts"])
        return obj
    if obj is not None:
        remove_object(obj)
    mesh = mesh_build.new_mesh(PREVIEW_NAME, arrays["verts"], arrays["poly_verts"], arrays["poly_start"],
                               arrays.get("uvs"))
    return mesh_build.link_object(PREVIEW_NAME, mesh, live_collection())


def place_preview(meta: dict | None) -> None:
    """Put the preview where the artist's head is (an imported head's template lives in the
    default head's frame; its vertices stay in it, the object's matrix moves them)."""
    from mathutils import Matrix

    obj = preview_object()
    if obj is not None:
        obj.matrix_world = Matrix(mesh_build.placement_matrix(meta).tolist())


def remove_object(obj: bpy.types.Object) -> None:
    data = obj.data
    bpy.data.objects.remove(obj)
    if data is not None and data.users == 0:
        if isinstance(data, bpy.types.Mesh):
            bpy.data.meshes.remove(data)
        elif isinstance(data, bpy.types.Armature):
            bpy.data.armatures.remove(data)
        elif isinstance(data, bpy.types.Camera):
            bpy.data.cameras.remove(data)


def ensure_photo_camera(K, R, t, width: int, height: int, photo_path: str = "") -> bpy.types.Object:
    """A camera object matching an OpenCV camera, showing the photo as its background.

    K, R: (3, 3) float; t: (3,) float (world-to-camera). Sets the scene's render
    size to the photo's, which the camera's framing depends on.
    """
    from ..bridge.conventions import opencv_to_blender_camera
    from mathutils import Matrix

    R, t = mesh_build.camera_in_artist_frame(R, t, LIVE.template[1] if LIVE.template is not None else None)
    bc = opencv_to_blender_camera(np.asarray(K), np.asarray(R), np.asarray(t), int(width), int(height))
    obj = bpy.data.objects.get(CAMERA_NAME)
    if obj is None or obj.type != "CAMERA":
        obj = mesh_build.link_object(CAMERA_NAME, bpy.data.cameras.new(CAMERA_NAME), live_collection())
    cam = obj.data
    cam.sensor_fit, cam.sensor_width, cam.lens = bc.sensor_fit, bc.sensor_width, bc.lens
    cam.shift_x, cam.shift_y = bc.shift_x, bc.shift_y
    cam.clip_start = 0.01
    obj.matrix_world = Matrix(bc.matrix_world.tolist())
    render = bpy.context.scene.render
    render.resolution_x, render.resolution_y = bc.resolution_x, bc.resolution_y
    render.resolution_percentage = 100
    render.pixel_aspect_x, render.pixel_aspect_y = bc.pixel_aspect_x, bc.pixel_aspect_y
    if photo_path:
        image = bpy.data.images.load(photo_path, check_existing=True)
        bg = cam.background_images[0] if len(cam.background_images) else cam.background_images.new()
        bg.image = image
        cam.show_background_images = True
    return obj


# -- frames and pins ------------------------------------------------------------------
def _in_edit_mode(obj: bpy.types.Object) -> bool:
    return obj.mode == "EDIT" or (obj.data is not None and getattr(obj.data, "is_editmode", False))


def apply_newest_frame(deadline: float) -> bool:
    """Write the newest frame of the job into the preview. Returns True when a frame was written."""
    client, obj = LIVE.client, preview_object()
    if client is None or LIVE.job is None or obj is None or time.perf_counter() > deadline:
        return False
    if _in_edit_mode(obj):
        LIVE.held = True  # the frame stays conflated in the client until Edit Mode ends
        return False
    if LIVE.held:
        LIVE.held = False
        pins_from_edit(obj)
    msg = client.latest_frame(LIVE.job)
    if msg is None:
        return False
    verts = msg.buffers["verts"]
    if len(verts) != len(obj.data.vertices):
        report_problem(f"frame has {len(verts)} vertices but the preview has {len(obj.data.vertices)}")
        return False
    mesh_build.write_positions(obj.data, verts)
    LIVE.last_verts = np.array(verts, np.float32)
    f = msg.fields
    LIVE.stage, LIVE.iteration, LIVE.step, LIVE.total = f["stage"], f["iteration"], f["step"], f["total"]
    LIVE.losses = dict(f.get("losses", {}))
    LIVE.frames += 1
    LIVE.frame_times.append(time.perf_counter())
    LIVE.frame_emitted = float(f.get("t_emit", 0.0))
    if "K" in msg.buffers:
        _frame_camera(msg)
    return True


def _frame_camera(msg) -> None:
    """Follow the fit's current camera with the photo camera, a few times a second
    (moving an object is cheap, but the photo only needs to line up as it converges)."""
    now = time.perf_counter()
    if now - LIVE.camera_updated < CAMERA_UPDATE_S:
        return
    LIVE.camera_updated = now
    f = msg.fields
    try:
        ensure_photo_camera(msg.buffers["K"], msg.buffers["R"], msg.buffers["t"], f["width"], f["height"],
                            _first_photo_path())
    except (KeyError, ValueError, RuntimeError) as exc:
        report_problem(f"could not follow the fit's camera: {exc}")


def pins_from_edit(obj: bpy.types.Object) -> int:
    """Vertices the artist moved in Edit Mode become pins (world positions). Returns how many moved."""
    if LIVE.last_verts is None:
        return 0
    current = mesh_build.read_positions(obj.data)
    moved = np.flatnonzero(np.linalg.norm(current - LIVE.last_verts, axis=1) > PIN_EPSILON)
    if moved.size == 0:
        return 0
    m = np.array(obj.matrix_world, dtype=np.float64)
    world = current[moved] @ m[:3, :3].T + m[:3, 3]
    for i, target in zip(moved.tolist(), world.astype(np.float32)):
        LIVE.pins[i] = target
    send_pins()
    return int(moved.size)


def send_pins() -> None:
    client = LIVE.client
    if client is None or LIVE.job is None:
        return
    ids = np.array(sorted(LIVE.pins), np.int64)
    targets = np.array([LIVE.pins[i] for i in ids.tolist()], np.float32).reshape(-1, 3)
    try:
        client.set_pins(LIVE.job, ids, targets)
    except ConnectionLost as exc:
        report_problem(f"pins not sent: {exc}")


# -- events ---------------------------------------------------------------------------
def _on_event(msg) -> None:
    if msg.job != LIVE.job or LIVE.job is None:
        return
    if msg.kind == schema.RESULT:
        LIVE.result = msg
        LIVE.state = DONE
        LIVE.message = "Fit finished: create the result in the Result panel."
        clear_report()
        _set_photo_status("fitted")
        _result_camera()
    elif msg.kind == schema.CANCELLED:
        LIVE.state = CANCELLED
        LIVE.message = "Fit cancelled. The preview shows the last frame; your objects are unchanged."
        _set_photo_status("cancelled")
    elif msg.kind == schema.ERROR:
        text = msg.fields.get("message", "")
        if schema.ends_job(msg):
            LIVE.state = FAILED
            _set_photo_status("failed")
            report_problem(f"The fit failed: {text}", msg.fields.get("traceback", ""))
        else:
            report_problem(f"The core refused {msg.fields.get('about', 'a request')}: {text}")


def _photos():
    """The scene's photo list (empty when the add-on's properties are not registered, as in benchmarks)."""
    settings = getattr(bpy.context.scene, "likeness", None)
    return settings.photos if settings is not None else ()


def _first_photo_path() -> str:
    for photo in _photos():
        if photo.use:
            return bpy.path.abspath(photo.filepath)
    return ""


def _set_photo_status(status: str) -> None:
    for photo in _photos():
        if photo.use:
            photo.status = status


def _result_camera() -> None:
    """Show the first view's fitted camera with its photo behind the result."""
    res = LIVE.result
    views = res.fields.get("meta", {}).get("views", [])
    if not views or "K" not in res.buffers:
        return
    K, R, t = (np.asarray(res.buffers[k], np.float64) for k in ("K", "R", "t"))
    if K.ndim == 3:
        K, R, t = K[0], R[0], t[0]
    path = ""
    for photo in _photos():
        if photo.name == views[0].get("name"):
            path = bpy.path.abspath(photo.filepath)
    try:
        ensure_photo_camera(K, R, t.reshape(3), views[0]["width"], views[0]["height"], path)
    except (ValueError, RuntimeError) as exc:
        report_problem(f"could not set up the photo camera: {exc}")
    LIVE.result_photo = path


def _check_link() -> None:
    link = LIVE.link
    if link is None or link.state != core_process.FAILED:
        LIVE.lost_reported, LIVE.lost_since = False, 0.0
        return
    if LIVE.lost_reported:
        return
    now = time.monotonic()
    LIVE.lost_since = LIVE.lost_since or now
    # the socket closes a moment before a dying core is reaped: wait briefly for its exit code
    if link.local and link.core is not None and link.core.alive() and now - LIVE.lost_since < LOST_GRACE_S:
        return
    LIVE.lost_reported = True
    died = link.core_died()
    what = f"The core stopped ({link.error})" if link.error else "The core stopped"
    if died and link.core.proc is not None:
        what = f"The core exited with code {link.core.proc.returncode}"
    if LIVE.state in ACTIVE_STATES:
        LIVE.state = LOST
        _set_photo_status("failed")
        what += ". The fit was lost; the preview shows its last frame and your objects are unchanged"
    if died and link.try_restart():
        what += f". Restarting the core (attempt {link.restarts} of {link.max_restarts})"
    if link.core is not None:
        write_text(LOG_TEXT, link.log_text())
    report_problem(what + ".", link.error)


def _redraw_sidebar() -> None:
    """Panels do not redraw on their own when state outside bpy data changes."""
    for window in bpy.context.window_manager.windows:
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                area.tag_redraw()


def tick() -> float | None:
    """Timer callback: finish tasks, read events, write the newest frame. Returns the next interval."""
    deadline = time.perf_counter() + BUDGET_S
    before = (LIVE.state, LIVE.frames, LIVE.step, LIVE.message, LIVE.link.state if LIVE.link else None)
    LIVE._finish_tasks()
    client = LIVE.client
    if client is not None:
        # frames first: a job's last frame is received before its result
        if LIVE.state in ACTIVE_STATES:
            apply_newest_frame(deadline)
            progress = client.latest_progress(LIVE.job) if LIVE.job else None
            if progress is not None and progress.fields["step"] > LIVE.step:
                LIVE.stage, LIVE.step, LIVE.total = (progress.fields[k] for k in ("stage", "step", "total"))
        while time.perf_counter() < deadline:
            try:
                msg = client.events.get_nowait()
            except queue.Empty:
                break
            _on_event(msg)
    _check_link()
    if before != (LIVE.state, LIVE.frames, LIVE.step, LIVE.message, LIVE.link.state if LIVE.link else None):
        _redraw_sidebar()
    busy = LIVE.tasks or LIVE.state in ACTIVE_STATES or (LIVE.link and LIVE.link.state == core_process.STARTING)
    return TICK_S if busy else IDLE_TICK_S


def ensure_timer() -> None:
    if not bpy.app.timers.is_registered(tick):
        bpy.app.timers.register(tick, first_interval=TICK_S, persistent=True)


def stop_timer() -> None:
    if bpy.app.timers.is_registered(tick):
        bpy.app.timers.unregister(tick)


def stop_core() -> None:
    """Close the connection and stop a local core (no bpy calls: safe at interpreter exit)."""
    if LIVE.link is not None:
        LIVE.link.stop()


def shutdown() -> None:
    """Add-on unregister: stop the timer and the core."""
    stop_timer()
    stop_core()
    LIVE.__init__()
