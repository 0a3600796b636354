"""The "Likeness" tab in the 3D View sidebar."""

import bpy

from ..bridge import __version__


class VIEW3D_PT_likeness_main(bpy.types.Panel):
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Likeness"
    bl_label = "Likeness"

    def draw(self, context):
        layout = self.layout
        layout.label(text=f"Likeness {__version__}", icon="USER")


classes = (VIEW3D_PT_likeness_main,)
