"""The "Likeness" tab in the 3D View sidebar: Photos, Template, Fit, Live, Result."""

import bpy

from ..bridge import __version__
from . import core_process, live, result
from .live import IMPORT, LIVE


class _LikenessPanel:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Likeness"


class VIEW3D_PT_likeness_main(_LikenessPanel, bpy.types.Panel):
    bl_label = "Likeness"

    def draw(self, context):
        layout = self.layout
        link = LIVE.link
        row = layout.row()
        row.label(text=f"Likeness {__version__}", icon="USER")
        state = link.state if link is not None else core_process.IDLE
        labels = {core_process.IDLE: "Core: not connected", core_process.STARTING: "Core: starting...",
                  core_process.CONNECTED: "Core: connected", core_process.FAILED: "Core: failed",
                  core_process.STOPPED: "Core: disconnected"}
        layout.label(text=labels[state], icon="CHECKMARK" if state == core_process.CONNECTED else "INFO")
        if state == core_process.FAILED and link.error:
            layout.label(text=link.error.splitlines()[0][:120], icon="ERROR")
        row = layout.row(align=True)
        if state in (core_process.STARTING, core_process.CONNECTED):
            row.operator("likeness.stop_core", icon="CANCEL")
        else:
            row.operator("likeness.start_core", icon="PLAY")
        row.operator("likeness.show_core_log", text="", icon="TEXT")


class LIKENESS_UL_photos(bpy.types.UIList):
    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index):
        row = layout.row(align=True)
        row.prop(item, "use", text="")
        row.label(text=item.name, icon="IMAGE_DATA")
        row.label(text=item.status)


class VIEW3D_PT_likeness_photos(_LikenessPanel, bpy.types.Panel):
    bl_label = "Photos"
    bl_parent_id = "VIEW3D_PT_likeness_main"

    def draw(self, context):
        layout = self.layout
        settings = context.scene.likeness
        row = layout.row()
        row.template_list("LIKENESS_UL_photos", "", settings, "photos", settings, "photo_index", rows=3)
        col = row.column(align=True)
        col.operator("likeness.add_photos", text="", icon="ADD")
        col.operator("likeness.remove_photo", text="", icon="REMOVE")
        if settings.photos and 0 <= settings.photo_index < len(settings.photos):
            layout.prop(settings.photos[settings.photo_index], "filepath", text="")


def _import_status(layout) -> None:
    if IMPORT.process is not None:
        row = layout.row(align=True)
        row.label(text=IMPORT.message, icon="TIME")
        row.operator("likeness.cancel_import", text="", icon="CANCEL")
    elif IMPORT.message:
        layout.label(text=IMPORT.message)


class VIEW3D_PT_likeness_template(_LikenessPanel, bpy.types.Panel):
    bl_label = "Template"
    bl_parent_id = "VIEW3D_PT_likeness_main"

    def draw(self, context):
        layout = self.layout
        settings = context.scene.likeness
        layout.prop(settings, "template_source", expand=True)
        if settings.template_source == "SELECTED":
            col = layout.column(align=True)
            col.prop(settings, "template_mesh")
            col.prop(settings, "template_armature")
            col.label(text="Empty fields: the active mesh and its armature", icon="INFO")
            row = layout.row(align=True)
            row.operator("likeness.check_template", icon="VIEWZOOM")
            row.operator("likeness.import_head", icon="IMPORT")
            _import_status(layout)
        elif settings.template_source == "FILE":
            layout.prop(settings, "template_file")
            layout.label(text="Any head: Selected Rig > Import Head, or likeness template import", icon="INFO")
            _import_status(layout)


