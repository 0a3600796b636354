"""The Likeness engine: template, rendering, losses, fitting, priors, texture.

Never imports Blender modules; talks to Blender only through ``bridge``.
"""

from bridge import __version__

__all__ = ["__version__"]
