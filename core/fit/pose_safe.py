"""A fitted rest shape that its bones pose as cleanly as the template's.

The rig binding checks (``scripts/animation_check.py``) turn the jaw, neck and eyes
(``core.template.rig_poses.POSES``) and ask of each pose that a fitted head stretch its worst
edge at most 1.5 times as far as the template does and turn over no more faces. The skin weights
are the template's (or an artist's): where they step across a short edge, a fit that shortened
that edge stretches it further when the bone turns. ``rig_ready.relax_fine_edges`` restores the
default head's fine edges at the lids and lips by their place; an artist's rig steps its weights
elsewhere (a Rigify head's weights shared half and half between the lid and brow bones six rings
from the lid line, where the fit squeezes 2 mm edges to 0.9 mm and the eye turns stretch them
2.3-2.9 times the template's worst).

``keep_safe_under_bone_poses`` finds those places by posing: each bone pose the rig can make is
applied to the template and to the fitted head at rest (the fitted head's own rest skeleton).
Where a pose comes near failing the check (an edge past ACT_SHARE of the template's worst stretch
in that pose, or more faces turned over than the template's), every edge past STRETCH_SHARE and
every face turned over that the template's pose does not turn seeds a move of the rest shape
(within FREE_RINGS rings of them, Adam on hinge losses with a pull toward the fit): the edge is
lengthened at rest, the face tilted, until the pose is within those caps, no rest edge shortened
below REST_SHRINK_MIN of its length. A fit that poses cleanly is returned as it is, bit for bit.
"""

from __future__ import annotations

import numpy as np
import torch

from core.geometry.normals import face_cross
from core.template.rig_poses import bone_poses, pose_transforms, skin_blend
from core.template.rig_ready import ring_distance

from .optim import Adam

# A head whose poses stretch an edge past ACT_SHARE of the template's worst stretch in that pose
# (the check allows 1.5), or turn over more faces than the template's, is moved until no edge
# stretches past STRETCH_SHARE of it and a face the template's pose leaves facing the same way keeps
# at least TURN_COS_MIN of its rest normal.
ACT_SHARE = 1.4
STRETCH_SHARE = 1.2
TURN_COS_MIN = 0.05
# A pose that barely stretches the template (a rigid turn) is held to this stretch (float noise).
STRETCH_FLOOR = 1e-3
# Vertices within FREE_RINGS edge rings of a failing edge or face may move; a move of 1 mm costs
# PULL against a hinge of relative stretch 1; a rest face may turn at most REST_TURN_COS_MIN
# (cosine) from where the fit put it.
FREE_RINGS = 3
PULL = 1e-3
REST_TURN_COS_MIN = 0.7
# No rest edge is shortened below REST_SHRINK_MIN of its length as the fit left it: a squeezed
# fine edge at a mouth corner makes the expression keys carried onto the head stretch it (jawOpen
# 2.8 against the template's 1.47 where a move squeezed a 0.50 mm edge to 0.21 mm).
REST_SHRINK_MIN = 0.8
STEPS = 150
LR = 4e-5  # metres a step at the start, annealed to a tenth
DTYPE = torch.float32
CHECK_EVERY = 10  # steps between tests of whether every cap is met (this runs on the CPU, after the fit)


def pose_edges_tris(template) -> tuple[np.ndarray, np.ndarray]:
    """((E, 2) edges, (T, 3) triangles) a posed mesh is measured on: every polygon's sides and, in a
    quad, both diagonals and the four triangles of its two triangulations (a viewer may split a
    quad either way)."""
    start, pv = np.asarray(template.poly_start), np.asarray(template.poly_verts)
    sizes = np.diff(start)
    tris = [np.asarray(template.tris)]
    edges = [np.sort(np.asarray(template.tris)[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), 1)]
    quads = pv[start[:-1][sizes == 4][:, None] + np.arange(4)]
    if len(quads):
        a, b, c, d = quads.T
        tris += [np.stack([a, b, d], 1), np.stack([b, c, d], 1)]
        edges += [np.sort(np.stack([b, d], 1), 1), np.sort(np.stack([a, c], 1), 1)]
    return np.unique(np.concatenate(edges), axis=0), np.unique(np.concatenate(tris), axis=0)


