"""Error metrics of a mesh in template topology against the ground truth (the fitter benchmarks').

``mesh_metrics`` aligns a result to the ground truth on the face and splits the
error (along the normals, along the surface, facing the camera or not);
``core.bench.fit``, ``core.bench.bounds`` and ``core.bench.multiview`` score with it.
"""

from __future__ import annotations

import numpy as np

from core.geometry.constants import MM
from core.geometry.mesh_layout import vertex_normals
from core.geometry.similarity import similarity_align

# A vertex "faces" the hidden camera when the cosine between its ground-truth normal
# and the direction to the camera exceeds this (the split of the error fields below).
FACING_COS = 0.1


def mesh_metrics(pred: np.ndarray, gt: np.ndarray, tris: np.ndarray, face_ids: np.ndarray,
                 facing: np.ndarray | None = None, rest: np.ndarray | None = None) -> dict:
    """Face-mask metrics after a similarity alignment of ``pred`` to ``gt`` on the face:
    RMSE (mm), its parts along the ground truth's normals and along the surface,
    mean normal consistency (cosine), flipped faces and smallest corner angle
    (degrees) over the triangles with all corners in the face mask. ``facing``
    (N,) bool adds the RMSE over the face-mask vertices it marks and over the rest.
    ``rest`` (N, 3), the template, adds the folds the fit made (triangles flipped
    against both the ground truth and the template) and the ground truth's own
    folds against the template (an expression can fold lip triangles; "flipped
    faces", counted against the ground truth, include those the fit does not copy)."""
    pred = similarity_align(pred.astype(np.float64), gt.astype(np.float64), face_ids)
    gt = gt.astype(np.float64)
    diff = pred[face_ids] - gt[face_ids]
    err = np.linalg.norm(diff, axis=1)
    gt_normals = vertex_normals(gt, tris)[face_ids]
    along = (diff * gt_normals).sum(1)
    across = np.linalg.norm(diff - along[:, None] * gt_normals, axis=1)
    nc = (vertex_normals(pred, tris)[face_ids] * gt_normals).sum(1)
    in_face = np.zeros(len(gt), bool)
    in_face[face_ids] = True
    ftris = tris[in_face[tris].all(1)]
    fp = np.cross(pred[ftris[:, 1]] - pred[ftris[:, 0]], pred[ftris[:, 2]] - pred[ftris[:, 0]])
    fg = np.cross(gt[ftris[:, 1]] - gt[ftris[:, 0]], gt[ftris[:, 2]] - gt[ftris[:, 0]])
    flipped = int(((fp * fg).sum(1) < 0).sum())
    folds = {}
    if rest is not None:
        r = np.asarray(rest, np.float64)
        fr = np.cross(r[ftris[:, 1]] - r[ftris[:, 0]], r[ftris[:, 2]] - r[ftris[:, 0]])
        # Orientation does not change under the similarity alignment (positive scale).
        folds = {"folds_made": int((((fp * fg).sum(1) < 0) & ((fp * fr).sum(1) < 0)).sum()),
                 "gt_folded_vs_template": int(((fg * fr).sum(1) < 0).sum())}
    e = [pred[ftris[:, (k + 1) % 3]] - pred[ftris[:, k]] for k in range(3)]
    angles = []
    for k in range(3):
        a, b = e[k], -e[(k + 2) % 3]
        cos = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-20)
        angles.append(np.degrees(np.arccos(np.clip(cos, -1, 1))))
    per_vertex = np.zeros(len(gt))
    per_vertex[face_ids] = err * MM

    def rms_mm(x: np.ndarray) -> float:
        return float(np.sqrt((x ** 2).mean()) * MM) if x.size else 0.0

    out = {
        "rmse_mm": rms_mm(err),
        "rmse_normal_mm": rms_mm(along),
        "rmse_tangent_mm": rms_mm(across),
    }
    if facing is not None:
        f = np.asarray(facing, bool)[face_ids]
        out.update({"rmse_facing_mm": rms_mm(err[f]), "rmse_not_facing_mm": rms_mm(err[~f]),
                    "facing_fraction": float(f.mean())})
    return out | folds | {
        "nc": float(nc.mean()),
        "flipped_faces": flipped,
        "min_angle_deg": float(np.min(angles)),
        "_err_mm": per_vertex,
    }


def facing_camera(case, tris: np.ndarray) -> np.ndarray:
    """(N,) bool: ground-truth vertices whose normal faces the case's hidden camera."""
    gt = case.verts.astype(np.float64)
    to_cam = (-case.R.T @ case.t) - gt
    cos = (vertex_normals(gt, tris) * to_cam).sum(1) / np.linalg.norm(to_cam, axis=1)
    return cos > FACING_COS
