"""Mesh losses (EV-GCC, conformal, face flip, curve flow, displacement, Laplacian, symmetry):
loop references, float64 gradchecks, degenerate meshes and device parity."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from core.geometry import CurveSet, Laplacian, MeshTopology, curve_flow_features, mean_segment_length
from core.geometry.primitives import grid, torus, triangulate
from core.losses.conformal import conformal_target
from core.losses.curve_flow import curve_flow_target
from core.losses.evgcc import evgcc_target
from core.losses.face_flip import face_flip_target
from core.losses import (
    conformal_loss,
    curve_flow_loss,
    displacement_loss,
    evgcc_loss,
    face_flip_loss,
    laplacian_energy,
    symmetry_loss,
)

CURVES = [[0, 1, 2, 3, 4, 5], [8, 9, 10, 11]]


def meshes(seed=0, n_major=6, n_minor=4, batch=2, noise=0.05, dtype=torch.float64):
    """A template torus and a batch of deformed copies with the same topology."""
    g = torch.Generator().manual_seed(seed)
    template, quads = torus(n_major, n_minor, dtype=dtype)
    faces = triangulate(quads)
    verts = template[None] + noise * torch.randn(batch, *template.shape, generator=g, dtype=dtype)
    return verts, template[None], faces, MeshTopology.from_faces(faces, template.shape[0], quads)


def unit(x):
    n = np.linalg.norm(x)
    return x / n if n > 0 else x


def angle(a, b):
    return math.acos(float(np.clip(np.dot(unit(a), unit(b)), -1, 1)))


def signed_dihedral(v, faces, a, b, f1, f2):
    n1 = unit(np.cross(v[faces[f1][1]] - v[faces[f1][0]], v[faces[f1][2]] - v[faces[f1][0]]))
    n2 = unit(np.cross(v[faces[f2][1]] - v[faces[f2][0]], v[faces[f2][2]] - v[faces[f2][0]]))
    theta = math.acos(float(np.clip(np.dot(n1, n2), -1, 1)))
    far = [x for x in faces[f2] if x not in (a, b)][0]
    return theta if np.dot(n1, v[far] - v[a]) < 0 else -theta


def evgcc_naive(verts, target, faces, topo):
    faces = faces.tolist()
    out = []
    for b in range(verts.shape[0]):
        v, t = verts[b].numpy(), target[0].numpy()
        total = 0.0
        for i in range(topo.num_verts):
            cs = ct = wsum = 0.0
            for (a, c), (f1, f2) in zip(topo.hinge_verts.tolist(), topo.hinge_faces.tolist()):
                if i in (a, c):
                    w = np.linalg.norm(t[c] - t[a])  # importance: template edge length
                    cs += w * signed_dihedral(v, faces, a, c, f1, f2)
                    ct += w * signed_dihedral(t, faces, a, c, f1, f2)
                    wsum += w
            total += abs(cs / wsum - ct / wsum)
        out.append(total / topo.num_verts)
    return float(np.mean(out))


def top_k_mean_naive(rows, k):
    return float(np.mean([np.mean(sorted(r, reverse=True)[:k]) for r in rows]))


def conformal_naive(verts, target, corners, k):
    rows = []
    for b in range(verts.shape[0]):
        v, t = verts[b].numpy(), target[0].numpy()
        rows.append([abs(angle(v[p] - v[i], v[n] - v[i]) - angle(t[p] - t[i], t[n] - t[i])) for p, i, n in corners.tolist()])
    return top_k_mean_naive(rows, k)


def flip_naive(verts, target, faces, k):
    rows = []
    for b in range(verts.shape[0]):
        v, t = verts[b].numpy(), target[0].numpy()
        row = []
        for i, j, l in faces.tolist():
            ns = unit(np.cross(v[j] - v[i], v[l] - v[i]))
            nt = unit(np.cross(t[j] - t[i], t[l] - t[i]))
            row.append(np.linalg.norm(ns - nt))
        rows.append(row)
    return top_k_mean_naive(rows, k)


def curve_features_naive(p, unit_len):
    seg = [np.linalg.norm(p[i + 1] - p[i]) for i in range(len(p) - 1)]
    d = [0.5 * (unit(p[i + 1] - p[i]) + unit(p[i + 2] - p[i + 1])) for i in range(len(p) - 2)]
    return [angle(d[i], d[i + 1]) / max(seg[i], 1e-3 * unit_len) * unit_len for i in range(len(p) - 3)]


def curve_flow_naive(verts, target, curves):
    diffs = []
    for b in range(verts.shape[0]):
        for seq in curves:
            t = target[0, seq].numpy()
            unit_len = np.mean([np.linalg.norm(t[i + 1] - t[i]) for i in range(len(t) - 1)])
            fs = curve_features_naive(verts[b, seq].numpy(), unit_len)
            ft = curve_features_naive(t, unit_len)
            diffs += [abs(x - y) for x, y in zip(fs, ft)]
    return float(np.mean(diffs))


def uniform_delta_naive(v, topo):
    nbrs = [set() for _ in range(topo.num_verts)]
    for a, b in topo.edges.tolist():
        nbrs[a].add(b)
        nbrs[b].add(a)
    return np.stack([v[i] - np.mean([v[j] for j in nbrs[i]], axis=0) for i in range(len(v))])


def laplacian_naive(verts, target, topo):
    t = uniform_delta_naive(target[0].numpy(), topo)
    return float(np.mean([np.mean(np.sum((uniform_delta_naive(verts[b].numpy(), topo) - t) ** 2, axis=1)) for b in range(verts.shape[0])]))


def mirror_map(template):
    """Partner of each torus vertex under x -> -x, found by brute force."""
    reflected = template[0] * torch.tensor([-1.0, 1.0, 1.0], dtype=template.dtype, device=template.device)
    return torch.cdist(template[0], reflected).argmin(dim=1)


def symmetry_naive(verts, mirror):
    total = 0.0
    for b in range(verts.shape[0]):
        for i, j in enumerate(mirror.tolist()):
            r = verts[b, j].numpy() * np.array([-1.0, 1.0, 1.0])
            total += float(np.sum((verts[b, i].numpy() - r) ** 2))
    return total / (verts.shape[0] * verts.shape[1])


def test_evgcc_matches_naive_and_vanishes_on_rigid_motion():
    verts, template, faces, topo = meshes(0)
    assert evgcc_loss(verts, template, topo).item() == pytest.approx(evgcc_naive(verts, template, faces, topo))
    rotation = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    moved = template @ rotation.T + 0.3
    assert evgcc_loss(moved, template, topo).item() == pytest.approx(0.0, abs=1e-12)


def test_evgcc_accepts_explicit_and_batched_importance():
    verts, template, faces, topo = meshes(1)
    ei = topo.interior_edges.numel()
    ones = evgcc_loss(verts, template, topo, torch.ones(ei, dtype=torch.float64))
    batched = evgcc_loss(verts, template, topo, torch.ones(2, ei, dtype=torch.float64))
    assert ones.item() == pytest.approx(batched.item())
    with pytest.raises(ValueError, match="importance has batch"):
        evgcc_loss(verts, template, topo, torch.ones(3, ei, dtype=torch.float64))


@pytest.mark.parametrize("k", [5, 0.25, None])
def test_conformal_matches_naive_top_k(k):
    verts, template, faces, topo = meshes(2)
    corners = topo.polygon_corners
    kk = {5: 5, 0.25: math.ceil(0.25 * corners.shape[0]), None: corners.shape[0]}[k]
    assert conformal_loss(verts, template, corners, k).item() == pytest.approx(conformal_naive(verts, template, corners, kk))


@pytest.mark.parametrize("k", [7, 0.1, None])
def test_face_flip_matches_naive_top_k(k):
    verts, template, faces, topo = meshes(3)
    kk = {7: 7, 0.1: math.ceil(0.1 * faces.shape[0]), None: faces.shape[0]}[k]
    assert face_flip_loss(verts, template, faces, k).item() == pytest.approx(flip_naive(verts, template, faces, kk))


def test_face_flip_counts_an_inverted_triangle_as_two():
    template, quads = grid(4, 4, dtype=torch.float64)
    faces = triangulate(quads)
    moved = template.clone()
    moved[5, 0] = 1.0  # drag an interior vertex past its neighbours within the plane: some triangles turn over
    assert face_flip_loss(template[None], template[None], faces, 1).item() == 0.0
    assert face_flip_loss(moved[None], template[None], faces, 1).item() == pytest.approx(2.0)
    assert 0.0 < face_flip_loss(moved[None], template[None], faces, None).item() < 2.0


def test_curve_flow_matches_naive_eqs_4_5():
    verts, template, _, topo = meshes(5)
    curves = CurveSet.from_sequences(CURVES, topo.num_verts)
    assert curve_flow_loss(verts, template, curves).item() == pytest.approx(curve_flow_naive(verts, template, CURVES))


def test_curve_flow_measures_both_curves_in_the_template_unit():
    _, template, _, topo = meshes(6)
    curves = CurveSet.from_sequences(CURVES, topo.num_verts)
    assert curve_flow_loss(template, template, curves).item() == 0.0
    f_t = curve_flow_features(template, curves, mean_segment_length(template, curves))
    mean_f_t = f_t.sum() / curves.feature_mask().sum()
    # Three times longer segments with the same turning: each feature drops to a third.
    assert curve_flow_loss(3.0 * template, template, curves).item() == pytest.approx(2.0 / 3.0 * mean_f_t.item())


def test_a_prepared_target_gives_the_same_values_and_gradients():
    """The fit computes each term's target side once per stage: bitwise the same as computing it every call."""
    verts, template, faces, topo = meshes(7)
    curves = CurveSet.from_sequences(CURVES, topo.num_verts)
    corners = topo.polygon_corners
    cases = {
        "evgcc": (lambda v, t=None: evgcc_loss(v, template, topo, target=t), evgcc_target(template, topo)),
        "conformal": (lambda v, t=None: conformal_loss(v, template, corners, 0.5, target=t),
                      conformal_target(template, corners)),
        "flip": (lambda v, t=None: face_flip_loss(v, template, faces, 0.5, target=t), face_flip_target(template, faces)),
        "curve": (lambda v, t=None: curve_flow_loss(v, template, curves, target=t), curve_flow_target(template, curves)),
    }
    for name, (loss, prepared) in cases.items():
        a = verts.clone().requires_grad_(True)
        b = verts.clone().requires_grad_(True)
        plain, fast = loss(a), loss(b, prepared)
        plain.backward()
        fast.backward()
        assert plain.item() > 0 and torch.equal(plain, fast), name
        assert torch.equal(a.grad, b.grad), name


