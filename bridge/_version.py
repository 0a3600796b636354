"""The one version number of Likeness.

pyproject.toml reads it (``[tool.setuptools.dynamic]``), the add-on and the core
import it, and a test checks that ``blender_manifest.toml`` agrees.
"""

__version__ = "0.1.0"
