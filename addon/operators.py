"""Operators: photos, core, fit control, pins, results. Thin: the work is in live/result/mesh_build."""

from __future__ import annotations

import atexit
import os
import time

import bpy

from ..bridge.client import BridgeError, ConnectionLost, new_job_id
from ..bridge.protocol import ProtocolError
from ..bridge.template import TemplateMessage
from . import core_process, live, mesh_build, result
from .live import IMPORT, LIVE
from .preferences import get_preferences

PHOTO_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")


def _settings(context):
    return context.scene.likeness


class LIKENESS_OT_add_photos(bpy.types.Operator):
    """Add photos of the person (several views help)"""

    bl_idname = "likeness.add_photos"
    bl_label = "Add Photos"
    bl_options = {"REGISTER", "UNDO"}

    directory: bpy.props.StringProperty(subtype="DIR_PATH")
    files: bpy.props.CollectionProperty(type=bpy.types.OperatorFileListElement)
    filter_image: bpy.props.BoolProperty(default=True, options={"HIDDEN"})

    def invoke(self, context, event):
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        settings = _settings(context)
        known = {bpy.path.abspath(p.filepath) for p in settings.photos}
        added, skipped = 0, []
        for f in self.files:
            path = os.path.join(self.directory, f.name)
            if not f.name.lower().endswith(PHOTO_EXTENSIONS):
                skipped.append(f.name)
                continue
            if path in known:
                continue
            photo = settings.photos.add()
            photo.name, photo.filepath = f.name, path
            photo.status = "ready" if os.path.isfile(path) else "missing"
            added += 1
        settings.photo_index = max(len(settings.photos) - 1, 0)
        if skipped:
            self.report({"WARNING"}, f"not a photo format: {', '.join(skipped[:5])}")
        if not added and not skipped:
            self.report({"INFO"}, "no new photos")
        return {"FINISHED"}


class LIKENESS_OT_remove_photo(bpy.types.Operator):
    """Remove the highlighted photo from the list (the file is not touched)"""

    bl_idname = "likeness.remove_photo"
    bl_label = "Remove Photo"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return len(_settings(context).photos) > 0

    def execute(self, context):
        settings = _settings(context)
        settings.photos.remove(settings.photo_index)
        settings.photo_index = min(settings.photo_index, max(len(settings.photos) - 1, 0))
        return {"FINISHED"}


def make_link(context) -> core_process.CoreLink:
    prefs = get_preferences(context)
    if prefs.core_mode == "LOCAL":
        python = bpy.path.abspath(prefs.python_path) if prefs.python_path else ""
        return core_process.CoreLink(python=python, local=True, max_restarts=prefs.max_restarts)
    return core_process.CoreLink(host=prefs.host, port=prefs.port, token=prefs.token)


class LIKENESS_OT_start_core(bpy.types.Operator):
    """Start the local core or connect to the remote one (see the add-on preferences)"""

    bl_idname = "likeness.start_core"
    bl_label = "Connect to Core"

    def execute(self, context):
        if LIVE.link is not None and LIVE.link.state in (core_process.STARTING, core_process.CONNECTED):
            self.report({"INFO"}, f"core already {LIVE.link.state.lower()}")
            return {"CANCELLED"}
        if LIVE.link is not None:
            LIVE.link.stop()
        LIVE.link = make_link(context)
        LIVE.link.start()
        live.ensure_timer()
        return {"FINISHED"}


class LIKENESS_OT_stop_core(bpy.types.Operator):
    """Disconnect; a local core is stopped (a running fit is cancelled by the core)"""

    bl_idname = "likeness.stop_core"
    bl_label = "Disconnect"

    @classmethod
    def poll(cls, context):
        return LIVE.link is not None

    def execute(self, context):
        if LIVE.link.core is not None:
            live.write_text(live.LOG_TEXT, LIVE.link.log_text())
        LIVE.link.stop()
        if LIVE.state in live.ACTIVE_STATES:
            LIVE.state = live.CANCELLED
            LIVE.message = "Disconnected: the fit was cancelled."
        return {"FINISHED"}


