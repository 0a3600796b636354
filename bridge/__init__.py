"""Wire protocol between the Blender add-on and the Likeness core.

Standard library + numpy only, relative imports only: this package is imported
as the top-level ``bridge`` in the core's venv and as ``<extension>.bridge``
inside Blender.

- ``protocol``: framing (length prefix, JSON header, raw little-endian
  buffers), ``Message``, ``encode`` / ``decode`` / ``read_message``, limits.
- ``schema``: message kinds, their fields and arrays, error codes.
- ``template``: ``TemplateMessage``, the rig template's wire form.
- ``client``: ``Client`` (background receiver, newest frame per job).
- ``server``: ``Server`` / ``Connection`` plumbing; the core injects the
  per-session logic (``core.server.session``).
"""

from ._version import __version__

__all__ = ["__version__"]
