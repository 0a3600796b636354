"""What one view can tell at best: error bounds for the fitter benchmark.

A synthetic case hides part of its face from the camera (the far cheek, under
the chin, inside the nostrils) and moves vertices along the surface (its
random field and asymmetry targets), which a normal map does not see. These
bounds fit nothing from the image. They build idealised results from the
ground truth itself and measure them with the same metrics as the fitted
variants. A method that gets the same inputs as the fitter cannot expect to
beat them:

``visible``      every vertex the hidden camera sees is exactly right, in 3-D
                 and along the surface. The others get the rig's best 3-D
                 fit of the whole ground truth, moved by a smooth extension
                 of the seen correction: harmonic, or mirrored from the seen
                 side first. Of the two, the one closer to the ground truth
                 counts.
``landmarks``    the seen surface is exactly right along the ground truth's
                 normals, as a perfect normal map would make it. The sliding
                 along the surface is known only at the visible landmarks
                 (exactly, in 3-D), with a harmonic extension between them.
                 This is a generous stand-in for a landmark- and
                 normal-driven fit.

Both start from the rig's best 3-D fit (bounded controllers fitted to the
ground truth's face vertices), so they are bounds on this template's rig as
well as on the view.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

RIG_ORACLE_ITERATIONS = 300


def rig_oracle(template, gt: np.ndarray, face_ids: np.ndarray, iterations: int = RIG_ORACLE_ITERATIONS) -> np.ndarray:
    """(N, 3) the template deformed by the bounded controllers that best match ``gt``'s
    face vertices in 3-D (centred, so translation does not count), moved onto ``gt``'s
    face centroid."""
    import torch

    from core.template import TemplateModel

    model = TemplateModel(template, dtype=torch.float64)
    target = torch.as_tensor(gt, dtype=torch.float64)[face_ids]
    target = target - target.mean(0)
    ctrl = model.default_controllers().clone().requires_grad_(True)
    opt = torch.optim.Adam([ctrl], lr=0.02)
    lo, hi = model.ctrl_bounds[:, 0], model.ctrl_bounds[:, 1]
    for _ in range(iterations):
        face = model.deform(ctrl).verts[0][face_ids]
        loss = ((face - face.mean(0)) - target).pow(2).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            ctrl.copy_(torch.maximum(torch.minimum(ctrl, hi), lo))
    with torch.no_grad():
        v = model.deform(ctrl).verts[0].numpy()
    return v + (gt[face_ids].mean(0) - v[face_ids].mean(0))


def graph_laplacian(tris: np.ndarray, n: int) -> sp.csr_matrix:
    """(n, n) uniform graph Laplacian (degree - adjacency) of a triangle mesh:
    ``core.geometry.Laplacian.combinatorial`` as a scipy matrix."""
    import torch

    from core.geometry import Laplacian, MeshTopology

    lap = Laplacian.combinatorial(MeshTopology.from_faces(torch.as_tensor(tris), n), torch.float64).matrix()
    rows, cols = lap.indices().numpy()
    return sp.csr_matrix((lap.values().numpy(), (rows, cols)), shape=(n, n))


def harmonic_extension(lap: sp.csr_matrix, values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """``values`` kept where ``known``; elsewhere the harmonic interpolant (L x = 0 on the
    unknown vertices). Unknown pieces that touch no known vertex get 0."""
    out = np.array(values, dtype=np.float64, copy=True)
    free = ~known
    if not free.any():
        return out
    if not known.any():
        out[:] = 0.0
        return out
    a = lap[free][:, free] + 1e-9 * sp.eye(int(free.sum()), format="csr")
    rhs = -(lap[free][:, known] @ out[known])
    out[free] = spla.spsolve(a.tocsc(), rhs).reshape(out[free].shape)
    return out


def visible_landmark_vertices(template, weight: np.ndarray) -> np.ndarray:
    """Vertex ids nearest (largest barycentric) to the surface landmarks a view sees."""
    from core.template import LMK_SURFACE

    kind = np.asarray(template.lmk_kind)
    use = (kind == LMK_SURFACE) & (np.asarray(weight) > 0)
    nearest = template.tris[template.lmk_tri, np.argmax(template.lmk_bary, 1)]
    return np.unique(nearest[use])


def bounds(template, case, facing: np.ndarray, face_ids: np.ndarray) -> dict:
    """{"visible": metrics, "landmarks": metrics} for one synthetic case (see the module
    docstring); metrics as ``core.bench.metrics.mesh_metrics`` without the per-vertex field."""
    from core.bench.metrics import mesh_metrics
    from core.geometry.mesh_layout import vertex_normals

    gt = case.verts.astype(np.float64)
    n = len(gt)
    base = rig_oracle(template, gt, face_ids)
    lap = graph_laplacian(template.tris, n)
    corr = gt - base
    seen = np.asarray(facing, bool)

    plain = base + harmonic_extension(lap, corr, seen)
    mirror = np.asarray(template.mirror)
    mirrored = corr[mirror] * np.array([-1.0, 1.0, 1.0])  # the template is symmetric in x
    from_mirror = ~seen & seen[mirror]
    seeded = np.where(from_mirror[:, None], mirrored, corr)
    sym = base + harmonic_extension(lap, seeded, seen | from_mirror)

    def metrics(v):
        m = mesh_metrics(v, case.verts, template.tris, face_ids, facing, template.verts)
        m.pop("_err_mm")
        return m

    visible = min((metrics(plain), metrics(sym)), key=lambda m: m["rmse_mm"])

    normals = vertex_normals(gt, template.tris)
    along = (corr * normals).sum(1, keepdims=True) * normals
    known = np.zeros(n, bool)
    known[visible_landmark_vertices(template, case.view.landmark_weight)] = True
    lmk = base + harmonic_extension(lap, along, seen) + harmonic_extension(lap, corr - along, known)
    return {"visible": visible, "landmarks": metrics(lmk)}
