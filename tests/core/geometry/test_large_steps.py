"""Large-steps parameterisation: exact round trip, gradient of the solve, smoothing effect."""

import torch

from core.geometry.large_steps import LargeSteps
from core.geometry.primitives import grid, triangulate
from core.geometry.topology import MeshTopology


def _mesh():
    verts, quads = grid(12, 12)
    return verts, MeshTopology.from_faces(triangulate(quads), verts.shape[0])


def test_round_trip_and_matrix():
    verts, top = _mesh()
    ls = LargeSteps(top, 10.0, "cpu")
    d = torch.randn(verts.shape[0], 3, dtype=torch.float64)
    assert torch.allclose(ls(ls.to_differential(d)), d, atol=1e-5)


def test_gradient_is_the_transposed_solve():
    verts, top = _mesh()
    ls = LargeSteps(top, 5.0, "cpu")
    u = torch.randn(verts.shape[0], 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn_like(u)
    (ls(u) * w).sum().backward()
    # M is symmetric: d/du <M^-1 u, w> = M^-1 w.
    assert torch.allclose(u.grad, ls(w), atol=1e-5)


def test_a_spike_in_u_spreads_out():
    verts, top = _mesh()
    ls = LargeSteps(top, 20.0, "cpu")
    u = torch.zeros(verts.shape[0], 3)
    u[verts.shape[0] // 2, 2] = 1.0
    d = ls(u)[:, 2]
    assert d.max() < 0.2 and (d > 0.01).sum() > 10
