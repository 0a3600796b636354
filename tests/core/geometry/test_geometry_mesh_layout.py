"""core.geometry.mesh_layout (the numpy mesh layout) against slow references, and its torch views."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.geometry import vertex_normals as vertex_normals_torch
from core.geometry.mesh_layout import fan_triangulate, pad_polygons, surface_points, vertex_normals
from core.geometry.primitives import torus, triangulate


def fan_naive(polygons):
    tris, owner = [], []
    for p, row in enumerate(polygons):
        corners = [c for c in row if c >= 0]
        for k in range(1, len(corners) - 1):
            tris.append([corners[0], corners[k], corners[k + 1]])
            owner.append(p)
    return np.array(tris), np.array(owner)


def test_fan_triangulate_keeps_each_polygons_triangles_together():
    polygons = np.array([[10, 11, 12, 13, -1], [20, 21, 22, -1, -1], [30, 31, 32, 33, 34]])
    tris, owner = fan_triangulate(polygons)
    np.testing.assert_array_equal(tris, [[10, 11, 12], [10, 12, 13], [20, 21, 22],
                                         [30, 31, 32], [30, 32, 33], [30, 33, 34]])
    np.testing.assert_array_equal(owner, [0, 0, 1, 2, 2, 2])
    rng = np.random.default_rng(0)
    random = np.where(rng.random((50, 6)) < 0.3, -1, rng.integers(0, 99, (50, 6)))
    random[:, :3] = rng.integers(0, 99, (50, 3))
    random = np.sort(random, axis=1)[:, ::-1]  # -1 padding last
    for got, want in zip(fan_triangulate(random), fan_naive(random)):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="polygons must have shape"):
        fan_triangulate(np.zeros((3, 2), np.int64))


def test_triangulate_is_fan_triangulate_on_a_tensor():
    _, quads = torus(5, 4)
    quads[::3, 3] = -1
    tris = triangulate(quads)
    assert tris.dtype == torch.int64 and tris.device == quads.device
    np.testing.assert_array_equal(tris.numpy(), fan_triangulate(quads.numpy())[0])


def test_pad_polygons_from_flat_corners():
    padded = pad_polygons(np.array([1, 2, 3, 4, 5, 6, 7]), np.array([0, 4, 7]))
    np.testing.assert_array_equal(padded, [[1, 2, 3, 4], [5, 6, 7, -1]])


def test_surface_points_match_loop_and_carry_any_vertex_field():
    rng = np.random.default_rng(1)
    verts, tris = rng.normal(size=(12, 3)), rng.integers(0, 12, (9, 3))
    tri, bary = rng.integers(0, 9, 7), rng.dirichlet([1.0, 1.0, 1.0], 7)
    want = np.array([sum(b[k] * verts[tris[t, k]] for k in range(3)) for t, b in zip(tri, bary)])
    np.testing.assert_allclose(surface_points(verts, tris, tri, bary), want, rtol=0, atol=1e-15)
    assert surface_points(verts[:, :2], tris, tri, bary).shape == (7, 2)
    assert surface_points(verts.astype(np.float32), tris, tri, bary.astype(np.float32)).dtype == np.float32


def vertex_normals_naive(verts, tris):
    out = np.zeros_like(verts)
    for a, b, c in tris:
        n = np.cross(verts[b] - verts[a], verts[c] - verts[a])
        for i in (a, b, c):
            out[i] += n
    norm = np.linalg.norm(out, axis=1, keepdims=True)
    return np.where(norm > 0, out / np.where(norm > 0, norm, 1.0), 0.0)


def test_vertex_normals_match_naive_and_the_torch_home():
    verts, quads = torus(7, 5, dtype=torch.float64)
    verts = verts + 0.02 * torch.randn(verts.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    tris = triangulate(quads).numpy()
    v = verts.numpy()
    got = vertex_normals(v, tris)
    np.testing.assert_allclose(got, vertex_normals_naive(v, tris), atol=1e-12)
    np.testing.assert_allclose(got, vertex_normals_torch(verts[None], triangulate(quads))[0].numpy(), atol=1e-12)
    # a vertex on no face and one on only a collapsed face: the zero vector
    v = np.concatenate([v, np.zeros((4, 3))])
    tris = np.concatenate([tris, [[len(v) - 3, len(v) - 2, len(v) - 1]]])
    got = vertex_normals(v, tris)
    assert np.isfinite(got).all() and (got[-4:] == 0).all()
