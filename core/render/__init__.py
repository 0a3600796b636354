"""Differentiable rasterisation: normal maps, depth, coverage, point projections.

Conventions (world frame, OpenCV cameras, pixel centres at ``i + 0.5``,
normal-map encoding) are owned by ``bridge.conventions``. Rasterisation picks
the nearest face per pixel without gradients; barycentrics, depth and
interpolated attributes carry gradients to the vertices.
"""

from .interpolate import interpolate
from .rasterize import BACKENDS, Fragments, default_backend, rasterize, rasterize_projected
from .render import project_surface_points, render_depth, render_normals, surface_points, visible_points

__all__ = [
    "BACKENDS",
    "Fragments",
    "default_backend",
    "interpolate",
    "project_surface_points",
    "rasterize",
    "rasterize_projected",
    "render_depth",
    "render_normals",
    "surface_points",
    "visible_points",
]
