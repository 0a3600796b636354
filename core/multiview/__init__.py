"""Several photos of one person: correspondences and bundle adjustment.

The fit runs them as a stage of its schedule (``core/fit/bundle_adjust.py``);
this package does not import ``core.fit``.

Public API
----------
``ViewCorrespondences`` (correspondences.py)
    Per view: template-surface points (``vert_ids (C,3)``, ``bary (C,3)``),
    observed ``pixels (C,2)``, ``weight (C,)``, ``track_ids (C,)``, optional
    camera-frame ``points_cam (C,3)``. ``from_landmarks(template, width, height,
    landmarks (L,2), weight (L,), name="view")``,
    ``from_vertex_targets(width, height, pixels (N,2), valid (N,), points_cam=None)``.
``topology_ba(verts (N,3), tris (T,3), corrs, cameras, options=BAOptions(), device="cpu") -> BAResult``
    Cameras and vertices in one robust objective with a Laplacian energy and
    outlier rejection (topology_ba.py).
``colmap_then_largesteps(verts, tris, corrs, cameras, options=None, device="cpu") -> BAResult``
    Baseline: COLMAP/Ceres point BA (pycolmap), then a large-steps template fit.
``rotation_errors_deg(R_est (V,3,3), R_gt (V,3,3), align_R (3,3)) -> (V,)`` (metrics.py)
"""

from core.geometry.similarity import similarity_transform

from .colmap_ba import colmap_then_largesteps
from .correspondences import ViewCorrespondences, from_landmarks, from_vertex_targets
from .metrics import rotation_errors_deg
from .topology_ba import BAOptions, BAResult, topology_ba

__all__ = [
    "BAOptions", "BAResult", "ViewCorrespondences", "colmap_then_largesteps",
    "from_landmarks", "from_vertex_targets", "rotation_errors_deg", "similarity_transform", "topology_ba",
]