class VIEW3D_PT_likeness_fit(_LikenessPanel, bpy.types.Panel):
    bl_label = "Fit"
    bl_parent_id = "VIEW3D_PT_likeness_main"

    def draw(self, context):
        layout = self.layout
        settings = context.scene.likeness
        layout.prop(settings, "preset")
        layout.prop(settings, "device")
        layout.prop(settings, "focal_mode")
        if settings.focal_mode == "GIVEN":
            layout.prop(settings, "focal_35mm")
        layout.prop(settings, "iris_from_photo")
        if not settings.iris_from_photo:
            layout.prop(settings, "iris_color")
        col = layout.column(align=True)
        col.label(text="Stage iterations (override the preset):")
        for stage in ("rig", "joint", "vertex"):
            row = col.row(align=True)
            row.prop(settings, f"override_{stage}")
            sub = row.row(align=True)
            sub.enabled = getattr(settings, f"override_{stage}")
            sub.prop(settings, f"{stage}_iterations")


class VIEW3D_PT_likeness_live(_LikenessPanel, bpy.types.Panel):
    bl_label = "Live"
    bl_parent_id = "VIEW3D_PT_likeness_main"

    def draw(self, context):
        layout = self.layout
        row = layout.row(align=True)
        row.operator("likeness.start_fit", icon="PLAY")
        if LIVE.state == live.PAUSED:
            row.operator("likeness.resume_fit", text="", icon="PLAY")
        else:
            row.operator("likeness.pause_fit", text="", icon="PAUSE")
        row.operator("likeness.cancel_fit", text="", icon="CANCEL")
        if LIVE.state != live.NONE:
            text = f"{LIVE.stage or 'starting'} {LIVE.step}/{LIVE.total}" if LIVE.total else LIVE.state.lower()
            layout.progress(factor=LIVE.progress, type="BAR", text=text)
            col = layout.column(align=True)
            col.label(text=f"State: {LIVE.state.lower()}   Frames: {LIVE.frames}   {LIVE.fps:.1f} fps")
            if LIVE.losses:
                total = sum(LIVE.losses.values())
                col.label(text=f"Loss {total:.5g} (iteration {LIVE.iteration})")
                for name, value in sorted(LIVE.losses.items(), key=lambda kv: -abs(kv[1]))[:4]:
                    col.label(text=f"  {name}: {value:.4g}")
            if LIVE.held:
                col.label(text="Edit Mode: frames held, moved vertices become pins", icon="PINNED")
        if LIVE.message:
            layout.label(text=LIVE.message[:120], icon="INFO")
        box = layout.box()
        row = box.row()
        row.label(text=f"Pins: {len(LIVE.pins)}", icon="PINNED")
        row.operator("likeness.clear_pins", text="", icon="X")
        if LIVE.pins:
            ids = sorted(LIVE.pins)
            box.label(text="Vertices " + ", ".join(str(i) for i in ids[:8]) + (" ..." if len(ids) > 8 else ""))


class VIEW3D_PT_likeness_result(_LikenessPanel, bpy.types.Panel):
    bl_label = "Result"
    bl_parent_id = "VIEW3D_PT_likeness_main"

    def draw(self, context):
        layout = self.layout
        settings = context.scene.likeness
        layout.prop(settings, "result_mode", expand=True)
        col = layout.column(align=True)
        col.prop(settings, "with_armature")
        col.prop(settings, "with_expressions")
        layout.operator("likeness.create_result", icon="CHECKMARK")
        row = layout.row(align=True)
        row.operator("likeness.view_photo", icon="CAMERA_DATA")
        row.operator("likeness.remove_result", icon="TRASH")
        made = result.result_collections()
        if made:
            layout.label(text=f"Newest: {made[-1].name}", icon="OUTLINER_COLLECTION")
        row = layout.row(align=True)
        row.prop(settings, "export_format", text="")
        row.operator("likeness.export_result", text="Export", icon="EXPORT")


classes = (
    LIKENESS_UL_photos,
    VIEW3D_PT_likeness_main,
    VIEW3D_PT_likeness_photos,
    VIEW3D_PT_likeness_template,
    VIEW3D_PT_likeness_fit,
    VIEW3D_PT_likeness_live,
    VIEW3D_PT_likeness_result,
)
