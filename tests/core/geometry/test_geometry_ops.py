"""Geometry ops against slow loop references, float64 gradchecks and degenerate input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from core.geometry import (
    CurveSet,
    Laplacian,
    MeshTopology,
    corner_angles,
    curve_flow_features,
    dihedral_angles,
    edge_to_vertex_curvature,
    face_areas,
    face_normals,
    mean_segment_length,
    normalize_clamped,
    safe_atan2,
    safe_norm,
    safe_normalize,
    vertex_areas,
    vertex_normals,
)
from core.geometry.primitives import grid, torus, triangulate
from core.geometry.constants import COT_MAX, CURVE_SEGMENT_FLOOR


def noisy_torus(seed=0, n_major=7, n_minor=5, dtype=torch.float64, batch=2, noise=0.03):
    g = torch.Generator().manual_seed(seed)
    verts, quads = torus(n_major, n_minor, dtype=dtype)
    verts = verts[None] + noise * torch.randn(batch, *verts.shape, generator=g, dtype=dtype)
    faces = triangulate(quads)
    return verts, faces, MeshTopology.from_faces(faces, verts.shape[1], quads)


def unit(x):
    return x / np.linalg.norm(x)


def angle_naive(a, b):
    return math.acos(float(np.clip(np.dot(unit(a), unit(b)), -1.0, 1.0)))


def test_corner_angles_match_naive_and_sum_to_pi():
    verts, faces, topo = noisy_torus()
    got = corner_angles(verts, topo.polygon_corners)
    v = verts.numpy()
    for b in range(verts.shape[0]):
        for c, (p, i, n) in enumerate(topo.polygon_corners.tolist()):
            assert got[b, c].item() == pytest.approx(angle_naive(v[b, p] - v[b, i], v[b, n] - v[b, i]), abs=1e-9)
    tri = corner_angles(verts, topo.face_corners).reshape(verts.shape[0], -1, 3).sum(-1)
    assert torch.allclose(tri, torch.full_like(tri, math.pi))


def test_face_normals_and_areas_match_naive():
    verts, faces, _ = noisy_torus(seed=1)
    normals, areas = face_normals(verts, faces), face_areas(verts, faces)
    v = verts.numpy()
    for b in range(verts.shape[0]):
        for f, (i, j, k) in enumerate(faces.tolist()):
            cross = np.cross(v[b, j] - v[b, i], v[b, k] - v[b, i])
            assert np.allclose(normals[b, f].numpy(), unit(cross))
            assert areas[b, f].item() == pytest.approx(0.5 * np.linalg.norm(cross))


def vertex_normals_naive(verts, faces):
    """One face at a time: sum of cross products, then normalise."""
    out = torch.zeros_like(verts)
    for f in faces.tolist():
        a, b, c = verts[:, f[0]], verts[:, f[1]], verts[:, f[2]]
        n = torch.linalg.cross(b - a, c - a, dim=-1)
        for i in f:
            out[:, i] += n
    norm = out.norm(dim=-1, keepdim=True)
    return torch.where(norm > 0, out / norm.clamp(min=1e-300), out)


def test_vertex_normals_match_naive_and_survive_degenerate_faces():
    verts, faces, _ = noisy_torus(seed=2)
    torch.testing.assert_close(vertex_normals(verts, faces), vertex_normals_naive(verts, faces))
    # an isolated collapsed triangle: zero normal, finite gradient
    v = torch.cat([verts, torch.zeros(2, 3, 3, dtype=torch.float64)], 1).requires_grad_(True)
    f = torch.cat([faces, torch.tensor([[verts.shape[1], verts.shape[1] + 1, verts.shape[1] + 2]])])
    n = vertex_normals(v, f)
    assert (n[:, -3:] == 0).all()
    n.sum().backward()
    assert torch.isfinite(v.grad).all()


def test_normalize_clamped_is_unit_above_eps_and_zero_at_zero():
    x = torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, 0.0], [1e-14, 0.0, 0.0]], dtype=torch.float64, requires_grad=True)
    n = normalize_clamped(x)
    torch.testing.assert_close(n[0], torch.tensor([0.6, 0.8, 0.0], dtype=torch.float64))
    assert (n[1] == 0).all() and n[2, 0].item() == pytest.approx(1e-2)
    n.sum().backward()
    assert torch.isfinite(x.grad).all()


def dihedral_naive(v, faces, topo):
    """Unsigned angle acos(n1.n2); convex (positive) when the second face's far vertex lies below the first's plane."""
    out = []
    for (a, b), (f1, f2) in zip(topo.hinge_verts.tolist(), topo.hinge_faces.tolist()):
        n = [unit(np.cross(v[q[1]] - v[q[0]], v[q[2]] - v[q[0]])) for q in (faces[f1], faces[f2])]
        theta = math.acos(float(np.clip(np.dot(n[0], n[1]), -1, 1)))
        far = [x for x in faces[f2] if x not in (a, b)][0]
        out.append(theta if np.dot(n[0], v[far] - v[a]) < 0 else -theta)
    return np.array(out)


def test_dihedral_angles_match_naive_with_convexity_sign():
    verts, faces, topo = noisy_torus(seed=2)
    got = dihedral_angles(verts, topo).numpy()
    for b in range(verts.shape[0]):
        assert np.allclose(got[b], dihedral_naive(verts[b].numpy(), faces.tolist(), topo), atol=1e-9)
    # The torus's outer half is convex, its inner half saddle-shaped (some concave hinges).
    assert (got > 0).any() and (got < 0).any()


def test_dihedral_angles_of_a_flat_grid_are_zero():
    verts, quads = grid(4, 4, dtype=torch.float64)
    topo = MeshTopology.from_faces(triangulate(quads), verts.shape[0])
    assert torch.allclose(dihedral_angles(verts[None], topo), torch.zeros(1, topo.interior_edges.numel(), dtype=torch.float64))


def test_vertex_areas_match_naive_and_sum_to_total():
    verts, faces, _ = noisy_torus(seed=3)
    got = vertex_areas(verts, faces)
    areas = face_areas(verts, faces)
    ref = torch.zeros_like(got)
    for f, tri in enumerate(faces.tolist()):
        for i in tri:
            ref[:, i] += areas[:, f] / 3
    assert torch.allclose(got, ref)
    assert torch.allclose(got.sum(1), areas.sum(1))


def laplacian_dense_naive(verts, faces, kind):
    n = verts.shape[0]
    w = np.zeros((n, n))
    if kind in ("uniform", "combinatorial"):
        for tri in faces:
            for s in range(3):
                a, b = tri[s], tri[(s + 1) % 3]
                w[a, b] = w[b, a] = 1.0
        lap = np.diag(w.sum(1)) - w
        return lap / w.sum(1)[:, None] if kind == "uniform" else lap
    for tri in faces:
        for s in range(3):
            a, b, opp = tri[s], tri[(s + 1) % 3], tri[(s + 2) % 3]
            x, y = verts[a] - verts[opp], verts[b] - verts[opp]
            cot = np.clip(np.dot(x, y) / np.linalg.norm(np.cross(x, y)), -COT_MAX, COT_MAX)
            w[a, b] += 0.5 * cot
            w[b, a] += 0.5 * cot
    return np.diag(w.sum(1)) - w


@pytest.mark.parametrize("kind", ["uniform", "combinatorial", "cotangent"])
def test_laplacian_matches_dense_naive(kind):
    verts, faces, topo = noisy_torus(seed=4)
    lap = {"uniform": lambda: Laplacian.uniform(topo, torch.float64),
           "combinatorial": lambda: Laplacian.combinatorial(topo, torch.float64),
           "cotangent": lambda: Laplacian.cotangent(verts[0], topo)}[kind]()
    ref = laplacian_dense_naive(verts[0].numpy(), faces.tolist(), kind)
    assert np.allclose(lap.matrix().to_dense().numpy(), ref)
    expected = np.einsum("ij,bjd->bid", ref, verts.numpy())
    assert np.allclose(lap.apply(verts).numpy(), expected)


def test_cotangent_laplacian_vanishes_on_a_flat_grid_interior():
    verts, quads = grid(5, 5, dtype=torch.float64)
    topo = MeshTopology.from_faces(triangulate(quads), verts.shape[0])
    delta = Laplacian.cotangent(verts, topo).apply(verts[None])[0]
    interior = (verts[:, 0] > 0) & (verts[:, 0] < 1) & (verts[:, 1] > 0) & (verts[:, 1] < 1)
    assert torch.allclose(delta[interior], torch.zeros_like(delta[interior]), atol=1e-12)


def test_edge_to_vertex_curvature_matches_naive():
    verts, faces, topo = noisy_torus(seed=5)
    g = torch.Generator().manual_seed(0)
    importance = torch.rand(topo.interior_edges.numel(), generator=g, dtype=torch.float64)
    got = edge_to_vertex_curvature(verts, topo, importance)
    theta = dihedral_angles(verts, topo)
    for b in range(verts.shape[0]):
        for i in range(topo.num_verts):
            num = den = 0.0
            for e, (a, c) in enumerate(topo.hinge_verts.tolist()):
                if i in (a, c):
                    num += importance[e].item() * theta[b, e].item()
                    den += importance[e].item()
            assert got[b, i].item() == pytest.approx(num / den if den else 0.0, abs=1e-12)


def test_curve_flow_features_match_naive_eq5():
    verts, _, _ = noisy_torus(seed=6, noise=0.05)
    curves = CurveSet.from_sequences([[0, 1, 2, 3, 4], [10, 11, 12, 13, 14, 15, 16], [20, 21, 22, 23]], verts.shape[1])
    unit_len = mean_segment_length(verts, curves)
    got = curve_flow_features(verts, curves, unit_len)
    mask = curves.feature_mask()
    for b in range(verts.shape[0]):
        for k, seq in enumerate([[0, 1, 2, 3, 4], [10, 11, 12, 13, 14, 15, 16], [20, 21, 22, 23]]):
            p = verts[b, seq].numpy()
            seg = [np.linalg.norm(p[i + 1] - p[i]) for i in range(len(p) - 1)]
            assert unit_len[b, k].item() == pytest.approx(np.mean(seg))
            d = [0.5 * (unit(p[i + 1] - p[i]) + unit(p[i + 2] - p[i + 1])) for i in range(len(p) - 2)]
            for i in range(len(p) - 3):
                f = angle_naive(d[i], d[i + 1]) / max(seg[i], CURVE_SEGMENT_FLOOR * np.mean(seg)) * np.mean(seg)
                assert got[b, k, i].item() == pytest.approx(f, abs=1e-9)
            assert mask[k].sum().item() == len(p) - 3
            assert (got[b, k, len(p) - 3 :] == 0).all()


def test_curve_set_rejects_short_or_out_of_range_curves():
    with pytest.raises(ValueError, match="at least 4"):
        CurveSet.from_sequences([[0, 1, 2]], 10)
    with pytest.raises(ValueError, match="outside"):
        CurveSet.from_sequences([[0, 1, 2, 10]], 10)


def test_safe_ops_are_exact_away_from_zero_and_finite_at_zero():
    x = torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64, requires_grad=True)
    n = safe_norm(x)
    assert n.tolist() == [5.0, 0.0]
    (grad_norm,) = torch.autograd.grad(n.sum(), x)
    assert grad_norm[1].abs().sum() == 0 and torch.allclose(grad_norm[0], x[0] / 5)
    unit_vectors = safe_normalize(x)
    assert unit_vectors[1].abs().sum() == 0
    (grad_unit,) = torch.autograd.grad(unit_vectors.sum(), x)
    assert torch.isfinite(grad_unit).all()
    y = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    z = torch.tensor([0.0, -1.0], dtype=torch.float64, requires_grad=True)
    a = safe_atan2(y, z)
    assert a.tolist() == [0.0, math.pi]
    a.sum().backward()
    assert torch.isfinite(y.grad).all() and torch.isfinite(z.grad).all()


def _degenerate_mesh(dtype=torch.float64):
    """A torus with a collapsed edge, a sliver (collinear) triangle and a fully collapsed triangle."""
    verts, quads = torus(6, 4, dtype=dtype)
    faces = triangulate(quads)
    verts = verts.clone()
    a, b, c = faces[0].tolist()
    verts[b] = verts[a]  # zero-length edge, zero-area face 0
    p, q, r = faces[7].tolist()
    verts[r] = 0.5 * (verts[p] + verts[q])  # collinear triangle
    s, t, u = faces[15].tolist()
    verts[t] = verts[s]
    verts[u] = verts[s]  # coincident vertices
    return verts[None], faces, MeshTopology.from_faces(faces, verts.shape[0], quads)


def test_ops_are_finite_with_finite_gradients_on_degenerate_meshes():
    verts, faces, topo = _degenerate_mesh()
    verts.requires_grad_(True)
    curves = CurveSet.from_sequences([faces[15].tolist() + [0, 1], [0, 0, 0, 0]], topo.num_verts)
    outputs = [
        corner_angles(verts, topo.polygon_corners),
        dihedral_angles(verts, topo),
        edge_to_vertex_curvature(verts, topo),
        face_normals(verts, faces),
        face_areas(verts, faces),
        vertex_areas(verts, faces),
        Laplacian.uniform(topo, torch.float64).apply(verts),
        Laplacian.cotangent(verts[0].detach(), topo).apply(verts),
        curve_flow_features(verts, curves, mean_segment_length(verts.detach(), curves)),
    ]
    for out in outputs:
        assert torch.isfinite(out).all()
        (grad,) = torch.autograd.grad(out.sum(), verts, allow_unused=True)
        assert grad is None or torch.isfinite(grad).all()


@pytest.mark.parametrize(
    "op",
    ["corner_angles", "dihedral", "curvature", "normals", "areas", "laplacian", "curve_flow"],
)
def test_gradcheck_float64(op):
    verts, faces, topo = noisy_torus(seed=7, n_major=5, n_minor=4, batch=1)
    curves = CurveSet.from_sequences([[0, 1, 2, 3, 4, 5]], topo.num_verts)
    unit_len = mean_segment_length(verts, curves)
    fns = {
        "corner_angles": lambda v: corner_angles(v, topo.polygon_corners),
        "dihedral": lambda v: dihedral_angles(v, topo),
        "curvature": lambda v: edge_to_vertex_curvature(v, topo),
        "normals": lambda v: face_normals(v, faces),
        "areas": lambda v: vertex_areas(v, faces),
        "laplacian": lambda v: Laplacian.cotangent(verts[0], topo).apply(v),
        "curve_flow": lambda v: curve_flow_features(v, curves, unit_len),
    }
    assert torch.autograd.gradcheck(fns[op], (verts.clone().requires_grad_(True),))


def test_float32_angles_and_rotations_do_not_depend_on_how_many_rows_come_with_them():
    """A head fitted in a batch of people gets the numbers it gets alone: torch's float32 atan2, sin and
    cos round differently in the vector body and the scalar tail of a tensor, so these go through
    float64 (``via_float64``) and each row equals the row computed by itself, value and gradient."""
    from core.geometry.camera import axis_angle_to_matrix

    g = torch.Generator().manual_seed(0)
    for rows, cols in [(3, 37), (8, 101), (13, 5)]:
        y, x = torch.randn(2, rows, cols, generator=g).unbind(0)
        w = torch.randn(rows, cols, 3, generator=g)
        for fn, args in [(safe_atan2, (y, x)), (axis_angle_to_matrix, (w,))]:
            args = [a.clone().requires_grad_(True) for a in args]
            out = fn(*args)
            weights = torch.randn(out.shape, generator=g)
            (out * weights).sum().backward()
            for r in range(rows):
                alone = [a.detach()[r:r + 1].clone().requires_grad_(True) for a in args]
                out_r = fn(*alone)
                (out_r * weights[r:r + 1]).sum().backward()
                assert torch.equal(out_r[0], out[r])
                assert all(torch.equal(a.grad[r], b.grad[0]) for a, b in zip(args, alone))
