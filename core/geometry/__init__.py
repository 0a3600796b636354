"""Mesh geometry on batched tensors: topology, normals, angles, curvature, Laplacians, the large-steps solve.

One concept per module; every op takes ``verts: (B, V, 3)`` float and
precomputed int64 topology, is vectorised, and works on any torch device.
"""

from .angles import corner_angles
from .areas import vertex_areas
from .curvature import edge_to_vertex_curvature
from .curves import CurveSet, curve_flow_features, mean_segment_length
from .dihedral import dihedral_angles
from .laplacian import Laplacian
from .normals import face_areas, face_cross, face_normals, vertex_normals
from .safe import normalize_clamped, safe_atan2, safe_divide, safe_norm, safe_normalize
from .topology import MeshTopology

__all__ = [
    "CurveSet",
    "Laplacian",
    "MeshTopology",
    "corner_angles",
    "curve_flow_features",
    "dihedral_angles",
    "edge_to_vertex_curvature",
    "face_areas",
    "face_cross",
    "face_normals",
    "mean_segment_length",
    "normalize_clamped",
    "safe_atan2",
    "safe_divide",
    "safe_norm",
    "safe_normalize",
    "vertex_areas",
    "vertex_normals",
]
