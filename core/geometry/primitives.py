"""Small procedural meshes (torus, grid) and quad triangulation, for benchmarks and tests."""

from __future__ import annotations

import math

import torch

from .mesh_layout import fan_triangulate


def triangulate(polygons: torch.Tensor) -> torch.Tensor:
    """:func:`~core.geometry.mesh_layout.fan_triangulate` on a tensor: (a, b, c), (a, c, d), ...

    polygons: (P, N) int64, -1 padded (quads with -1 in the last column for triangles).
    Returns (T, 3) int64 on the same device, each polygon's triangles together.
    """
    return torch.as_tensor(fan_triangulate(polygons.cpu().numpy())[0], device=polygons.device)


def torus(
    n_major: int, n_minor: int, major_radius: float = 1.0, minor_radius: float = 0.4, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """A closed quad torus around the z axis, outward-facing.

    Returns verts (n_major * n_minor, 3) and quads (n_major * n_minor, 4) int64.
    """
    u = torch.arange(n_major, dtype=dtype) * (2 * math.pi / n_major)
    w = torch.arange(n_minor, dtype=dtype) * (2 * math.pi / n_minor)
    uu, ww = torch.meshgrid(u, w, indexing="ij")
    ring = major_radius + minor_radius * torch.cos(ww)
    verts = torch.stack([ring * torch.cos(uu), ring * torch.sin(uu), minor_radius * torch.sin(ww)], -1).reshape(-1, 3)
    i = torch.arange(n_major)[:, None]
    j = torch.arange(n_minor)[None, :]
    vid = lambda a, b: ((a % n_major) * n_minor + (b % n_minor)).reshape(-1)  # noqa: E731
    quads = torch.stack([vid(i, j), vid(i + 1, j), vid(i + 1, j + 1), vid(i, j + 1)], dim=1)
    return verts, quads


def grid(nx: int, ny: int, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """An open unit quad grid in the z = 0 plane facing +z (it has boundary edges).

    Returns verts (nx * ny, 3) and quads ((nx - 1) * (ny - 1), 4) int64.
    """
    x = torch.linspace(0.0, 1.0, nx, dtype=dtype)
    y = torch.linspace(0.0, 1.0, ny, dtype=dtype)
    xx, yy = torch.meshgrid(x, y, indexing="ij")
    verts = torch.stack([xx, yy, torch.zeros_like(xx)], -1).reshape(-1, 3)
    i = torch.arange(nx - 1)[:, None]
    j = torch.arange(ny - 1)[None, :]
    vid = lambda a, b: (a * ny + b).reshape(-1)  # noqa: E731
    quads = torch.stack([vid(i, j), vid(i + 1, j), vid(i + 1, j + 1), vid(i, j + 1)], dim=1)
    return verts, quads