class LIKENESS_OT_show_core_log(bpy.types.Operator):
    """Copy the core's log into the text datablock 'Likeness Core Log' and show it in a Text Editor"""

    bl_idname = "likeness.show_core_log"
    bl_label = "Show Core Log"

    def execute(self, context):
        content = LIVE.link.log_text() if LIVE.link is not None else "(no core started yet)\n"
        text = live.write_text(live.LOG_TEXT, content)
        screen = context.screen
        for area in screen.areas if screen else ():
            if area.type == "TEXT_EDITOR":
                area.spaces.active.text = text
                break
        else:
            self.report({"INFO"}, f"log is in the text '{live.LOG_TEXT}' (open a Text Editor)")
        return {"FINISHED"}


def selected_rig(context):
    """(mesh, armature or None) for a custom template, from the settings or the selection."""
    settings = _settings(context)
    mesh = settings.template_mesh
    if mesh is None and context.active_object is not None and context.active_object.type == "MESH":
        mesh = context.active_object
    arm = settings.template_armature
    if arm is None and mesh is not None:
        arm = mesh.find_armature()  # the Armature modifier's object
        if arm is None and mesh.parent is not None and mesh.parent.type == "ARMATURE":
            arm = mesh.parent
    return mesh, arm


class LIKENESS_OT_check_template(bpy.types.Operator):
    """Check the selected rig: what the fit can use, and what it is missing"""

    bl_idname = "likeness.check_template"
    bl_label = "Check Rig"

    def execute(self, context):
        mesh, arm = selected_rig(context)
        if mesh is None:
            self.report({"ERROR"}, "select the head mesh (or set it in the Template panel)")
            return {"CANCELLED"}
        _, _, report = mesh_build.read_rig(mesh, arm, LIVE.default_template)
        live.write_text(live.REPORT_TEXT, f"Rig check: {mesh.name}\n" + "\n".join(report.lines()) + "\n")
        level = {"ERROR"} if not report.ok else ({"WARNING"} if report.missing else {"INFO"})
        self.report(level, "; ".join(report.lines())[:500])
        return {"FINISHED"} if report.ok else {"CANCELLED"}


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name) or "head"


class LIKENESS_OT_import_head(bpy.types.Operator):
    """Make a template of the selected head mesh, whatever its topology: the core finds its face, lays the default
    head onto it and carries the rig over (about half a minute); then Template is set to that file"""

    bl_idname = "likeness.import_head"
    bl_label = "Import Head"

    @classmethod
    def poll(cls, context):
        return IMPORT.process is None

    def execute(self, context):
        import subprocess
        import tempfile

        settings = _settings(context)
        mesh, arm = selected_rig(context)
        if mesh is None:
            self.report({"ERROR"}, "select the head mesh to import")
            return {"CANCELLED"}
        prefs = get_preferences(context)
        try:
            python = core_process.find_core_python(bpy.path.abspath(prefs.python_path) if prefs.python_path else "")
        except core_process.CoreError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        folder = bpy.path.abspath("//") if bpy.data.filepath else tempfile.mkdtemp(prefix="likeness-heads-")
        out = os.path.join(folder, f"{_safe_name(mesh.name)}_template.npz")
        work_dir = tempfile.mkdtemp(prefix="likeness-import-")
        # The mesh object (its data and shape keys, vertex order kept) and its armature go to a .blend the core reads.
        source = os.path.join(work_dir, "head.blend")
        bpy.data.libraries.write(source, {mesh, arm} if arm is not None else {mesh}, fake_user=True)
        cmd = [os.path.join(os.path.dirname(python), "likeness"), "template", "import", source, "--object", mesh.name,
               "--out", out]
        IMPORT.cancelled, IMPORT.message, IMPORT.out = False, f"Importing {mesh.name}...", out
        started = time.time()
        IMPORT.process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                          cwd=work_dir)
        process, name = IMPORT.process, mesh.name

        def work():
            stdout, stderr = process.communicate()
            return process.returncode, stdout, stderr

        def done(value, error, tb):
            import shutil

            IMPORT.process = None
            shutil.rmtree(work_dir, ignore_errors=True)
            if IMPORT.cancelled:
                # An interrupt that came too late (or was swallowed while the command started up)
                # may have let it finish: a cancelled import leaves nothing, so its file goes.
                if os.path.exists(out) and os.path.getmtime(out) >= started - 1.0:
                    os.remove(out)
                IMPORT.message = f"Import of {name} cancelled"
                return
            code, stdout, stderr = value if value is not None else (None, "", str(error))
            if code != 0:
                lines = [ln for ln in (stderr or "").splitlines() if ln.strip()]
                IMPORT.message = f"Import of {name} failed"
                live.report_problem(f"The head could not be imported: {lines[-1] if lines else 'no output'}", tb)
                return
            settings.template_source, settings.template_file = "FILE", out
            IMPORT.message = f"Imported {name}: Template is now {os.path.basename(out)}"
            live.write_text(live.REPORT_TEXT, f"Head import: {name}\n{stdout}")

        LIVE.run_async(work, done)
        return {"FINISHED"}


