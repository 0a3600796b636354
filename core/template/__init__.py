"""The rigged head template: data model, deformation, file format, default head.

Public API
----------
``Template`` (model.py)
    Numpy data of T = (V̄, F, R, J, θ̄, W, Δ) plus parts, mirror map, regions
    and landmark embedding; array names/shapes in ``core.template.model``.
    ``Template.to_arrays() -> (dict[str, np.ndarray], dict)``,
    ``Template.from_arrays(arrays, meta) -> Template`` (validates),
    ``Template.save(path)``, ``Template.to_bytes()``, ``Template.summary()``,
    ``num_verts``, ``num_joints``, ``num_controllers``, ``num_landmarks``,
    ``joint_index(name)``, ``ctrl_index(name)``.
``load(path) -> Template``
    Read and validate a ``.npz`` template; ``TemplateError`` names the problem.
``TemplateModel(template, device="cpu", dtype=torch.float32)`` (deform.py)
    Torch tensors of a template; ``model.deform(controllers, joint_params=None,
    vertex_offsets=None) -> DeformResult`` with ``verts (B,N,3)``,
    ``joints (B,J,4,4)``, ``rest_joints (B,J,4,4)``, ``parts (B,P,3)``.
``deform(model, controllers (B,R), joint_params (B,J,9)|None, vertex_offsets (B,N,3)|None)``
    V(r, θ, d) = LBS(V̄ + Δ(r), T(θ̄ + Φ(r) + θ), W) + d.
    ``joint_params`` = [axis-angle (3) | translation m (3) | log-scale (3)]
    per joint, in the joint's rest frame; zeros = rest pose.
``load_default() -> Template`` (build.py)
    The default MakeHuman head, built once and cached (``$LIKENESS_CACHE`` or
    ``~/.cache/likeness``).
``build_default(embedding_path=EMBEDDING_PATH) -> Template`` (build.py)
    Build without the cache (deterministic bytes).
``controller_mirror(template) -> (partner (R,) int64, flip (R,) bool)`` (symmetry.py)
    The mirror of each controller (-1: none); ``mirror_setting(r, partner, flip)``.
    ``template.mirror`` maps each vertex to its mirror (x -> -x).
``random_template(seed, ...) -> Template`` (synthetic.py)
    A small valid template for tests.
``padded_polygons(t) -> (P, 4)``, ``corner_uvs(t, polys) -> (P, 4, 2)`` (mesh_layout.py)
    The polygons as padded arrays for writers and losses (import from ``core.template.mesh_layout``).
"""

from .build import build_default, load_default
from .deform import JOINT_PARAM_DIM, DeformResult, TemplateModel, deform
from .model import FORMAT_VERSION, LMK_CONTOUR, LMK_SURFACE, LMK_UNUSED, Template, TemplateError, load
from .symmetry import controller_mirror, mirror_setting
from .synthetic import random_template

__all__ = [
    "FORMAT_VERSION", "JOINT_PARAM_DIM", "LMK_CONTOUR", "LMK_SURFACE", "LMK_UNUSED",
    "DeformResult", "Template", "TemplateError", "TemplateModel",
    "build_default", "controller_mirror", "deform", "load", "load_default",
    "mirror_setting", "random_template",
]
