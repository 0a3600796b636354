"""The default head laid onto an artist's head: landmarks from renders, the rig, then every vertex.

1. **Landmarks on renders.** The artist's mesh is rendered grey (two-sided
   Lambert, the core's own rasteriser) from five directions around the front;
   MediaPipe FaceMesh finds the 478 points in each render and they are
   triangulated and snapped to the mesh (``core.geometry.embedding``). The
   front is looked for at -Y first, then +Y, +X and -X, so files exported
   with another forward axis still import.
2. **Similarity.** The default head's embedded points are aligned to the found
   ones (trimmed Umeyama), then the artist's face onto the default head's
   surface: a similarity ICP of the artist's vertices that lie within
   ``FRAME_NEAR_MM`` of the default head's face. The artist's mesh is then
   expressed in the default head's frame (metres, Z up, face toward -Y,
   symmetric about x = 0): the *canonical* frame, the one the fit and its
   symmetry term expect. What then remains between the found points and the
   default head's own as a whole (their median offset) is taken for the
   detector's offset on these renders, not for the person, and taken off: on a
   faceted or remeshed head the detector's points sit 1-4 mm off together.
3. **Rig.** The default head's 149 shape controllers are fitted to the
   artist's surface (both ways, point-to-plane on the closest facing points,
   refreshed as it moves) and to the found landmarks, whose weight falls over
   the fit so that the surface decides last.
4. **Every vertex.** A non-rigid ICP: the registered vertices solve a sparse
   least-squares problem of closest facing points on the artist's surface (and
   the artist's vertices on the registered surface), the landmarks held where
   the rig fit put them and a Laplacian stiffness toward the rig fit, both
   relaxed over the rounds. Vertices
   whose closest point is far or faces away (the mouth bag, the eye sockets
   of a head whose artist closed them) follow the stiffness alone.

What comes out: the artist's vertices in the canonical frame, the registered
default head, and per artist vertex its closest facing point on the registered
default head (triangle + barycentrics) with the distance, which
``core.adopt.transfer`` carries the rig's data through.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse as sp
import torch

from core.geometry.camera import Cameras
from core.geometry.constants import MM
from core.geometry.embedding import closest_points_on_triangles, derive_embedding
from core.geometry.mesh_layout import surface_points, vertex_normals
from core.geometry.similarity import as_trimesh, icp_similarity, similarity_transform
from core.geometry.sparse_solve import spd_solve
from core.render.render import render_normals
from core.template import LMK_SURFACE, Template, TemplateModel

# Renders for the detector: 512 px, an 85 mm-like lens, the head filling ~70 % of the height.
RENDER_PX = 512
FOCAL_PX = 1400.0
DISTANCE_PER_HEIGHT = 2.1
VIEWS = ((0.0, 0.0), (25.0, 0.0), (-25.0, 0.0), (0.0, 15.0), (0.0, -12.0))  # yaw, pitch (degrees)
FRONTS = (0.0, 180.0, 90.0, -90.0)  # where the face is looked for: -Y, +Y, +X, -X
SKIN_RGB = np.array([0.80, 0.62, 0.52])
BACKGROUND = 0.35
LIGHT_CAM = np.array([0.3, -0.4, -1.0])  # camera frame (x right, y down, z forward): above-left of the lens

SIMILARITY_KEEP = 0.8
# The frame settles on the artist's vertices within this of the default head's face (at least
# FRAME_MIN_VERTS of them; fewer keep the landmarks' frame, as does a settling that scales the
# head by more than FRAME_MAX_SCALE or moves a vertex further than FRAME_MAX_MOVE_MM).
FRAME_NEAR_MM = 5.0
FRAME_MIN_VERTS = 20
FRAME_MAX_SCALE = 0.1
FRAME_MAX_MOVE_MM = 15.0
FRAME_ICP_ITERATIONS = 100  # a head 2 % large and turned 2 degrees settles in about 50
RIG_STEPS = 160
RIG_REFRESH = 16
RIG_LR = 0.03
RIG_LANDMARK_FLOOR = 0.3  # the landmark weight's share at the rig fit's end: the surface decides last
PAIR_MAX_MM = 15.0
FACING_COS = 0.3
NONRIGID_STIFFNESS = (30.0, 10.0, 4.0, 1.5, 0.6)
NONRIGID_ROUNDS = 3
LANDMARK_WEIGHT = 0.5
POINT_WEIGHT = 0.05
CANDIDATES = 24


class RegistrationError(ValueError):
    """The default head could not be laid onto the mesh; the message says why in one line."""


@dataclasses.dataclass
class Registration:
    """All positions in the canonical frame (metres).

    to_canonical: (s, R (3, 3), t (3,)) with x_canonical = s R x_file + t.
    verts: (N, 3) the artist's vertices. default_verts: (Nd, 3) the registered default skin.
    found: (L, 3) the detector's landmarks on the artist's surface; found_ok: (L,) bool.
    corr_tri, corr_bary: (N,) / (N, 3) each artist vertex's closest facing point on the
    registered default head (rows of the default's ``tris``); corr_dist: (N,) its distance.
    front_yaw: where the face was found (0: toward -Y). front_image: the front render (RGB uint8).
    """

    to_canonical: tuple[float, np.ndarray, np.ndarray]
    verts: np.ndarray
    default_verts: np.ndarray
    found: np.ndarray
    found_ok: np.ndarray
    corr_tri: np.ndarray
    corr_bary: np.ndarray
    corr_dist: np.ndarray
    front_yaw: float
    front_image: np.ndarray


def render_grey(verts: np.ndarray, tris: np.ndarray, camera: Cameras) -> np.ndarray:
    """(H, W, 3) uint8: the mesh in a skin tone under one light near the camera (both sides lit)."""
    normals, mask = render_normals(torch.as_tensor(verts, dtype=torch.float64)[None],
                                   torch.as_tensor(tris, dtype=torch.int64), camera)
    n, m = normals[0].numpy(), mask[0].numpy()[..., None]
    light = -LIGHT_CAM / np.linalg.norm(LIGHT_CAM)
    shade = np.abs(n @ light)[..., None]
    rgb = SKIN_RGB * (0.25 + 0.75 * shade) * m + BACKGROUND * (1.0 - m)
    return (np.clip(rgb, 0.0, 1.0) ** (1.0 / 2.2) * 255.0 + 0.5).astype(np.uint8)


def view_camera(verts: np.ndarray, yaw: float, pitch: float = 0.0) -> Cameras:
    """A camera on the head's bounding box centre, framing its height (yaw 0 looks along +Y)."""
    lo, hi = verts.min(0), verts.max(0)
    return Cameras.orbit((lo + hi) / 2.0, DISTANCE_PER_HEIGHT * float(hi[2] - lo[2]), yaw, pitch, FOCAL_PX,
                         RENDER_PX, RENDER_PX)


def _cameras(verts: np.ndarray, front: float) -> list[Cameras]:
    return [view_camera(verts, front + yaw, pitch) for yaw, pitch in VIEWS]


def find_landmarks(verts: np.ndarray, tris: np.ndarray, source: str) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    """(points (478, 3), ok (478,) bool, front yaw, front render): FaceMesh's points found on renders
    of the mesh and embedded on its surface."""
    from core.priors.errors import NoFaceError
    from core.priors.landmarks import detect_landmarks

    for front in FRONTS:
        cams = _cameras(verts, front)
        image = render_grey(verts, tris, cams[0])
        try:
            first = detect_landmarks(image)
        except NoFaceError:
            continue
        detections = [first.points.astype(np.float64)]
        valid = [np.ones(len(first.points), bool)]
        for cam in cams[1:]:
            try:
                detections.append(detect_landmarks(render_grey(verts, tris, cam)).points.astype(np.float64))
                valid.append(np.ones(len(first.points), bool))
            except NoFaceError:
                detections.append(np.full_like(detections[0], np.nan))
                valid.append(np.zeros(len(first.points), bool))
        if sum(v.any() for v in valid) < 2:
            continue
        emb = derive_embedding(verts, tris, cams, np.stack(detections), np.stack(valid), refine_neighbours=0)
        ok = np.isfinite(emb.snap.points).all(1)
        return emb.snap.points, ok, front, image
    raise RegistrationError(f"{source}: no face found on renders of the mesh from -Y, +Y, +X or -X; "
                            "is it a human head with an open face (eyes, nose, mouth)?")


_BIAS: dict = {}


def detector_bias(default: Template) -> tuple[np.ndarray, np.ndarray]:
    """((L, 3) found - embedded, (L,) ok): where the detector puts the landmarks on renders of the
    default head made like an imported head's, against its embedding; computed once a process."""
    key = (default.num_verts, float(np.asarray(default.verts, np.float64).sum()))
    if key not in _BIAS:
        v = default.verts.astype(np.float64)
        found, ok, _, _ = find_landmarks(v, default.tris, "the default head")
        embedded = surface_points(v, default.tris, default.lmk_tri, default.lmk_bary)
        _BIAS[key] = (np.where(ok[:, None], found - embedded, 0.0), ok)
    return _BIAS[key]


def surface_frame(default: Template, verts: np.ndarray, tris: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """(s, R, t) the similarity that lays a head (verts (N, 3) roughly in the default head's frame)
    on the default head's face: a similarity ICP of its vertices whose closest facing point on the
    default head is in its face mask, within ``FRAME_NEAR_MM``. The identity where fewer than
    ``FRAME_MIN_VERTS`` are, or where the ICP went further than a landmark alignment can be off."""
    dv = default.verts.astype(np.float64)
    is_face = np.zeros(default.num_verts, bool)
    is_face[default.regions["face_mask"]] = True
    tri, bary, _, dist, _ = FacingClosest(dv, default.tris).query(verts, vertex_normals(verts, tris))
    near = (surface_points(is_face.astype(np.float64), default.tris, tri, bary) >= 0.5) & (dist < FRAME_NEAR_MM / MM)
    if near.sum() < FRAME_MIN_VERTS:
        return 1.0, np.eye(3), np.zeros(3)
    s, R, t, _ = icp_similarity(verts[near], as_trimesh(dv, default.tris), iterations=FRAME_ICP_ITERATIONS)
    moved = np.linalg.norm(s * verts[near] @ R.T + t - verts[near], axis=1).max()
    if not (abs(s - 1.0) <= FRAME_MAX_SCALE and moved <= FRAME_MAX_MOVE_MM / MM):
        return 1.0, np.eye(3), np.zeros(3)  # settled somewhere the landmarks do not put the head: theirs stands
    return s, R, t


def _trimmed_similarity(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    keep = np.ones(len(src), bool)
    for _ in range(3):
        s, R, t = similarity_transform(src[keep], dst[keep])
        err = np.linalg.norm(s * src @ R.T + t - dst, axis=1)
        keep = err <= np.quantile(err, SIMILARITY_KEEP)
    return similarity_transform(src[keep], dst[keep])


class FacingClosest:
    """Closest points on a triangle mesh whose face turns the same way as the query's normal.

    Candidates are the ``CANDIDATES`` triangles with the nearest centroids; among them the
    nearest facing one wins, the nearest of all where none faces the same way.
    """

    def __init__(self, verts: np.ndarray, tris: np.ndarray):
        from scipy.spatial import cKDTree

        self.verts, self.tris = np.asarray(verts, np.float64), np.asarray(tris, np.int64)
        corners = self.verts[self.tris]
        self.normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
        self.normals /= np.maximum(np.linalg.norm(self.normals, axis=1, keepdims=True), 1e-20)
        self.tree = cKDTree(corners.mean(1))

    def query(self, points: np.ndarray, normals: np.ndarray | None = None, chunk: int = 4096):
        """(tri (P,), bary (P, 3), closest (P, 3), distance (P,), facing cosine (P,))."""
        k = min(CANDIDATES, len(self.tris))
        out = [], [], []
        for start in range(0, len(points), chunk):
            p = points[start:start + chunk]
            _, cand = self.tree.query(p, k=k)
            cand = cand.reshape(len(p), k)
            c = self.verts[self.tris[cand]]  # (P, k, 3, 3)
            bary = closest_points_on_triangles(p[:, None], c[:, :, 0], c[:, :, 1], c[:, :, 2])
            q = (bary[..., None] * c).sum(2)
            d2 = ((q - p[:, None]) ** 2).sum(-1)
            if normals is not None:
                cos = (self.normals[cand] * normals[start:start + chunk, None]).sum(-1)
                d2 = np.where(cos > FACING_COS, d2, d2 + 1e6)
            best = d2.argmin(1)
            rows = np.arange(len(p))
            out[0].append(cand[rows, best])
            out[1].append(bary[rows, best])
            out[2].append(q[rows, best])
        tri, bary, closest = (np.concatenate(x) for x in out)
        dist = np.linalg.norm(closest - points, axis=1)
        cos = (self.normals[tri] * normals).sum(1) if normals is not None else np.ones(len(points))
        return tri, bary, closest, dist, cos


def register_head(default: Template, verts: np.ndarray, tris: np.ndarray, source: str) -> Registration:
    """Lay ``default`` onto the mesh (verts (N, 3) metres, tris (T, 3)); see the module docstring."""
    found, ok, front, image = find_landmarks(verts, tris, source)
    bias, bias_ok = detector_bias(default)
    ok = ok & bias_ok
    use = ok & (default.lmk_kind == LMK_SURFACE)
    default_lmk = surface_points(default.verts.astype(np.float64), default.tris, default.lmk_tri, default.lmk_bary)
    s, R, t = _trimmed_similarity(found[use], default_lmk[use])
    # The detector's bias on these renders, measured on the default head, taken off.
    found_c = s * found @ R.T + t - bias
    s2, R2, t2 = _trimmed_similarity(found_c[use], default_lmk[use])
    s, R, t = s2 * s, R2 @ R, s2 * R2 @ t + t2
    s3, R3, t3 = surface_frame(default, s * verts @ R.T + t, tris)
    s, R, t = s3 * s, R3 @ R, s3 * R3 @ t + t3
    canon = s * verts @ R.T + t
    found_c = s * found @ R.T + t - bias
    found_c = found_c - np.median(found_c[use] - default_lmk[use], axis=0)

    art_normals = vertex_normals(canon, tris)
    lmk_normals = surface_points(art_normals, tris, *_embed(found_c, canon, tris))
    def_normals = surface_points(vertex_normals(default.verts.astype(np.float64), default.tris), default.tris,
                                 default.lmk_tri, default.lmk_bary)
    if float(np.median((lmk_normals[use] * def_normals[use]).sum(1))) < 0:
        raise RegistrationError(f"{source}: the faces point inward; recalculate the normals outside "
                                "(Blender: Mesh > Normals > Recalculate Outside) and import again")

    rig_verts = _fit_rig(default, canon, tris, art_normals, found_c, use)
    reg = _nonrigid(default, rig_verts, canon, tris, use)
    closest = FacingClosest(reg, default.tris)
    tri, bary, _, dist, _ = closest.query(canon, vertex_normals(canon, tris))
    return Registration((float(s), R, t), canon, reg, found_c, ok, tri, bary, dist, front, image)


def _embed(points: np.ndarray, verts: np.ndarray, tris: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    tri, bary, *_ = FacingClosest(verts, tris).query(points)
    return tri, bary


def _decay(step: int) -> float:
    return 1.0 - (1.0 - RIG_LANDMARK_FLOOR) * step / max(RIG_STEPS - 1, 1)


def _fit_rig(default: Template, art: np.ndarray, art_tris: np.ndarray, art_normals: np.ndarray,
             found: np.ndarray, use: np.ndarray) -> np.ndarray:
    """(Nd, 3) the default head with its shape controllers fitted to the artist's surface and
    landmarks (the default head's frame: the similarity was settled by the landmarks)."""
    dtype = torch.float64
    model = TemplateModel(default, dtype=dtype)
    shape = torch.as_tensor(~default.ctrl_is_expression)
    ctrl0 = model.default_controllers()
    lo, hi = model.ctrl_bounds[:, 0], model.ctrl_bounds[:, 1]
    ctrl = ctrl0.clone().requires_grad_(True)
    opt = torch.optim.Adam([ctrl], lr=RIG_LR)
    lmk_tri = torch.as_tensor(default.tris[default.lmk_tri[use]])
    lmk_bary = torch.as_tensor(default.lmk_bary[use], dtype=dtype)
    target_lmk = torch.as_tensor(found[use], dtype=dtype)
    art_closest = FacingClosest(art, art_tris)
    art_t = torch.as_tensor(art, dtype=dtype)
    art_n = torch.as_tensor(art_normals, dtype=dtype)
    dtris = torch.as_tensor(default.tris)

    pairs = None
    for step in range(RIG_STEPS):
        v = model.deform(torch.where(shape, ctrl, ctrl0)).verts[0]
        if step % RIG_REFRESH == 0:
            pairs = _pairs(v.detach().numpy(), default.tris, art, art_normals, art_closest)
        q, qn, w, a_tri, a_bary, a_w = pairs
        fwd = (((v - q) * qn).sum(1) * MM) ** 2
        vb = (v[dtris[a_tri]] * a_bary[..., None]).sum(1)
        back = (((vb - art_t) * art_n).sum(1) * MM) ** 2
        lmk = ((v[lmk_tri] * lmk_bary[..., None]).sum(1) - target_lmk).norm(dim=1) * MM
        loss = ((fwd * w).sum() / w.sum().clamp(min=1) + (back * a_w).sum() / a_w.sum().clamp(min=1)
                + LANDMARK_WEIGHT * _decay(step) * (torch.sqrt(lmk ** 2 + 1.0) - 1.0).mean()
                + 1e-3 * (ctrl - ctrl0).pow(2).sum())
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            ctrl.copy_(torch.maximum(torch.minimum(ctrl, hi), lo))
    with torch.no_grad():
        return model.deform(torch.where(shape, ctrl, ctrl0)).verts[0].numpy()


def _pairs(dverts: np.ndarray, dtris: np.ndarray, art: np.ndarray, art_normals: np.ndarray,
           art_closest: FacingClosest):
    """Correspondences both ways for the current default head: each default vertex -> artist
    surface (point, normal, weight) and each artist vertex -> default surface (tri, bary, weight)."""
    dn = vertex_normals(dverts, dtris)
    tri, _, q, dist, cos = art_closest.query(dverts, dn)
    w = (dist < PAIR_MAX_MM / MM) & (cos > FACING_COS)
    a_tri, a_bary, _, a_dist, a_cos = FacingClosest(dverts, dtris).query(art, art_normals)
    a_w = (a_dist < PAIR_MAX_MM / MM) & (a_cos > FACING_COS)
    f = torch.float64
    return (torch.as_tensor(q, dtype=f), torch.as_tensor(art_closest.normals[tri], dtype=f),
            torch.as_tensor(w, dtype=f), torch.as_tensor(a_tri), torch.as_tensor(a_bary, dtype=f),
            torch.as_tensor(a_w, dtype=f))


def uniform_laplacian(tris: np.ndarray, n: int) -> sp.csr_matrix:
    """(n, n) the umbrella operator v_i - mean of its neighbours (``core.geometry``'s, as scipy)."""
    from core.geometry.laplacian import Laplacian
    from core.geometry.topology import MeshTopology

    lap = Laplacian.uniform(MeshTopology.from_faces(torch.as_tensor(tris), n), dtype=torch.float64)
    e, w, s = lap.edges.numpy(), lap.weights.numpy(), lap.scale.numpy()
    a = sp.coo_matrix((np.r_[w, w], (np.r_[e[:, 0], e[:, 1]], np.r_[e[:, 1], e[:, 0]])), shape=(n, n)).tocsr()
    degree = np.asarray(a.sum(1)).ravel()
    return sp.diags(s) @ (sp.diags(degree) - a)


def _nonrigid(default: Template, rig_verts: np.ndarray, art: np.ndarray, art_tris: np.ndarray,
              use: np.ndarray) -> np.ndarray:
    """(Nd, 3) the default head's vertices moved onto the artist's surface (metres).

    Point-to-plane both ways (vertices may slide along the surface only as the stiffness and
    the landmarks let them), a weak point-to-point pull, a Laplacian stiffness toward the
    rig fit's shape; unknowns are the 3 Nd coordinates, interleaved (x0, y0, z0, x1, ...). The
    landmarks are held where the rig fit put them (the detector's own points carry its bias)."""
    n = len(rig_verts)
    lap = uniform_laplacian(default.tris, n)
    lap3 = sp.kron(lap, sp.eye(3)).tocsr()
    art_n = vertex_normals(art, art_tris)
    art_closest = FacingClosest(art, art_tris)
    m = int(use.sum())
    lmk = sp.csr_matrix((default.lmk_bary[use].reshape(-1).astype(np.float64),
                         (np.repeat(np.arange(m), 3), default.tris[default.lmk_tri[use]].reshape(-1))), shape=(m, n))
    lmk3 = sp.kron(lmk, sp.eye(3)).tocsr()
    rest_delta = lap3 @ (rig_verts * MM).reshape(-1)
    x = (rig_verts * MM).reshape(-1)
    art_mm, held_mm = art * MM, lmk3 @ x
    cols3 = np.arange(3)
    for stiffness in NONRIGID_STIFFNESS:
        # the held landmarks relax with the stiffness: the surface decides at the end
        lw = LANDMARK_WEIGHT * stiffness / NONRIGID_STIFFNESS[0]
        for _ in range(NONRIGID_ROUNDS):
            v = x.reshape(-1, 3) / MM
            q, qn, w, a_tri, a_bary, a_w = (t.numpy() for t in _pairs(v, default.tris, art, art_n, art_closest))
            # forward: n_i . (x_i - q_i), one row per paired default vertex
            fi = np.flatnonzero(w > 0)
            fwd = sp.csr_matrix((qn[fi].reshape(-1), (np.repeat(np.arange(len(fi)), 3),
                                                      (3 * fi[:, None] + cols3).reshape(-1))), shape=(len(fi), 3 * n))
            fwd_b = (qn[fi] * q[fi] * MM).sum(1)
            # backward: m_j . (sum_k b_k x_k - a_j), one row per paired artist vertex
            bi = np.flatnonzero(a_w > 0)
            corners = default.tris[a_tri[bi]]  # (P, 3)
            vals = a_bary[bi][:, :, None] * art_n[bi][:, None, :]  # (P, 3 corners, 3 coords)
            cols = 3 * corners[:, :, None] + cols3
            back = sp.csr_matrix((vals.reshape(-1), (np.repeat(np.arange(len(bi)), 9), cols.reshape(-1))),
                                 shape=(len(bi), 3 * n))
            back_b = (art_n[bi] * art_mm[bi]).sum(1)
            pull = sp.diags(np.repeat(np.where(w > 0, POINT_WEIGHT, 0.0), 3))
            A = (fwd.T @ fwd + back.T @ back + pull + lw * (lmk3.T @ lmk3) + stiffness * (lap3.T @ lap3)
                 + 1e-6 * sp.eye(3 * n)).tocsc()
            b = (fwd.T @ fwd_b + back.T @ back_b + pull @ (q * MM).reshape(-1) + lw * (lmk3.T @ held_mm)
                 + stiffness * (lap3.T @ rest_delta))
            x = spd_solve(A, b)
    return x.reshape(-1, 3) / MM