def test_displacement_matches_naive():
    verts, template, _, _ = meshes(7)
    offsets = verts - template
    ref = np.mean([np.linalg.norm(offsets[b, i].numpy()) for b in range(2) for i in range(offsets.shape[1])])
    assert displacement_loss(offsets).item() == pytest.approx(ref)


def test_laplacian_energy_matches_naive_and_ignores_translation():
    verts, template, _, topo = meshes(8)
    lap = Laplacian.uniform(topo, torch.float64)
    assert laplacian_energy(verts, template, lap).item() == pytest.approx(laplacian_naive(verts, template, topo))
    cot = Laplacian.cotangent(template[0], topo)
    assert laplacian_energy(template + torch.tensor([0.1, -2.0, 0.5], dtype=torch.float64), template, cot).item() == pytest.approx(0.0, abs=1e-20)


def test_symmetry_matches_naive_and_vanishes_on_the_symmetric_template():
    verts, template, _, _ = meshes(9)
    mirror = mirror_map(template)
    assert symmetry_loss(template, mirror).item() == pytest.approx(0.0, abs=1e-24)
    assert symmetry_loss(verts, mirror).item() == pytest.approx(symmetry_naive(verts, mirror))
    partial = mirror.clone()
    partial[:3] = -1
    kept = [i for i in range(verts.shape[1]) if partial[i] >= 0]
    ref = np.mean(
        [np.sum((verts[b, i].numpy() - verts[b, mirror[i]].numpy() * [-1.0, 1.0, 1.0]) ** 2) for b in range(2) for i in kept]
    )
    assert symmetry_loss(verts, partial).item() == pytest.approx(ref)
    with pytest.raises(ValueError, match="mirror must have shape"):
        symmetry_loss(verts, mirror[:-1])