class LIKENESS_OT_cancel_import(bpy.types.Operator):
    """Stop the running head import; nothing is written"""

    bl_idname = "likeness.cancel_import"
    bl_label = "Cancel Import"

    @classmethod
    def poll(cls, context):
        return IMPORT.process is not None

    def execute(self, context):
        import signal

        IMPORT.cancelled = True
        if IMPORT.process is not None:
            # an interrupt lets the command remove its half-written file; terminate where there is none
            if hasattr(signal, "SIGINT") and os.name == "posix":
                IMPORT.process.send_signal(signal.SIGINT)
            else:
                IMPORT.process.terminate()
        return {"FINISHED"}


class LIKENESS_OT_start_fit(bpy.types.Operator):
    """Fit the template to the photos; the preview follows live"""

    bl_idname = "likeness.start_fit"
    bl_label = "Start Fit"

    @classmethod
    def poll(cls, context):
        return LIVE.state not in live.ACTIVE_STATES

    def execute(self, context):
        settings = _settings(context)
        photos = [p for p in settings.photos if p.use]
        if not photos:
            self.report({"ERROR"}, "add at least one photo in the Photos panel")
            return {"CANCELLED"}
        missing = []
        for p in photos:
            if not os.path.isfile(bpy.path.abspath(p.filepath)):
                p.status = "missing"
                missing.append(p.name)
        if missing:
            self.report({"ERROR"}, f"photo files not found: {', '.join(missing[:5])}")
            return {"CANCELLED"}
        if LIVE.link is None or LIVE.link.state in (core_process.FAILED, core_process.STOPPED):
            LIVE.link = make_link(context)
            LIVE.link.start()
        link = LIVE.link
        if link.remote:  # a remote core cannot read the artist's files: send the bytes
            entries = []
            for p in photos:
                with open(bpy.path.abspath(p.filepath), "rb") as fh:
                    entries.append((p.name, fh.read()))
        else:
            entries = [bpy.path.abspath(p.filepath) for p in photos]

        custom, template_file = None, None
        if settings.template_source == "SELECTED":
            mesh, arm = selected_rig(context)
            if mesh is None:
                self.report({"ERROR"}, "Template is 'Selected Rig': select the head mesh first")
                return {"CANCELLED"}
            arrays, meta, report = mesh_build.read_rig(mesh, arm, LIVE.default_template)
            if not report.ok:
                self.report({"ERROR"}, "; ".join(report.errors))
                return {"CANCELLED"}
            try:
                custom = TemplateMessage(arrays, meta).validate()
            except ProtocolError as exc:
                self.report({"ERROR"}, f"the rig cannot be sent: {exc}")
                return {"CANCELLED"}
            LIVE.template_source = {"mesh": mesh.name, "armature": arm.name if arm else ""}
        elif settings.template_source == "FILE":
            template_file = bpy.path.abspath(settings.template_file)
            if not template_file.lower().endswith(".npz") or not os.path.isfile(template_file):
                self.report({"ERROR"}, "Template is 'File': choose a .npz template (likeness template import)")
                return {"CANCELLED"}
            if link.remote:
                self.report({"ERROR"}, "a remote core cannot open your template file; use a local core")
                return {"CANCELLED"}
            LIVE.template_source = {"file": template_file}
        else:
            LIVE.template_source = {}

        options, device = settings.job_options(), settings.device
        LIVE.reset_job()
        job = LIVE.job = new_job_id()
        LIVE.state = live.PREPARING
        LIVE.message = "Preparing the fit..."
        for p in photos:
            p.status = "sent"

        def work():
            if link.state == core_process.STARTING:
                link.wait(core_process.READY_TIMEOUT_S + core_process.CHECK_TIMEOUT_S)
            if link.state != core_process.CONNECTED:
                raise core_process.CoreError(link.error or "the core is not connected")
            client = link.client
            if custom is not None:
                template_id = client.send_template(custom)
                template = (custom.arrays, custom.meta)
            elif template_file is not None:
                # the core reads and checks the file; the preview needs its arrays back
                template_id = client.send_template(template_file)
                wire = client.get_template(template_id)
                template = (wire.arrays, wire.meta)
            else:
                template_id = None
                if LIVE.default_template is None:
                    wire = client.get_template("default")
                    LIVE.default_template = (wire.arrays, wire.meta)
                template = LIVE.default_template
            client.start_fit(entries, template=template_id, options=options, device=device, job=job)
            return template

        def done(template, error, tb):
            if LIVE.job != job:
                return  # superseded by a newer fit
            if error is not None:
                LIVE.state = live.FAILED
                for p in photos_by_name(settings, [p.name for p in photos]):
                    p.status = "failed"
                text = str(error) if isinstance(error, (core_process.CoreError, BridgeError, ConnectionLost)) \
                    else f"{type(error).__name__}: {error}"
                live.report_problem(f"The fit could not start: {text}", tb)
                return
            LIVE.template = template
            if LIVE.cancel_requested:
                try:
                    LIVE.client.cancel(job)
                except (AttributeError, ConnectionLost):
                    pass  # the link is gone: the tick reports it
            live.ensure_preview(template[0])
            live.place_preview(template[1])
            LIVE.last_verts = template[0]["verts"].astype("float32")
            if LIVE.state == live.PREPARING:
                LIVE.state = live.RUNNING
                LIVE.message = "Fitting..."

        LIVE.run_async(work, done)
        return {"FINISHED"}


