"""Add-on preferences: how Blender reaches the Likeness core."""

import bpy

from ..bridge import __version__

# The add-on's package name as Blender knows it (``bl_ext.<repo>.likeness``).
ADDON_ID = __package__.rpartition(".")[0]


class LikenessPreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_ID

    core_mode: bpy.props.EnumProperty(
        name="Core",
        description="Where the fitting engine runs",
        items=(
            ("LOCAL", "Start a local core", "Start the core with the Python interpreter below"),
            ("REMOTE", "Connect to a running core", "Connect to a core at an address (e.g. a GPU box through an SSH tunnel)"),
        ),
        default="LOCAL",
    )
    python_path: bpy.props.StringProperty(
        name="Core Python",
        description="Python interpreter of the Likeness venv (the repository's .venv/bin/python). "
                    "Empty: $LIKENESS_CORE_PYTHON, else the .venv of the checkout this extension is linked from",
        subtype="FILE_PATH",
        default="",
    )
    host: bpy.props.StringProperty(name="Host", default="127.0.0.1")
    port: bpy.props.IntProperty(name="Port", default=0, min=0, max=65535)
    token: bpy.props.StringProperty(name="Token", subtype="PASSWORD", default="")
    max_restarts: bpy.props.IntProperty(
        name="Automatic Restarts",
        description="How often a crashed local core is restarted before giving up",
        default=2, min=0, max=10,
    )

    def draw(self, context):
        layout = self.layout
        layout.label(text=f"Likeness {__version__}")
        layout.prop(self, "core_mode", expand=True)
        if self.core_mode == "LOCAL":
            layout.prop(self, "python_path")
            if not self.python_path:
                from .core_process import CoreError, find_core_python

                try:
                    layout.label(text=f"Found: {find_core_python()}", icon="CHECKMARK")
                except CoreError:
                    layout.label(text="No core Python found: set it above (or $LIKENESS_CORE_PYTHON)", icon="ERROR")
            layout.prop(self, "max_restarts")
            layout.label(text="A fresh token and a free loopback port are chosen at each start.", icon="INFO")
        else:
            col = layout.column(align=True)
            col.prop(self, "host")
            col.prop(self, "port")
            col.prop(self, "token")
            layout.label(text="Photos travel inline to a remote core.", icon="INFO")


def get_preferences(context=None):
    context = context or bpy.context
    return context.preferences.addons[ADDON_ID].preferences


classes = (LikenessPreferences,)
