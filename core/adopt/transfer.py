"""The default head's rig carried onto an artist's head through a registration.

Every per-vertex quantity of the default head (skin weights, the 149 shape
controllers' and 52 expressions' deltas, region membership) is read at each
artist vertex's closest facing point on the registered default head
(barycentric interpolation). Curves (eye and lip rings, lid lines, corners)
go vertex by vertex, in order, to the artist vertex nearest each registered
curve vertex. Landmarks go from the registered default surface to the
artist's closest facing surface point. Joints and the rigid parts (eyes,
teeth, gums, tongue) move with the registration's displacement around them.
The artist's own shape keys become extra controllers (a key with an ARKit
expression's name replaces ours). The mirror map pairs vertices whose
mirror images are each other's nearest vertex; the rest have none (-1).

``transfer`` returns the template and a confidence per transferred item.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from core.geometry.constants import MM
from core.geometry.mesh_layout import surface_points, triangle_edges, vertex_normals
from core.template import LMK_SURFACE, Template
from core.template.model import dense_skin_weights, validate

from .mesh import HeadMesh
from .register import FacingClosest, Registration

# Regions that are areas; the others are ordered curves (rings, lid lines, corners).
AREA_REGIONS = ("lips", "face_mask")
NEAR_MM = 2.0  # an artist vertex within this of the registered default head is "matched"
DISPLACEMENT_NEIGHBOURS = 30
MIRROR_TOL_EDGE = 0.5  # mirror partners lie within this many median edge lengths
TEAR_FACTOR = 1.5  # a carried key tears an edge it strains this many times more than the template's worst
TEAR_RINGS = 1


def _moved(points: np.ndarray, rest: np.ndarray, moved: np.ndarray, tree: cKDTree) -> np.ndarray:
    """``points`` displaced by the mean displacement of their nearest default vertices."""
    _, idx = tree.query(points, k=DISPLACEMENT_NEIGHBOURS)
    return points + (moved[idx] - rest[idx]).mean(1)


def mirror_pairs(verts: np.ndarray, edge_mm: float) -> np.ndarray:
    """(N,) int64 partner of each vertex under x -> -x (itself on the midline, -1 for none)."""
    tree = cKDTree(verts)
    dist, nearest = tree.query(verts * np.array([-1.0, 1.0, 1.0]))
    ok = dist <= MIRROR_TOL_EDGE * edge_mm / MM
    mutual = ok & (nearest[nearest] == np.arange(len(verts)))
    return np.where(mutual, nearest, -1).astype(np.int64)


def mend_tears(basis: np.ndarray, default: Template, verts: np.ndarray, tris: np.ndarray) -> dict:
    """Re-solve carried key deltas where they would tear the artist's mesh; in place.

    A key read vertex by vertex tears where the artist's surface joins what the default head
    keeps apart (lips fused by a remesh: one vertex reads the upper lip's jawOpen, its
    neighbour the lower lip's). The template's own key strains no edge more than G (the
    largest |delta_a - delta_b| / |a - b| over its edges); on the artist's mesh the vertices
    of edges strained past ``TEAR_FACTOR`` G, and a ring around them, are re-solved as a
    harmonic fill from the rest. basis: (R, 2, N, 3). Returns {controller name: vertices re-solved}."""
    import scipy.sparse as sp
    import scipy.sparse.linalg as spla

    from .register import uniform_laplacian

    de = triangle_edges(default.tris)
    dv = default.verts.astype(np.float64)
    d_len = np.maximum(np.linalg.norm(dv[de[:, 0]] - dv[de[:, 1]], axis=1), 1e-9)
    ae = triangle_edges(tris)
    a_len = np.maximum(np.linalg.norm(verts[ae[:, 0]] - verts[ae[:, 1]], axis=1), 1e-9)
    n = len(verts)
    lap = uniform_laplacian(tris, n).tocsr()
    adj = sp.coo_matrix((np.ones(2 * len(ae)), (np.r_[ae[:, 0], ae[:, 1]], np.r_[ae[:, 1], ae[:, 0]])),
                        shape=(n, n)).tocsr()
    mended = {}
    for r in range(basis.shape[0]):
        for side in range(2):
            d = basis[r, side]
            g = (np.linalg.norm(default.ctrl_basis[r, side][de[:, 0]] - default.ctrl_basis[r, side][de[:, 1]], axis=1)
                 / d_len).max()
            if g <= 0:
                continue
            strain = np.linalg.norm(d[ae[:, 0]] - d[ae[:, 1]], axis=1) / a_len
            bad = ae[strain > TEAR_FACTOR * g]
            if not len(bad):
                continue
            free = np.zeros(n, bool)
            free[bad.reshape(-1)] = True
            for _ in range(TEAR_RINGS):
                free |= (adj @ free.astype(np.float64)) > 0
            f, c = np.flatnonzero(free), np.flatnonzero(~free)
            if not len(c):
                continue
            a_ff = lap[f][:, f].tocsc()
            rhs = -(lap[f][:, c] @ d[c])
            solve = spla.factorized(a_ff + 1e-9 * sp.eye(len(f), format="csc"))
            d[f] = np.stack([solve(rhs[:, k]) for k in range(3)], axis=1)
            mended[default.ctrl_names[r]] = mended.get(default.ctrl_names[r], 0) + int(len(f))
    return mended


# A bone named like a default joint wins over the nearest bone when its head is at most this much
# (metres) further from the default joint's.
SAME_NAME_SLACK = 0.005
# An artist's bone stands for a default joint (``default_joints`` in the confidence) within this
# distance (metres) of it, after registration.
STAND_IN_REACH = 0.01


def artist_joints(arm: dict, reg: Registration, default_heads: np.ndarray, joint_basis: np.ndarray,
                  tail_basis: np.ndarray, default: Template, k: int):
    """The artist's bones as the template's joints, in the canonical frame, with their own weights.

    Each bone takes the shape controllers' joint offsets of the registered default joint nearest
    its head; the eyes, teeth and tongue follow the bone nearest their default joint. Returns
    (names, parents, rest, tails, skin_idx, skin_w, joint_basis, tail_basis, part_joint, confidence)."""
    from .mesh import HeadImportError

    names, parents = list(arm["names"]), np.asarray(arm["parents"], np.int64)
    if (parents == -1).sum() != 1:
        raise HeadImportError(f"the armature must have exactly one root bone, it has {int((parents == -1).sum())}")
    s, R, t = reg.to_canonical
    rest = np.asarray(arm["rest"], np.float64).copy()
    u, _, vt = np.linalg.svd(rest[:, :3, :3])  # the armature object's scale stays out of the frames
    rot = u @ vt
    rot[np.linalg.det(rot) < 0] *= np.array([1.0, 1.0, -1.0])
    rest[:, :3, :3] = np.asarray(R) @ rot
    rest[:, :3, 3] = s * rest[:, :3, 3] @ np.asarray(R).T + t
    rest[:, 3] = np.array([0.0, 0.0, 0.0, 1.0])
    tails = s * np.asarray(arm["tails"], np.float64) @ np.asarray(R).T + t
    w = np.asarray(arm["weights"], np.float64)
    kk = min(k, len(names))
    skin_idx = np.argsort(-w, axis=1)[:, :kk]
    skin_w = np.take_along_axis(w, skin_idx, axis=1)
    sums = skin_w.sum(1, keepdims=True)
    unweighted = sums[:, 0] <= 0
    root = int(np.flatnonzero(parents == -1)[0])
    skin_idx[unweighted], skin_w[unweighted] = root, 0.0
    skin_w[unweighted, 0], sums[unweighted] = 1.0, 1.0
    skin_w = skin_w / sums
    _, near = cKDTree(default_heads).query(rest[:, :3, 3])
    dist, bone_of = cKDTree(rest[:, :3, 3]).query(default_heads)
    # Where the artist's rig has a bone of the default joint's name close by (bones often share a
    # head: the eye and the lid muscles start at the eye's centre), that bone is the one.
    index = {name: i for i, name in enumerate(names)}
    for j, name in enumerate(default.joint_names):
        i = index.get(name)
        if i is not None and np.linalg.norm(rest[i, :3, 3] - default_heads[j]) <= dist[j] + SAME_NAME_SLACK:
            bone_of[j] = i
    part_joint = bone_of[default.part_joint]
    follows = {default.part_names[p]: names[int(part_joint[np.flatnonzero(default.part_vert_part == p)[0]])]
               for p in range(len(default.part_names)) if (default.part_vert_part == p).any()}
    # The artist's bone standing for each default joint it lies close to (the rig binding check
    # poses "jaw", "eye.L", ... through it); a default joint with no bone near has none.
    stands = {name: names[int(bone_of[j])] for j, name in enumerate(default.joint_names)
              if np.linalg.norm(rest[bone_of[j], :3, 3] - default_heads[j]) <= STAND_IN_REACH}
    conf = {"bones": len(names), "unweighted_vertices": int(unweighted.sum()), "parts_follow": follows,
            "default_joints": stands}
    return (names, parents, rest, tails, skin_idx, skin_w, joint_basis[:, :, near].copy(),
            tail_basis[:, :, near].copy(), part_joint.astype(np.int64), conf)


def transfer(default: Template, head: HeadMesh, reg: Registration) -> tuple[Template, dict]:
    """(template, confidence) for the artist's head; see the module docstring."""
    n = len(reg.verts)
    tris, tri_poly = head.tris, head.tri_poly
    dt, ct, cb = default.tris, reg.corr_tri, reg.corr_bary
    matched = reg.corr_dist <= NEAR_MM / MM

    # skin weights: dense, read, the strongest K kept
    k = default.skin_idx.shape[1]
    w = surface_points(dense_skin_weights(default), dt, ct, cb)
    skin_idx = np.argsort(-w, axis=1)[:, :k]
    skin_w = np.take_along_axis(w, skin_idx, axis=1)
    skin_w = skin_w / np.maximum(skin_w.sum(1, keepdims=True), 1e-12)

    # joints and parts follow the displacement around them
    rest = default.verts.astype(np.float64)
    tree = cKDTree(rest)
    joint_rest = default.joint_rest.astype(np.float64).copy()
    heads = joint_rest[:, :3, 3]
    moved_heads = _moved(heads, rest, reg.default_verts, tree)
    joint_rest[:, :3, 3] = moved_heads
    joint_tails = default.joint_tails + (moved_heads - heads)
    part_verts = default.part_verts.astype(np.float64).copy()
    for p in range(len(default.part_names)):
        sel = default.part_vert_part == p
        if sel.any():
            centre = part_verts[sel].mean(0, keepdims=True)
            part_verts[sel] += _moved(centre, rest, reg.default_verts, tree) - centre

    # controllers: ours read at the artist's vertices (no edge strained more than the template's own
    # key strains one), then the artist's own keys
    basis = np.stack([surface_points(default.ctrl_basis[r].transpose(1, 0, 2), dt, ct, cb).transpose(1, 0, 2)
                      for r in range(default.num_controllers)])
    torn = mend_tears(basis, default, reg.verts, tris)
    basis = basis.astype(np.float32)
    names = list(default.ctrl_names)
    bounds, defaults = default.ctrl_bounds.copy(), default.ctrl_default.copy()
    is_expr = default.ctrl_is_expression.copy()
    joint_basis, tail_basis = default.ctrl_joint_basis.copy(), default.ctrl_tail_basis.copy()
    part_basis = default.part_ctrl_basis.copy()
    s, R, _ = reg.to_canonical
    extra = []
    for key, delta in head.shape_keys.items():
        d = (s * np.asarray(delta, np.float64) @ R.T).astype(np.float32)
        if key in names:  # the artist's own key of the same name wins
            i = names.index(key)
            basis[i] = np.stack([d, -d])
            joint_basis[i] = 0.0
            tail_basis[i] = 0.0
            part_basis[i] = 0.0
            continue
        extra.append((key, d))
    if extra:
        names += [key for key, _ in extra]
        basis = np.concatenate([basis, np.stack([np.stack([d, -d]) for _, d in extra])])
        bounds = np.concatenate([bounds, np.tile(np.array([[0.0, 1.0]], np.float32), (len(extra), 1))])
        defaults = np.concatenate([defaults, np.zeros(len(extra), np.float32)])
        is_expr = np.concatenate([is_expr, np.zeros(len(extra), bool)])
        zj = np.zeros((len(extra), 2, default.num_joints, 3), np.float32)
        joint_basis, tail_basis = np.concatenate([joint_basis, zj]), np.concatenate([tail_basis, zj])
        part_basis = np.concatenate([part_basis, np.zeros((len(extra), 2, len(part_verts), 3), np.float32)])

    # the artist's own armature, where the file brings one, replaces our joints and weights
    joint_names, joint_parents, part_joint = list(default.joint_names), default.joint_parents.copy(), \
        default.part_joint.copy()
    armature_conf = None
    if head.armature is not None:
        (joint_names, joint_parents, joint_rest, joint_tails, skin_idx, skin_w, joint_basis, tail_basis, part_joint,
         armature_conf) = artist_joints(head.armature, reg, moved_heads, joint_basis, tail_basis, default, k)

    # regions: areas by membership read at each vertex, curves vertex by vertex in order
    art_tree = cKDTree(reg.verts)
    regions, region_conf = {}, {}
    for name, ids in default.regions.items():
        if name in AREA_REGIONS:
            member = np.zeros(default.num_verts)
            member[ids] = 1.0
            out = np.flatnonzero(surface_points(member, dt, ct, cb) >= 0.5)
        else:
            _, near = art_tree.query(reg.default_verts[ids])
            _, first = np.unique(near, return_index=True)
            out = near[np.sort(first)]
        regions[name] = out.astype(np.int64)
        region_conf[name] = float(matched[out].mean()) if len(out) else 0.0

    # landmarks: from the registered default surface to the artist's
    points = surface_points(reg.default_verts, dt, default.lmk_tri, default.lmk_bary)
    normals = surface_points(vertex_normals(reg.default_verts, dt), dt, default.lmk_tri, default.lmk_bary)
    lmk_tri, lmk_bary, snapped, lmk_dist, _ = FacingClosest(reg.verts, tris).query(points, normals)
    lmk_bary = lmk_bary / lmk_bary.sum(1, keepdims=True)
    surface = (default.lmk_kind == LMK_SURFACE) & reg.found_ok
    agree = np.linalg.norm(snapped - reg.found, axis=1)[surface] * MM

    edges = np.linalg.norm(reg.verts[tris[:, [1, 2, 0]]] - reg.verts[tris], axis=2)
    mirror = mirror_pairs(reg.verts, float(np.median(edges)) * MM)

    conf = {
        "surface_matched": float(matched.mean()),
        "surface_median_mm": float(np.median(reg.corr_dist) * MM),
        "surface_p95_mm": float(np.quantile(reg.corr_dist, 0.95) * MM),
        "landmarks_vs_detector_median_mm": float(np.median(agree)),
        "landmarks_vs_detector_p90_mm": float(np.quantile(agree, 0.9)),
        "landmarks_off_surface_max_mm": float(lmk_dist.max() * MM),
        "regions": region_conf,
        "mirror_paired": float((mirror >= 0).mean()),
        "keys_mended": torn,
        "armature": armature_conf,
        "skin_weights": float(matched.mean()),
        "shape_keys_from_artist": [key for key in head.shape_keys],
    }
    s, R, t = reg.to_canonical
    info = {
        "source": f"imported: {head.source}",
        "adopted_from": dict(default.info),
        "to_canonical": {"scale": float(s), "rotation": np.asarray(R).tolist(), "translation": np.asarray(t).tolist()},
        "front_yaw": float(reg.front_yaw),
        "confidence": conf,
    }
    tpl = Template(
        verts=reg.verts.astype(np.float32), poly_verts=head.poly_verts, poly_start=head.poly_start,
        uvs=head.uvs.astype(np.float32), tris=tris, tri_poly=tri_poly,
        skin_idx=skin_idx.astype(np.int64), skin_w=skin_w.astype(np.float32),
        joint_names=joint_names, joint_parents=joint_parents,
        joint_rest=joint_rest.astype(np.float32), joint_tails=joint_tails.astype(np.float32),
        ctrl_names=names, ctrl_basis=basis, ctrl_joint_basis=joint_basis, ctrl_tail_basis=tail_basis,
        ctrl_bounds=bounds.astype(np.float32), ctrl_default=defaults.astype(np.float32),
        ctrl_is_expression=is_expr,
        part_names=list(default.part_names), part_verts=part_verts.astype(np.float32),
        part_poly_verts=default.part_poly_verts.copy(), part_poly_start=default.part_poly_start.copy(),
        part_uvs=default.part_uvs.copy(), part_vert_part=default.part_vert_part.copy(),
        part_joint=part_joint, part_ctrl_basis=part_basis.astype(np.float32),
        mirror=mirror, source_vertex_id=np.full(n, -1, np.int64), regions=regions,
        lmk_tri=lmk_tri.astype(np.int64), lmk_bary=lmk_bary.astype(np.float32),
        lmk_kind=default.lmk_kind.copy(), lmk_subsets={k2: v.copy() for k2, v in default.lmk_subsets.items()},
        info=info,
    )
    validate(tpl)
    return tpl, conf