def photos_by_name(settings, names):
    return [p for p in settings.photos if p.name in names]


class _JobOperator(bpy.types.Operator):
    states = live.ACTIVE_STATES

    @classmethod
    def poll(cls, context):
        return LIVE.job is not None and LIVE.state in cls.states and LIVE.client is not None

    def send(self, action) -> bool:
        try:
            action(LIVE.job)
        except ConnectionLost as exc:
            self.report({"ERROR"}, f"the core is gone: {exc}")
            return False
        return True


class LIKENESS_OT_pause_fit(_JobOperator):
    """Pause the fit (the core holds its state)"""

    bl_idname = "likeness.pause_fit"
    bl_label = "Pause"
    states = (live.RUNNING,)

    def execute(self, context):
        if not self.send(LIVE.client.pause):
            return {"CANCELLED"}
        LIVE.state, LIVE.message = live.PAUSED, "Paused."
        return {"FINISHED"}


class LIKENESS_OT_resume_fit(_JobOperator):
    """Resume a paused fit"""

    bl_idname = "likeness.resume_fit"
    bl_label = "Resume"
    states = (live.PAUSED,)

    def execute(self, context):
        if not self.send(LIVE.client.resume):
            return {"CANCELLED"}
        LIVE.state, LIVE.message = live.RUNNING, "Fitting..."
        return {"FINISHED"}


class LIKENESS_OT_cancel_fit(_JobOperator):
    """Cancel the fit; your objects stay as they are"""

    bl_idname = "likeness.cancel_fit"
    bl_label = "Cancel"
    states = (live.PREPARING, live.RUNNING, live.PAUSED)

    @classmethod
    def poll(cls, context):
        return LIVE.job is not None and LIVE.state in cls.states

    def execute(self, context):
        if LIVE.state == live.PREPARING and LIVE.tasks:
            # the core does not know the job yet: cancel it as soon as it is sent
            LIVE.cancel_requested = True
            LIVE.message = "Cancelling as soon as the fit has started..."
            return {"FINISHED"}
        if LIVE.client is None or not self.send(LIVE.client.cancel):
            return {"CANCELLED"}
        LIVE.message = "Cancelling..."
        return {"FINISHED"}


