"""Likeness Blender extension root.

Blender imports this package (as ``bl_ext.<repo>.likeness``); the add-on lives
in ``addon/`` and reaches the wire protocol through the sibling ``bridge/``.
The add-on is imported on ``register`` only, so importing this folder outside
Blender (test collection, tooling) never starts bpy.
"""


def register():
    from .addon import register as register_addon

    register_addon()


def unregister():
    from .addon import unregister as unregister_addon

    unregister_addon()
