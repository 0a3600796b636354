"""Turn fitted variables into a rig-ready result.

- ``verts``: the fitted, posed mesh (what the photo shows).
- ``verts_neutral``: the identity with expression controllers at 0 and no
  head pose; vertex offsets are carried back through the inverse of each
  vertex's blended skinning rotation, so they stay where they were fitted.
  Fine edges at the lids and lips the fit squeezed are lengthened back and
  lips left parted are sealed (core/template/rig_ready.py, mouth.py), so the
  bones and keys pose it as they pose the template.
- ``joint_rest``: the re-fitted rest skeleton: joint heads moved by the
  controllers and the joint stage, bone orientations kept from the template
  (the joint stage's rotations and scales are baked into ``verts_neutral``),
  so the template's skin weights bind ``verts_neutral`` directly.
- ``expression_deltas``: per expression controller, the vertex deltas at its
  upper bound (the 52 shape keys of the GLB): the template's keys carried onto
  ``verts_neutral`` by deformation transfer, so each triangle turns and
  stretches as the template's does; softened where the transfer stretches
  an edge far past the template's, and the blinks closing the lids as the
  template's close.
- ``part_expression_deltas``: the same for the eyes, teeth and tongue
  (``parts_neutral``); eye, jaw and tongue shapes move them. The teeth are
  seated behind the closed lips and placed to show with the mouth open.
"""

from __future__ import annotations

import numpy as np
import torch

from core.geometry.deformation_transfer import transfer_deltas
from core.geometry.mesh_layout import triangle_edges
from core.geometry.polygon import distance_to_outline
from core.priors.landmarks import eye_corner_distance
from core.template import LMK_CONTOUR, LMK_SURFACE, LMK_UNUSED
from core.template.deform import controller_sides, expression_deltas
from core.template.mouth import jaw_joint, place_teeth, seal_neutral_lips, upper_lip_joints
from core.template.rig_ready import blink_like_template, relax_fine_edges, seat_eyeballs, soften_key

from .api import FitResult
from .observations import ViewObservation
from .pose_safe import keep_safe_under_bone_poses
from .variables import FitVariables


def landmark_error_iod(projected: np.ndarray, detected: np.ndarray, kind: np.ndarray, use: np.ndarray) -> float:
    """Mean landmark distance over the non-silhouette points, in units of the outer-eye-corner distance."""
    keep = use & (kind != LMK_CONTOUR) & (kind != LMK_UNUSED)
    iod = eye_corner_distance(detected)
    return float(np.linalg.norm(projected[keep] - detected[keep], axis=1).mean() / max(iod, 1e-9))


def heldout_landmark_error_iod(projected: np.ndarray, detected: np.ndarray, template, heldout: np.ndarray) -> dict:
    """How far the fitted head lands from the detected points the fit did not see, in units of the
    outer-eye-corner distance: "points", the mean distance of the held-out surface points (each
    names one point of the head); "oval", the mean distance of the held-out face-oval detections
    to the projected oval's polyline (the oval is a silhouette: a point slides along it).

    projected, detected: (L, 2) pixels; heldout: (L,) bool."""
    kind = np.asarray(template.lmk_kind)
    iod = max(eye_corner_distance(detected), 1e-9)
    points = heldout & (kind == LMK_SURFACE)
    point_err = np.linalg.norm(projected[points] - detected[points], axis=1)
    loop = np.asarray(template.lmk_subsets.get("face_oval", []), np.int64)
    oval = np.flatnonzero(heldout & (kind == LMK_CONTOUR))
    oval_err = np.zeros(0)
    if len(loop) >= 2 and len(oval):
        oval_err = distance_to_outline(detected[oval], projected[loop])
    mean = lambda x: float(x.mean() / iod) if len(x) else float("nan")  # noqa: E731
    return {"points": mean(point_err), "oval": mean(oval_err), "n_points": int(points.sum()), "n_oval": int(len(oval))}


