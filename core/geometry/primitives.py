"""Small procedural meshes (torus, grid) and quad triangulation, for benchmarks and tests."""

from __future__ import annotations

import math

import torch


def triangulate(polygons: torch.Tensor) -> torch.Tensor:
    """Fan-triangulate (P, 4) quads, with -1 in the last column for triangles.

    polygons: (P, 4) int64. Returns (T, 3) int64: (a, b, c) and, for quads,
    (a, c, d), keeping each polygon's winding.
    """
    if polygons.dim() != 2 or polygons.shape[1] != 4:
        raise ValueError(f"polygons must have shape (P, 4), got {tuple(polygons.shape)}")
    first = polygons[:, [0, 1, 2]]
    second = polygons[polygons[:, 3] >= 0][:, [0, 2, 3]]
    return torch.cat([first, second])


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