def loss_functions(template, faces, topo):
    curves = CurveSet.from_sequences(CURVES, topo.num_verts)
    mirror = mirror_map(template)
    uniform = Laplacian.uniform(topo, template.dtype)
    cotangent = Laplacian.cotangent(template[0], topo)
    return {
        "evgcc": lambda v: evgcc_loss(v, template, topo),
        "conformal": lambda v: conformal_loss(v, template, topo.polygon_corners, 6),
        "face_flip": lambda v: face_flip_loss(v, template, faces, 5),
        "curve_flow": lambda v: curve_flow_loss(v, template, curves),
        "displacement": lambda v: displacement_loss(v - template),
        "laplacian_uniform": lambda v: laplacian_energy(v, template, uniform),
        "laplacian_cotangent": lambda v: laplacian_energy(v, template, cotangent),
        "symmetry": lambda v: symmetry_loss(v, mirror),
    }


LOSS_NAMES = list(loss_functions(*meshes(0, batch=1)[1:]))


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_gradcheck_float64(name):
    verts, template, faces, topo = meshes(10, n_major=5, n_minor=4, batch=1)
    fn = loss_functions(template, faces, topo)[name]
    assert torch.autograd.gradcheck(fn, (verts.clone().requires_grad_(True),))


def degenerate(verts, faces):
    """Collapse an edge, make a triangle collinear and three vertices coincident."""
    v = verts.clone()
    a, b, _ = faces[0].tolist()
    v[:, b] = v[:, a]
    p, q, r = faces[7].tolist()
    v[:, r] = 0.5 * (v[:, p] + v[:, q])
    s, t, u = faces[15].tolist()
    v[:, t] = v[:, s]
    v[:, u] = v[:, s]
    v[:, 2] = v[:, 1]  # on a curve: a zero-length curve segment
    return v


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", LOSS_NAMES)
def test_degenerate_meshes_give_finite_values_and_gradients(name, dtype):
    verts, template, faces, topo = meshes(11, dtype=dtype)
    for deformed, reference in ((degenerate(verts, faces), template), (verts, degenerate(template, faces))):
        fns = loss_functions(reference, faces, topo)
        v = deformed.clone().requires_grad_(True)
        loss = fns[name](v)
        (grad,) = torch.autograd.grad(loss, v)
        assert torch.isfinite(loss) and torch.isfinite(grad).all()
    collapsed = torch.zeros_like(verts, requires_grad=True)
    loss = loss_functions(template, faces, topo)[name](collapsed)
    (grad,) = torch.autograd.grad(loss, collapsed)
    assert torch.isfinite(loss) and torch.isfinite(grad).all()