def _cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1)).clamp_min(1e-30)


def pose_figures(template, verts: np.ndarray, joint_rest: np.ndarray, edges=None, tris=None) -> dict:
    """{pose: {"max_edge_stretch", "flipped_faces"}} of the rest head ``verts`` (N, 3) on its rest
    skeleton ``joint_rest`` (J, 4, 4) under each bone pose of ``bone_poses``: the figures the rig
    binding checks read, on the template's own polygons."""
    if edges is None or tris is None:
        edges, tris = pose_edges_tris(template)
    poses = bone_poses(template)
    posed = _Posed(template, verts, joint_rest, poses)
    with torch.no_grad():
        stretch, cos, _ = posed.figures(posed.rest, torch.as_tensor(edges), torch.as_tensor(tris))
    return {name: {"max_edge_stretch": float(stretch[k].max()), "flipped_faces": int((cos[k] < 0).sum())}
            for k, (name, *_) in enumerate(poses)}


def keep_safe_under_bone_poses(template, verts: np.ndarray, joint_rest: np.ndarray) -> tuple[np.ndarray, dict]:
    """verts: (N, 3) a fitted head at rest; joint_rest: (J, 4, 4) its rest skeleton (the template's
    bone frames at the fitted heads). Returns the head moved where its bone poses stretch or turn
    over more than the template's (module doc), and a report: the worst stretch of any pose as a
    share of the template's in that pose and the most faces a pose turns over beyond the template's,
    before and after, and the largest move (mm)."""
    poses = bone_poses(template)
    if not poses:
        return verts, {"poses": 0, "moved_mm": 0.0}
    edges, tris = pose_edges_tris(template)
    te, tt = torch.as_tensor(edges), torch.as_tensor(tris)
    ref = _Posed(template, template.verts, template.joint_rest, poses)
    fit = _Posed(template, verts, joint_rest, poses)
    with torch.no_grad():
        ref_stretch, ref_cos, _ = ref.figures(ref.rest, te, tt)
        cap = (STRETCH_SHARE * ref_stretch.amax(1, keepdim=True)).clamp_min(STRETCH_FLOOR)  # (P, 1)
        keep_facing = ref_cos >= 0  # (P, T): faces the template's pose leaves facing the same way
        stretch, cos, _ = fit.figures(fit.rest, te, tt)
    before = _summary(stretch, cos, ref_stretch, ref_cos)
    # A head is moved only where a pose comes near failing the check: some edge past ACT_SHARE of
    # the template's worst, or more faces turned over than the template's pose turns. Then every
    # edge past the cap and every face turned over that the template's pose leaves facing the same
    # way (TURN_COS_MIN only guides the moves) seeds the moves.
    near = ((stretch > cap * ACT_SHARE / STRETCH_SHARE).any(1)
            | ((cos < 0).sum(1) > (ref_cos < 0).sum(1)))  # (P,)
    if not near.any():
        return verts, {"poses": len(poses), "moved_mm": 0.0, "before": before, "after": before}
    bad_e = (stretch > cap).any(0).numpy()
    bad_t = ((cos < 0) & keep_facing).any(0).numpy()
    seeds = np.unique(np.concatenate([edges[bad_e].reshape(-1), tris[bad_t].reshape(-1)]))
    free = torch.as_tensor(np.flatnonzero(ring_distance(template, seeds, FREE_RINGS) >= 0))
    touch = torch.zeros(len(fit.rest), dtype=torch.bool)
    touch[free] = True
    on_e, on_t = touch[te].any(1), touch[tt].any(1)  # only what touches a free vertex can change
    # The optimisation sees only the vertices of those edges and faces, renumbered.
    sub = torch.unique(torch.cat([te[on_e].reshape(-1), tt[on_t].reshape(-1)]))
    local = torch.full((len(fit.rest),), -1, dtype=torch.long)
    local[sub] = torch.arange(len(sub))
    part = fit.restricted(sub)
    sub_e, sub_t, sub_free, sub_keep = local[te[on_e]], local[tt[on_t]], local[free], keep_facing[:, on_t]
    rest_n0 = face_cross(part.rest[None], sub_t)[0]
    rest_len0 = (part.rest[sub_e[:, 0]] - part.rest[sub_e[:, 1]]).norm(dim=-1).clamp_min(1e-12)
    move = torch.zeros(len(free), 3, dtype=DTYPE, requires_grad=True)
    opt = Adam([move], lr=LR)
    pull = PULL / 1e-6
    with torch.enable_grad():  # the result is assembled without gradients
        for step in range(STEPS):
            opt.param_groups[0]["lr"] = LR * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * step / STEPS)))
            x = part.rest.index_add(0, sub_free, move)
            stretch, cos, n = part.figures(x, sub_e, sub_t)
            over = (stretch - cap).clamp_min(0) / cap
            turn = (TURN_COS_MIN - cos).clamp_min(0) * sub_keep
            rest_turn = (REST_TURN_COS_MIN - _cos(n, rest_n0)).clamp_min(0)
            shrink = (REST_SHRINK_MIN - (x[sub_e[:, 0]] - x[sub_e[:, 1]]).norm(dim=-1) / rest_len0).clamp_min(0)
            loss = ((over ** 2).sum() + (turn ** 2).sum() + (rest_turn ** 2).sum() + (shrink ** 2).sum()
                    + pull * (move ** 2).sum())
            if step % CHECK_EVERY == 0 and step and not (over.max() > 0 or turn.max() > 0):
                break  # every pose is within its caps: the least move that gets there
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        out = fit.rest.index_add(0, free, move)
        after = _summary(*fit.figures(out, te, tt)[:2], ref_stretch, ref_cos)
        moved = float((out - fit.rest).norm(dim=1).max() * 1e3)
    report = {"poses": len(poses), "moved_mm": moved, "free_vertices": int(len(free)), "before": before,
              "after": after}
    return out.numpy().astype(np.asarray(verts).dtype), report