class LIKENESS_OT_clear_pins(bpy.types.Operator):
    """Remove all pins; the fit no longer follows your edits"""

    bl_idname = "likeness.clear_pins"
    bl_label = "Clear Pins"

    @classmethod
    def poll(cls, context):
        return bool(LIVE.pins)

    def execute(self, context):
        LIVE.pins.clear()
        live.send_pins()
        return {"FINISHED"}


class LIKENESS_OT_create_result(bpy.types.Operator):
    """Create the fitted head (or a shape key on your rig), its armature and expression shape keys"""

    bl_idname = "likeness.create_result"
    bl_label = "Create Result"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return LIVE.result is not None and LIVE.template is not None

    def execute(self, context):
        settings = _settings(context)
        source = bpy.data.objects.get(LIVE.template_source.get("mesh", "")) if LIVE.template_source else None
        try:
            coll = result.create_result(LIVE.result, LIVE.template, mode=settings.result_mode,
                                        with_armature=settings.with_armature,
                                        with_expressions=settings.with_expressions, source_mesh=source,
                                        iris_color=None if settings.iris_from_photo else tuple(settings.iris_color))
        except result.ResultError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"created {coll.name}")
        return {"FINISHED"}


class LIKENESS_OT_remove_result(bpy.types.Operator):
    """Delete the newest created result (collection, objects, data, added shape key)"""

    bl_idname = "likeness.remove_result"
    bl_label = "Remove Result"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return bool(result.result_collections())

    def execute(self, context):
        result.remove_result(result.result_collections()[-1])
        return {"FINISHED"}


class LIKENESS_OT_export_result(bpy.types.Operator):
    """Export the newest created result as GLB, FBX or OBJ"""

    bl_idname = "likeness.export_result"
    bl_label = "Export Result"

    filepath: bpy.props.StringProperty(subtype="FILE_PATH")

    @classmethod
    def poll(cls, context):
        return bool(result.result_collections())

    def invoke(self, context, event):
        coll = result.result_collections()[-1]
        self.filepath = result.export_path(bpy.path.abspath(f"//{bpy.path.clean_name(coll.name)}"),
                                           _settings(context).export_format)
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        fmt = _settings(context).export_format
        try:
            path = result.export_path(bpy.path.abspath(self.filepath), fmt)
            path = result.export_result(result.result_collections()[-1], path, fmt)
        except (result.ResultError, RuntimeError) as exc:
            self.report({"ERROR"}, f"export failed: {exc}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"exported {path}")
        return {"FINISHED"}


class LIKENESS_OT_view_photo(bpy.types.Operator):
    """Look through the fitted camera, with the photo behind the head"""

    bl_idname = "likeness.view_photo"
    bl_label = "View from Photo"

    @classmethod
    def poll(cls, context):
        return bpy.data.objects.get(live.CAMERA_NAME) is not None

    def execute(self, context):
        context.scene.camera = bpy.data.objects[live.CAMERA_NAME]
        for area in context.screen.areas if context.screen else ():
            if area.type == "VIEW_3D":
                area.spaces.active.region_3d.view_perspective = "CAMERA"
        return {"FINISHED"}


classes = (
    LIKENESS_OT_add_photos,
    LIKENESS_OT_remove_photo,
    LIKENESS_OT_start_core,
    LIKENESS_OT_stop_core,
    LIKENESS_OT_show_core_log,
    LIKENESS_OT_check_template,
    LIKENESS_OT_import_head,
    LIKENESS_OT_cancel_import,
    LIKENESS_OT_start_fit,
    LIKENESS_OT_pause_fit,
    LIKENESS_OT_resume_fit,
    LIKENESS_OT_cancel_fit,
    LIKENESS_OT_clear_pins,
    LIKENESS_OT_create_result,
    LIKENESS_OT_remove_result,
    LIKENESS_OT_export_result,
    LIKENESS_OT_view_photo,
)


def register_extra():
    # Blender may quit without disabling add-ons: never leave a local core running behind it
    atexit.register(live.stop_core)


def unregister_extra():
    atexit.unregister(live.stop_core)
    live.shutdown()
