"""The fitting losses of the head-modelling paper (§4.2) plus Laplacian and symmetry terms.

One term per module; each is a plain function returning a scalar tensor, with
a per-element variant for masking or inspection. Inputs are tensors and
precomputed topology (``core.geometry``); no module here knows the template.

=====================  ==========================================  ================
term                   value (means replace the paper's sums)      units
=====================  ==========================================  ================
normal_consistency     sum_p m_p |N_p - N^_p|_1 / sum_p m_p        dimensionless
landmark               corner MSE + one-sided contour Chamfer      (1 / scale)^2
evgcc                  mean_i |c_i^s - c_i^t|, eq. 2               radians
conformal              mean of the k largest corner-angle errors   radians
face_flip              mean of the k largest |n_s - n_t|           dimensionless
curve_flow             mean_i |f_i^s - f_i^t|, eqs. 4-5            radians / seg.
displacement           mean_i |dv_i|                               mesh units
laplacian_energy       mean_i |L(V)_i - L(V_rest)_i|^2             mesh units^2
symmetry               mean_i |v_i - R v_mirror(i)|^2              mesh units^2
=====================  ==========================================  ================
"""

from .conformal import conformal_loss, conformal_per_corner
from .curve_flow import curve_flow_loss, curve_flow_per_feature
from .displacement import displacement_loss, displacement_per_vertex
from .evgcc import edge_importance, evgcc_loss, evgcc_per_vertex
from .face_flip import face_flip_loss, face_flip_per_face
from .landmarks import LandmarkLayout, interocular_distance, landmark_loss, landmark_terms
from .laplacian_energy import laplacian_energy, laplacian_energy_per_vertex
from .normal_consistency import normal_consistency_loss, normal_consistency_map
from .symmetry import symmetry_loss, symmetry_per_vertex

__all__ = [
    "LandmarkLayout",
    "conformal_loss",
    "conformal_per_corner",
    "curve_flow_loss",
    "curve_flow_per_feature",
    "displacement_loss",
    "displacement_per_vertex",
    "edge_importance",
    "evgcc_loss",
    "evgcc_per_vertex",
    "face_flip_loss",
    "face_flip_per_face",
    "interocular_distance",
    "landmark_loss",
    "landmark_terms",
    "laplacian_energy",
    "laplacian_energy_per_vertex",
    "normal_consistency_loss",
    "normal_consistency_map",
    "symmetry_loss",
    "symmetry_per_vertex",
]
