"""Likeness Blender add-on: a thin bpy layer over ``bridge``.

Each submodule owns a ``classes`` tuple; ``register`` and ``unregister`` walk
them in order (and in reverse), so adding a module is one line in ``_MODULES``.
"""

import bpy

from . import operators, panels, preferences, properties

_MODULES = (preferences, properties, operators, panels)


def register():
    for module in _MODULES:
        for cls in module.classes:
            bpy.utils.register_class(cls)
        if hasattr(module, "register_extra"):
            module.register_extra()


def unregister():
    for module in reversed(_MODULES):
        if hasattr(module, "unregister_extra"):
            module.unregister_extra()
        for cls in reversed(module.classes):
            bpy.utils.unregister_class(cls)