@torch.no_grad()
def assemble_result(variables: FitVariables, objective, views: list[ViewObservation]) -> FitResult:
    model = variables.model
    t = model.template
    ctrl = variables.controllers()
    posed = model.deform(ctrl, variables.joint_params(), variables.vertex_offsets())
    offsets = variables.vertex_offsets()[0]

    ctrl_neutral = variables.controllers(expression_scale=0.0)
    joints_neutral = variables.joint_params(with_pose=False)
    neutral = model.deform(ctrl_neutral, joints_neutral)
    # Un-pose the offsets: blended skinning rotation of each vertex in the fitted pose.
    skin = posed.joints[0] @ torch.linalg.inv(posed.rest_joints[0])
    blend = (skin[model.skin_idx][..., :3, :3] * model.skin_w[..., None, None]).sum(1)  # (N, 3, 3)
    offsets_rest = torch.linalg.solve(blend, offsets[..., None])[..., 0]
    verts_neutral = neutral.verts[0] + offsets_rest
    # New rest skeleton: joint heads where the fitted identity puts them, bone
    # orientations as in the template, so poses act on the same axes.
    rest = neutral.rest_joints[0].clone()
    rest[:, :3, 3] = neutral.joints[0][:, :3, 3]
    # Rig-safe touches at rest: fine edges at the lids and lips the fit squeezed stretch when the
    # bones turn, so they are lengthened back (rig_ready.py); where the bones' poses would still
    # stretch or turn over the skin more than the template's (an artist's rig steps its weights
    # elsewhere), the rest shape is moved there (pose_safe.py); lips it left parted (a slightly open
    # mouth in the photo, a small face) meet as the template's do (mouth.py). The fitted pose
    # carries the moves.
    relaxed, fine_mm = relax_fine_edges(t, verts_neutral.cpu().numpy())
    relaxed, pose_report = keep_safe_under_bone_poses(t, relaxed, rest.cpu().numpy())
    touched = seal_neutral_lips(t, relaxed)
    touch = torch.as_tensor(touched, device=model.device, dtype=model.dtype) - verts_neutral
    verts_neutral = verts_neutral + touch
    posed_verts = posed.verts[0] + (blend @ touch[..., None])[..., 0]
    rest_np = verts_neutral.cpu().numpy()
    tails = torch.as_tensor(t.joint_tails, device=model.device, dtype=model.dtype)
    tail_basis = torch.as_tensor(t.ctrl_tail_basis.reshape(-1, 3 * t.num_joints), device=model.device,
                                 dtype=model.dtype)
    tails = tails + (controller_sides(ctrl_neutral) @ tail_basis).view(-1, 3)
    moved = rest @ torch.linalg.inv(neutral.rest_joints[0])
    tails = (moved[:, :3, :3] @ tails[..., None])[..., 0] + moved[:, :3, 3]
    # An eyeball the fitted skin leaves standing through it at an eye corner moves back, its bone
    # with it (rig_ready.py); the blinks below are judged on the eyes so seated.
    parts_rest, joint_moves, eyes_seated = seat_eyeballs(t, rest_np, neutral.parts[0].cpu().numpy())
    joint_moves = torch.as_tensor(joint_moves, device=model.device, dtype=model.dtype)
    rest[:, :3, 3] += joint_moves
    tails = tails + joint_moves
    joints_posed = posed.joints[0].clone()
    joints_posed[:, :3, 3] += (skin[:, :3, :3] @ joint_moves[..., None])[..., 0]

    expr_ids = variables.expr_ids
    n_expr = len(expr_ids)
    names = [str(n) for n in np.asarray(t.ctrl_names)[expr_ids.cpu().numpy()]]
    if n_expr:
        # The eyes, teeth and tongue ride their joints: their keys come from the model as fitted.
        _, part = expression_deltas(model, ctrl_neutral, expr_ids, joints_neutral)
        part_deltas = part.cpu().numpy().astype(np.float32)
        # The head's keys are the template's, carried onto this face as deformation gradients:
        # the template's deltas added to another face fold it (jawOpen: 44-91 flipped faces on
        # fitted heads against the template's 8).
        source = model.deform(model.default_controllers(), None, parts=False).verts[0]
        source_deltas, _ = expression_deltas(model, model.default_controllers(), expr_ids)
        source, source_deltas = source.cpu().numpy(), source_deltas.cpu().numpy()
        head_deltas = transfer_deltas(source, source_deltas, rest_np, t.tris).astype(np.float32)
        # A key the transfer stretches far past the template's is softened there, and a blink
        # closes the fitted lids as the template's close (rig_ready.py).
        edges = triangle_edges(np.asarray(t.tris))
        for k, name in enumerate(names):
            head_deltas[k] = soften_key(t, rest_np, head_deltas[k], source, source_deltas[k], edges)
            if name.startswith("eyeBlink"):
                head_deltas[k] = blink_like_template(t, source, source_deltas[k], rest_np, head_deltas[k],
                                                     parts_rest + part_deltas[k])
    else:
        head_deltas = np.zeros((0, t.num_verts, 3), np.float32)
        part_deltas = np.zeros((0, len(t.part_verts), 3), np.float32)

    # The teeth are rigid and follow only the controllers; the offsets may close the lips over
    # them, and fuller lips hide them with the mouth open. Seat them behind the lips at rest and
    # place them so that they show with the jaw open (mouth.py), then pose them by their joints.
    jaw = jaw_joint(t)
    opened = ([_jaw_turned(model, ctrl_neutral, joints_neutral, neutral, verts_neutral, JAW_CHECK_DEGREES, jaw,
                           upper_lip_joints(t, jaw))] if jaw is not None else [])
    if "jawOpen" in names:
        k = names.index("jawOpen")
        opened.append((rest_np + head_deltas[k], part_deltas[k]))
    placed, teeth = place_teeth(t, rest_np, parts_rest, opened)
    parts_neutral = torch.as_tensor(placed, device=model.device, dtype=model.dtype)
    seat = parts_neutral - neutral.parts[0]
    parts_posed = posed.parts[0] + (skin[model.part_joint][:, :3, :3] @ seat[..., None])[..., 0]

    K, R, tr = variables.cameras()
    pts = objective.landmark_points(posed.verts)
    uv, _ = objective.cameras(variables).project(pts[None].expand(len(views), -1, -1))
    uv = uv.cpu().numpy()
    errors = [landmark_error_iod(uv[i], v.landmarks, np.asarray(t.lmk_kind), v.landmark_weight > 0)
              for i, v in enumerate(views)]
    heldout = [heldout_landmark_error_iod(uv[i], v.landmarks, t, v.landmark_heldout)
               for i, v in enumerate(views) if v.landmark_heldout is not None]

    f32 = lambda x: x.detach().cpu().numpy().astype(np.float32)  # noqa: E731
    arrays = {
        "verts": f32(posed_verts),
        "verts_neutral": f32(verts_neutral),
        "parts": f32(parts_posed),
        "parts_neutral": f32(parts_neutral),
        "joint_rest": f32(rest),
        "joint_tails": f32(tails),
        "joint_posed": f32(joints_posed),
        "controllers": f32(ctrl[0]),
        "joint_params": f32(variables.joints),
        "pose": f32(variables.pose),
        "offsets": f32(offsets),
        "expression_deltas": head_deltas,
        "part_expression_deltas": part_deltas,
        "K": f32(K),
        "R": f32(R),
        "t": f32(tr),
        "landmarks_projected": uv.astype(np.float32),
    }
    meta = {
        "landmark_error_iod": float(np.mean(errors)),
        **({"heldout_landmark_error_iod": {
            "points": float(np.mean([h["points"] for h in heldout])),
            "oval": float(np.mean([h["oval"] for h in heldout])),
            "per_view": heldout}} if heldout else {}),
        "teeth_seated_mm": teeth["seated_mm"],
        "rig_ready": {"fine_edges_moved_mm": fine_mm,
                      "bone_poses": pose_report,
                      "lips_sealed_mm": float(np.abs(touched - relaxed).max() * 1e3),
                      "teeth_closed_in_mm": teeth["closed_in_mm"],
                      "eyes_seated_mm": eyes_seated,
                      "front_teeth_seen_open": teeth["front_teeth_seen"]},
        "landmark_error_iod_per_view": errors,
        "views": [{"name": v.name, "width": v.width, "height": v.height,
                   "focal_px": float(K[i][0, 0]), "focal_35mm": _focal_35mm(float(K[i][0, 0]), v.width, v.height),
                   "focal_known": v.focal_px is not None,
                   "focal_source": v.focal_source or ("estimated" if v.focal_px is None else "given"),
                   "cues": v.cue_source}
                  for i, v in enumerate(views)],
        "ctrl_names": list(t.ctrl_names),
        "expression_names": [t.ctrl_names[i] for i in expr_ids.tolist()],
        "joint_names": list(t.joint_names),
        "pose_joint": t.joint_names[variables.pose_joint],
    }
    return FitResult(arrays, meta)


