"""Any artist's head as the template: read it, lay the default head onto it, carry the rig over.

``import_head(path)`` reads a head mesh (``core.adopt.mesh``), registers the
default head onto it (``core.adopt.register``: landmarks found on renders, the
rig, then every vertex) and transfers the landmark embedding, regions, mirror
map, controllers, expressions, skin weights, joints and parts
(``core.adopt.transfer``). The result is an ordinary template file: the
artist's vertex order, polygons and UVs, in the default head's frame, with a
confidence per transferred item in ``info["confidence"]``.
"""

from __future__ import annotations

import pathlib

from .mesh import HeadImportError, HeadMesh, read_head
from .register import Registration, RegistrationError, register_head
from .transfer import transfer


def import_head(path: str | pathlib.Path | HeadMesh, object_name: str | None = None, scale: float = 1.0,
                default=None):
    """(template, confidence, registration) for the head mesh in ``path`` (or a ``HeadMesh``
    ``read_head`` already read; ``object_name`` and ``scale`` then went to it).

    Raises HeadImportError or RegistrationError with a one-line message."""
    from core.template import load_default

    head = path if isinstance(path, HeadMesh) else read_head(path, object_name, scale)
    default = load_default() if default is None else default
    reg = register_head(default, head.verts, head.tris, head.source)
    template, confidence = transfer(default, head, reg)
    return template, confidence, reg


__all__ = ["HeadImportError", "HeadMesh", "Registration", "RegistrationError", "import_head", "read_head",
           "register_head", "transfer"]
