"""Score a head against a known head: similarity ICP, then surface distances over the face.

The result (any mesh whose face vertices are known, e.g. a fit in template
topology) is aligned to the true surface by a similarity ICP: each face
vertex of the result goes to its exact closest point on the true surface
(trimesh's point-triangle projection), the worst tenth of the pairs are
dropped (trimming is for the alignment only) and a linearised point-to-plane
similarity step is solved (``core.geometry.similarity.icp_similarity``). Then,
without trimming:

- true→result: from every vertex of the true surface's face region to the
  aligned result's surface (mean, median, p90; per region; front-facing
  against oblique);
- result→true: from every face vertex of the result to the true surface.

Beside it, the same measure by area (``area_mean_mm``): the alignment weighs
each result face vertex by its share of the surface, and the true→result
distances are averaged with each true vertex's area as its weight. A vertex
mean counts the surface where the mesh is dense: the template's face has 54 %
of its vertices around the eyes and mouth, and a head of another topology
(an artist's, a remesh) is aligned by wherever its own vertices crowd. The
area figure is the same whatever the two meshes' tessellations (tested), so
it is the one to compare heads of different topologies by.

Distances in millimetres. Scale, rotation and translation are absorbed by the
alignment: a head twice as large reads the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from core.geometry.constants import MM
from core.geometry.similarity import as_trimesh, closest_points, icp_similarity

# A true vertex "faces" the camera when the cosine between its normal and the
# direction to the camera reaches this; below it is oblique.
FRONT_FACING_COS = 0.75
# Face regions of the template by the controllers that move a vertex most: the
# controller-name prefixes of each region (MakeHuman's target groups).
REGION_PREFIXES = {
    "nose": ("nose-",),
    "cheeks": ("l-cheek-", "r-cheek-"),
    "forehead": ("forehead-", "eyebrows-"),
    "jaw": ("chin-",),
    "eyes": ("l-eye-", "r-eye-"),
    "mouth": ("mouth-",),
}


@dataclass
class SurfaceScore:
    """Distances in mm after the similarity ICP; ``regions``: region -> mean true→result."""

    mean_mm: float
    median_mm: float
    p90_mm: float
    result_to_true_mm: float
    front_mm: float
    oblique_mm: float
    regions: dict = field(default_factory=dict)
    scale: float = 1.0
    iterations: int = 0
    aligned: np.ndarray | None = None
    vertex_error_mm: np.ndarray | None = None
    area_mean_mm: float = float("nan")

    def summary(self) -> dict:
        return {"mean_mm": self.mean_mm, "median_mm": self.median_mm, "p90_mm": self.p90_mm,
                "result_to_true_mm": self.result_to_true_mm, "front_mm": self.front_mm,
                "oblique_mm": self.oblique_mm, "regions": self.regions, "scale": self.scale,
                "area_mean_mm": self.area_mean_mm}


def face_regions(template) -> np.ndarray:
    """(N,) int label per template vertex: index into ``list(REGION_PREFIXES)``, -1 outside
    the face mask or where no region's controllers move it. A face vertex belongs to the
    region whose shape controllers (summed |Δ| over both directions) move it most."""
    names = list(template.ctrl_names)
    basis = np.abs(np.asarray(template.ctrl_basis)).sum(axis=(1, 3))  # (R, N)
    strength = np.zeros((len(REGION_PREFIXES), template.num_verts))
    for r, prefixes in enumerate(REGION_PREFIXES.values()):
        ids = [i for i, n in enumerate(names) if n.startswith(prefixes) and not template.ctrl_is_expression[i]]
        if ids:
            strength[r] = basis[ids].sum(0)
    label = np.where(strength.max(0) > 1e-6, strength.argmax(0), -1)
    face = np.zeros(template.num_verts, bool)
    face[template.regions["face_mask"]] = True
    return np.where(face, label, -1)


def distances_to_surface(points: np.ndarray, verts: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """(n,) exact distances from points (n, 3) to the triangle mesh (verts, tris)."""
    return np.asarray(closest_points(as_trimesh(verts, tris), np.asarray(points, np.float64))[1])


def _vertex_areas(verts: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """(N,) each vertex's third of its triangles' areas (``core.geometry.vertex_areas``)."""
    import torch

    from core.geometry.areas import vertex_areas

    v = torch.as_tensor(np.asarray(verts, np.float64))[None]
    return vertex_areas(v, torch.as_tensor(np.asarray(tris, np.int64)), len(verts))[0].numpy()


def _surface_moments(verts: np.ndarray, tris: np.ndarray, region: np.ndarray) -> tuple[np.ndarray, float]:
    """(centroid (3,), RMS radius) of the surface of the triangles whose corners are all in ``region``
    (N,) bool, each triangle weighted by its area (its corners' mean standing for it); the region's
    vertices, equally weighted, where it has no whole triangle."""
    inside = tris[region[tris].all(1)]
    if not len(inside):
        pts = verts[region]
        return pts.mean(0), float(np.sqrt(((pts - pts.mean(0)) ** 2).sum(1).mean()))
    a, b, c = verts[inside[:, 0]], verts[inside[:, 1]], verts[inside[:, 2]]
    area = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
    w = area / max(area.sum(), 1e-30)
    centres = (a + b + c) / 3
    mean = (w[:, None] * centres).sum(0)
    return mean, float(np.sqrt((w * ((centres - mean) ** 2).sum(1)).sum()))


def score_surface(result_verts: np.ndarray, result_tris: np.ndarray, result_face: np.ndarray,
                  true_verts: np.ndarray, true_tris: np.ndarray, true_face: np.ndarray,
                  true_region: np.ndarray | None = None, camera_centre: np.ndarray | None = None,
                  region_names: tuple[str, ...] = tuple(REGION_PREFIXES)) -> SurfaceScore:
    """Align the result to the true surface and measure it (see the module docstring).

    result_verts: (N, 3) float metres; result_tris: (F, 3) int; result_face: (k,) vertex
    ids of the result's face. true_verts: (M, 3); true_tris: (T, 3); true_face: (M,) bool
    the scored face region of the true surface; true_region: (M,) int region label per
    true vertex (-1 none); camera_centre: (3,) for the front-facing / oblique split
    (without it the split is empty).
    """
    result_verts = np.asarray(result_verts, np.float64)
    true_verts = np.asarray(true_verts, np.float64)
    true_mesh = as_trimesh(true_verts, true_tris)
    # Start from matched centroids and sizes so the ICP's first closest points are sensible. The
    # moments are the surfaces' (area-weighted), not the vertices': a head meshed evenly and one
    # dense around the eyes and mouth have the same face but not the same vertex spread (an even
    # remesh of the default head read 0.73x its size and its ICP shrank it to 0.27x).
    tv = true_verts[np.asarray(true_face, bool)]
    is_result_face = np.zeros(len(result_verts), bool)
    is_result_face[result_face] = True
    c_result, r_result = _surface_moments(result_verts, np.asarray(result_tris), is_result_face)
    c_true, r_true = _surface_moments(true_verts, np.asarray(true_tris), np.asarray(true_face, bool))
    s0 = r_true / r_result
    placed = s0 * (result_verts - c_result) + c_true
    start = placed[result_face]
    s, R, t, iters = icp_similarity(start, true_mesh)
    s_total = s * s0
    aligned = s * placed @ R.T + t
    _, r2t, _ = closest_points(true_mesh, aligned[result_face])
    result_mesh = as_trimesh(aligned, result_tris)
    _, t2r, _ = closest_points(result_mesh, tv)
    t2r_mm = t2r * MM
    front = oblique = float("nan")
    if camera_centre is not None:
        normals = true_mesh.vertex_normals[np.asarray(true_face, bool)]
        to_cam = np.asarray(camera_centre, np.float64) - tv
        cos = (normals * to_cam).sum(1) / np.linalg.norm(to_cam, axis=1)
        is_front = cos >= FRONT_FACING_COS
        front = float(t2r_mm[is_front].mean()) if is_front.any() else float("nan")
        oblique = float(t2r_mm[~is_front].mean()) if (~is_front).any() else float("nan")
    regions = {}
    if true_region is not None:
        lab = np.asarray(true_region)[np.asarray(true_face, bool)]
        regions = {name: float(t2r_mm[lab == i].mean()) for i, name in enumerate(region_names) if (lab == i).any()}
    _, all_err, _ = closest_points(true_mesh, aligned)
    # By area: each result face vertex pulls on the alignment by its share of the surface, and
    # each true vertex counts by its own.
    s_a, R_a, t_a, _ = icp_similarity(start, true_mesh, weights=_vertex_areas(result_verts, result_tris)[result_face])
    aligned_a = s_a * placed @ R_a.T + t_a
    _, t2r_area, _ = closest_points(as_trimesh(aligned_a, result_tris), tv)
    true_area = _vertex_areas(true_verts, true_tris)[np.asarray(true_face, bool)]
    area_mean = float(true_area @ t2r_area / max(float(true_area.sum()), 1e-30) * MM)
    return SurfaceScore(float(t2r_mm.mean()), float(np.median(t2r_mm)), float(np.percentile(t2r_mm, 90)),
                        float(r2t.mean() * MM), front, oblique, regions, float(s_total), iters, aligned,
                        all_err * MM, area_mean)