def test_float32_matches_float64():
    verts, template, faces, topo = meshes(12)
    f64 = {k: fn(verts).item() for k, fn in loss_functions(template, faces, topo).items()}
    v32, t32 = verts.float(), template.float()
    f32 = {k: fn(v32).item() for k, fn in loss_functions(t32, faces, topo).items()}
    for k in f64:
        assert f32[k] == pytest.approx(f64[k], rel=1e-4, abs=1e-6), k


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    verts, template, faces, topo = meshes(13)
    cpu = {}
    for k, fn in loss_functions(template, faces, topo).items():
        v = verts.clone().requires_grad_(True)
        loss = fn(v)
        cpu[k] = (loss.item(), torch.autograd.grad(loss, v)[0])
    dev = torch.device("cuda")
    for k, fn in loss_functions(template.to(dev), faces.to(dev), topo.to(dev)).items():
        v = verts.to(dev).requires_grad_(True)
        loss = fn(v)
        grad = torch.autograd.grad(loss, v)[0].cpu()
        assert loss.item() == pytest.approx(cpu[k][0], rel=1e-9, abs=1e-12), k
        assert torch.allclose(grad, cpu[k][1], rtol=1e-7, atol=1e-10), k


def random_rotation(seed):
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    return q if torch.det(q) > 0 else -q


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_intrinsic_terms_ignore_rigid_motion_and_scale(seed):
    verts, template, faces, topo = meshes(20 + seed, batch=1)
    rotation = random_rotation(seed)
    curves = CurveSet.from_sequences(CURVES, topo.num_verts)
    rigid = verts @ rotation.T + torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)
    similar = 2.5 * rigid
    for moved in (rigid, similar):
        # Deforming the same shape against the moved template costs exactly what it did before.
        assert evgcc_loss(moved, template, topo).item() == pytest.approx(evgcc_loss(verts, template, topo).item(), rel=1e-9)
        assert conformal_loss(moved, verts, topo.polygon_corners).item() == pytest.approx(0.0, abs=1e-12)
        assert evgcc_loss(moved, verts, topo).item() == pytest.approx(0.0, abs=1e-12)
    assert curve_flow_loss(rigid, verts, curves).item() == pytest.approx(0.0, abs=1e-9)
    assert face_flip_loss(rigid, verts, faces).item() > 0.0


@settings(max_examples=20, deadline=None)
@given(
    snaps=st.lists(st.tuples(st.integers(0, 23), st.integers(0, 23)), min_size=1, max_size=8),
    collapse_target=st.booleans(),
)
def test_random_vertex_collapses_keep_every_loss_finite(snaps, collapse_target):
    verts, template, faces, topo = meshes(30, n_major=6, n_minor=4, batch=1, dtype=torch.float32)
    deformed = verts.clone()
    for src, dst in snaps:  # weld vertex src onto dst: zero-length edges, collapsed and sliver triangles
        deformed[:, src] = deformed[:, dst]
    reference = deformed if collapse_target else template
    fns = loss_functions(reference, faces, topo)
    for name, fn in fns.items():
        v = (template if collapse_target else deformed).clone().requires_grad_(True)
        loss = fn(v)
        (grad,) = torch.autograd.grad(loss, v)
        assert torch.isfinite(loss) and torch.isfinite(grad).all(), name