class _Posed:
    """A rest head and its bone poses' skinning; ``figures`` of a rest shape ``x`` (N, 3) on the same
    skeleton: per pose each edge's |l_posed / l_rest - 1| and the cosine between each face's rest
    and posed normals."""

    def __init__(self, template, verts, joint_rest, poses):
        rel = np.stack([pose_transforms(template, joint_rest, turns, held) for _, turns, held in poses])
        self.blend = torch.as_tensor(skin_blend(template, rel), dtype=DTYPE)  # (P, N, 3, 4)
        self.rest = torch.as_tensor(np.asarray(verts), dtype=DTYPE)

    def restricted(self, ids: torch.Tensor) -> "_Posed":
        """The same on the vertices ``ids`` alone (edges and faces then number them 0..len(ids)-1)."""
        out = object.__new__(_Posed)
        out.blend, out.rest = self.blend[:, ids], self.rest[ids]
        return out

    def figures(self, x, e, t) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(stretch (P, E), cos (P, T), rest normals (T, 3)) of the rest shape x."""
        p = (self.blend[..., :3] @ x[None, ..., None])[..., 0] + self.blend[..., 3]
        lr = (x[e[:, 0]] - x[e[:, 1]]).norm(dim=-1).clamp_min(1e-12)
        stretch = ((p[:, e[:, 0]] - p[:, e[:, 1]]).norm(dim=-1) / lr - 1).abs()
        n = face_cross(x[None], t)[0]
        return stretch, _cos(n[None], face_cross(p, t)), n


def _summary(stretch, cos, ref_stretch, ref_cos) -> dict:
    """{"stretch_ratio_max", "extra_flipped_faces_max"}: the fit's figures against the template's,
    the worst pose of each."""
    ratio = stretch.amax(1) / ref_stretch.amax(1).clamp_min(1e-9)
    extra = (cos < 0).sum(1) - (ref_cos < 0).sum(1)
    return {"stretch_ratio_max": float(ratio.max()), "extra_flipped_faces_max": int(extra.max())}