# The jaw bone's turn (degrees) at which the teeth must show (the rig binding checks' jaw_25).
JAW_CHECK_DEGREES = 25.0


def _jaw_turned(model, ctrl, joints, neutral, verts: torch.Tensor, degrees: float, jaw: str = "jaw",
                held=()) -> tuple[np.ndarray, np.ndarray]:
    """The fitted head ``verts`` (N, 3) at rest, its ``jaw`` bone turned ``degrees`` about its own x
    axis, the joints ``held`` where they rest (an upper lip hung under the jaw,
    ``mouth.upper_lip_joints``): (head (N, 3), what the turn adds to the parts (P, 3)). ctrl, joints:
    the neutral controllers and joint parameters ``neutral`` (their deform) was made with."""
    t = model.template
    turned = joints.clone()
    turned[0, t.joint_index(jaw), 0] += float(np.radians(degrees))
    moved = model.deform(ctrl, turned)
    rel = moved.joints[0] @ torch.linalg.inv(neutral.joints[0])
    held_ids = torch.as_tensor([t.joint_index(name) for name in held], dtype=torch.long, device=rel.device)
    rel[held_ids] = torch.eye(4, dtype=rel.dtype, device=rel.device)
    rel = rel[:, :3, :].reshape(-1, 12)
    blend = (model.skin_dense @ rel).view(-1, 3, 4)
    head = (blend[..., :3] @ verts[..., None])[..., 0] + blend[..., 3]
    parts = moved.parts[0] - neutral.parts[0]
    parts[torch.isin(model.part_joint, held_ids)] = 0.0
    return head.cpu().numpy(), parts.cpu().numpy()


def _focal_35mm(focal_px: float, width: int, height: int) -> float:
    """A focal length in pixels as the 35 mm-equivalent in mm (diagonals matched)."""
    from core.priors.image import FILM_35MM_DIAGONAL_MM

    return round(focal_px * FILM_35MM_DIAGONAL_MM / float(np.hypot(width, height)), 2)
