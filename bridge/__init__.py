"""Wire protocol between the Blender add-on and the Likeness core.

Standard library + numpy only, relative imports only: this package is imported
as the top-level ``bridge`` in the core's venv and as ``<extension>.bridge``
inside Blender.
"""

from ._version import __version__

__all__ = ["__version__"]
