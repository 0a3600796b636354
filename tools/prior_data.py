"""Training data for the face prior (core/priors/face_prior.py), rendered with our own rasteriser.

    .venv/bin/python tools/prior_data.py OUT_DIR --people 600 --per-person 12 [--seed 0]

People come from the MakeHuman/MPFB2 generator of ``bench photo``
(``core.bench.synthetic.make_person``) at seeds ``PRIOR_SEED_BASE + i``, never one of
``bench photo``'s or ``bench fit``'s people (tests/tools/test_prior_data.py checks it).
Each person is rendered ``--per-person`` times: neutral, with their expression, or with a
random mix of the rig's 52 expressions; from a random direction (yaw within ±50°, pitch
±25°, roll ±10°) through a random lens (24–135 mm equivalent); lit by a key, a fill and a
rim light of random colour temperatures, with a shadow map for the key light, wrapped
diffuse (a stand-in for subsurface scattering), a specular lobe and a coloured ambient;
skin albedo from a tone range, with eyebrows, redness, lips, an optional hair cap,
freckles and pores; eyeballs with iris and pupil, teeth, gums and tongue; a background
from a plain colour, a gradient or a texture photo without faces. Options beyond the shipped
recipe: ``--hair-edge`` (caps painted per pixel, hairlines from soft to sharp),
``--hair-texture`` (strands on caps) and ``--glasses SHARE`` (random frames: superellipse rims,
a bridge and temples, labelled like the eyes: no targets under them). Each image is rendered
at twice the crop size and area-averaged (anti-aliased edges), then degraded: blur,
noise, colour jitter and JPEG.

The crop is what the runtime cuts from a photo: ``face_box`` around the 478 landmarks
(here the template's landmark embedding projected, jittered by a few percent as a
detector's box would be).

Per sample (``shard_NNNN.npz``, ``SIZE`` = the crop side):
- ``image`` (N, S, S, 3) uint8 sRGB;
- ``normals`` (N, S, S, 3) int8, camera-space unit normals × 127 (OpenCV axes);
- ``uv`` (N, S, S, 2) uint16, template UV × 65535;
- ``label`` (N, S, S) uint8: 0 background, 1 head skin, 2 head skin in the face mask,
  3 eyes, teeth, gums, tongue. Normals and UV are valid where the label is 1 or 2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import sys
import time

import cv2
import numpy as np
import torch
import torch.nn.functional as F

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from core.geometry.camera import Cameras  # noqa: E402
from core.geometry.mesh_layout import fan_triangulate, pad_polygons  # noqa: E402
from core.geometry.normals import vertex_normals  # noqa: E402
from core.priors.face_prior import face_box  # noqa: E402
from core.render import interpolate, rasterize  # noqa: E402
from core.template.mesh_layout import triangle_uvs  # noqa: E402

# Far from every seed the benches use (bench photo: 301-308; bench fit and multiview: < 1000).
PRIOR_SEED_BASE = 1_000_000
# Seeds from here on are the validation people (never trained on).
VALIDATION_SEED_BASE = 2_000_000
SIZE = 192
SUPERSAMPLE = 2
PARTS = ("eyeball.L", "eyeball.R", "teeth.upper", "teeth.lower", "gums.upper", "gums.lower", "tongue")
SKIN_TONES = np.array([(0.30, 0.18, 0.12), (0.45, 0.30, 0.20), (0.62, 0.44, 0.32), (0.72, 0.53, 0.40),
                       (0.82, 0.60, 0.50), (0.88, 0.68, 0.58)])
KELVIN = ((2700, (1.0, 0.63, 0.32)), (4500, (1.0, 0.84, 0.70)), (6500, (1.0, 1.0, 1.0)), (8000, (0.84, 0.89, 1.0)))
# Texture photos for backgrounds (skimage's bundled images without faces).
BACKGROUND_IMAGES = ("coffee", "chelsea", "rocket", "brick", "grass", "gravel", "coins", "moon", "page",
                     "text", "hubble_deep_field", "immunohistochemistry", "retina", "colorwheel", "horse", "clock")


def training_seeds(people: int, first: int = 0) -> list[int]:
    return [PRIOR_SEED_BASE + first + i for i in range(people)]


def validation_seeds(people: int) -> list[int]:
    return [VALIDATION_SEED_BASE + i for i in range(people)]


class Scene:
    """What every render shares: the template's head and parts as one triangle mesh, per-vertex
    labels, paint rules and UVs laid out per triangle corner."""

    def __init__(self, template) -> None:
        from core.bench.photo import skin_paint

        t = template
        self.template = t
        self.n_head = len(t.verts)
        part_ids = [t.part_names.index(n) for n in PARTS]
        self.part_keep = np.flatnonzero(np.isin(t.part_vert_part, part_ids))
        remap = np.full(len(t.part_verts), -1, np.int64)
        remap[self.part_keep] = np.arange(len(self.part_keep)) + self.n_head
        ptris, _ = fan_triangulate(pad_polygons(t.part_poly_verts, t.part_poly_start))
        ptris = remap[ptris]
        ptris = ptris[(ptris >= 0).all(1)]
        self.head_tris = torch.as_tensor(t.tris, dtype=torch.int64)
        self.tris = torch.as_tensor(np.concatenate([t.tris, ptris]), dtype=torch.int64)
        # Corner UVs of the head triangles (the template's UVs are per polygon corner).
        uv = triangle_uvs(t)  # (T, 3, 2)
        n_part_tris = len(ptris)
        self.corner_uv = torch.as_tensor(np.concatenate([uv, np.zeros((n_part_tris, 3, 2), np.float32)]).reshape(-1, 2))
        self.corner_tris = torch.arange(len(self.tris) * 3).reshape(-1, 3)
        # Per-vertex label: 1 head, 2 face mask, 3 parts.
        label = np.ones(self.n_head + len(self.part_keep), np.float32)
        label[t.regions["face_mask"]] = 2
        label[self.n_head:] = 3
        self.face = torch.as_tensor((label == 2).astype(np.float32))
        self.is_part = torch.as_tensor((label == 3).astype(np.float32))
        self.paint = [skin_paint(t, False), skin_paint(t, True)]
        lips = np.zeros(self.n_head, np.float32)
        lips[t.regions["lips"]] = 1.0
        self.lips = lips
        pv = t.part_verts[self.part_keep]
        pp = np.array(t.part_names)[t.part_vert_part[self.part_keep]]
        self.part_name = pp
        # Eyeball iris/pupil from the angle to the eyeball's front (-Y).
        iris = np.zeros(len(pv), np.float32)
        pupil = np.zeros(len(pv), np.float32)
        for side in ("eyeball.L", "eyeball.R"):
            m = pp == side
            c = 0.5 * (pv[m].min(0) + pv[m].max(0))
            d = pv[m] - c
            cos = -d[:, 1] / np.maximum(np.linalg.norm(d, axis=1), 1e-9)
            iris[m] = np.clip((cos - 0.92) / 0.015, 0, 1)
            pupil[m] = np.clip((cos - 0.98) / 0.006, 0, 1)
        self.iris, self.pupil = iris, pupil
        self.lmk_tri = t.lmk_tri
        self.lmk_bary = t.lmk_bary


def _kelvin(k: float) -> np.ndarray:
    ks = np.array([a for a, _ in KELVIN], np.float64)
    rgb = np.array([c for _, c in KELVIN], np.float64)
    return np.array([np.interp(k, ks, rgb[:, i]) for i in range(3)])


def _albedo(scene: Scene, verts: np.ndarray, rng: np.random.Generator,
            hair_edge: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(V, 3) linear albedo for the head and parts of one sample, (V,) how much of each vertex
    is the hair cap (0 without one) and the cap's colour (None without one). With ``hair_edge``
    the cap is not blended into the vertex colours: ``render_batch`` paints it per pixel."""
    n = scene.n_head
    w = rng.dirichlet(np.ones(len(SKIN_TONES)) * 0.5)
    tone = np.clip((w @ SKIN_TONES) * rng.uniform(0.85, 1.15, 3), 0.04, 0.95)
    hair = rng.random() < 0.4
    paint = scene.paint[int(hair)]
    skin = np.broadcast_to(tone, (n, 3)).copy()
    # Low-frequency blotches: a few random plane waves over the head.
    v = verts[:n]
    for _ in range(4):
        d = rng.normal(size=3)
        d /= np.linalg.norm(d)
        k = 2 * math.pi / rng.uniform(0.03, 0.1)
        skin *= 1 + rng.uniform(0.0, 0.06) * np.cos(k * v @ d + rng.uniform(0, 2 * math.pi))[:, None]
    red = paint[:, 1:2] * rng.uniform(0.0, 0.5)
    skin = skin * (1 - red) + red * skin * np.array([1.15, 0.7, 0.7])
    lip = tone * np.array([0.78, 0.5, 0.5]) * rng.uniform(0.7, 1.2)
    lips = scene.lips[:, None] * rng.uniform(0.5, 1.0)
    skin = skin * (1 - lips) + lips * lip
    dark = rng.random() < 0.6
    brow = np.array((0.05, 0.035, 0.025)) * rng.uniform(0.6, 1.6) if dark else np.array((0.35, 0.25, 0.15))
    b = paint[:, 0:1] * rng.uniform(0.5, 1.0)
    skin = skin * (1 - b) + b * brow
    cap = np.zeros(len(verts), np.float32)
    if hair:
        hc = (brow if rng.random() < 0.7 else rng.uniform(0.02, 0.4, 3)) * rng.uniform(0.7, 1.3)
        h = paint[:, 2:3]
        if not hair_edge:
            skin = skin * (1 - h) + h * hc
        cap[:n] = h[:, 0]
    parts = np.zeros((len(scene.part_keep), 3))
    sclera = np.array([0.75, 0.72, 0.68]) * rng.uniform(0.8, 1.05)
    iris_rgb = rng.choice([(0.25, 0.14, 0.07), (0.12, 0.22, 0.35), (0.18, 0.25, 0.12), (0.08, 0.05, 0.03)])
    eye = sclera * (1 - scene.iris[:, None]) + np.asarray(iris_rgb) * scene.iris[:, None]
    eye = eye * (1 - scene.pupil[:, None]) + 0.01 * scene.pupil[:, None]
    names = scene.part_name
    is_eye = np.char.startswith(names.astype(str), "eyeball")
    parts[is_eye] = eye[is_eye]
    parts[np.char.startswith(names.astype(str), "teeth")] = np.array([0.8, 0.75, 0.62]) * rng.uniform(0.7, 1.0)
    parts[np.char.startswith(names.astype(str), "gums")] = np.array([0.6, 0.25, 0.25])
    parts[names == "tongue"] = np.array([0.55, 0.22, 0.22])
    return np.concatenate([skin, parts]).astype(np.float32), cap, (hc if hair else None)


def _camera(centre: np.ndarray, rng: np.random.Generator, full: int = 512):
    """A random view of the face at ``centre``: (K, R, t) of a full-frame photo ``full`` px wide."""
    lens = float(np.exp(rng.uniform(np.log(24), np.log(135))))
    f = lens / 36.0 * full
    dist = 0.75 * lens / 85.0 * rng.uniform(0.85, 1.2)
    yaw = rng.uniform(-50, 50) if rng.random() < 0.7 else rng.normal(0, 12)
    pitch = float(np.clip(rng.normal(0, 10), -25, 25))
    roll = math.radians(float(np.clip(rng.normal(0, 5), -12, 12)))
    target = centre + rng.normal(0, 0.02, 3)
    cam = Cameras.orbit(target, dist, yaw, pitch, f, full, full)
    K, R, t = cam.numpy()
    Rz = np.array([[math.cos(roll), -math.sin(roll), 0], [math.sin(roll), math.cos(roll), 0], [0, 0, 1]])
    return K, Rz @ R, Rz @ t


def _crop_camera(K, R, t, lmk: np.ndarray, rng: np.random.Generator, size: int):
    """Intrinsics that render exactly the face crop ``size``² (jittered like a detector's box)."""
    cam = R @ lmk.T + t[:, None]
    px = (K @ cam)[:2] / cam[2]
    centre, side = face_box(px.T)
    side *= float(rng.uniform(0.92, 1.08))
    centre = centre + rng.uniform(-0.04, 0.04, 2) * side
    k = size / side
    Kc = np.array([[K[0, 0] * k, 0, (K[0, 2] - centre[0] + side / 2) * k],
                   [0, K[1, 1] * k, (K[1, 2] - centre[1] + side / 2) * k], [0, 0, 1.0]])
    return Kc


class Backgrounds:
    def __init__(self) -> None:
        import skimage.data

        self.images = []
        for name in BACKGROUND_IMAGES:
            try:
                img = getattr(skimage.data, name)()
            except Exception:  # some need a download; skip those
                continue
            img = np.asarray(img)
            if img.dtype != np.uint8:
                img = img.astype(np.float64)
                img = (255 * (img - img.min()) / max(float(img.max() - img.min()), 1e-9)).astype(np.uint8)
            if img.ndim == 2:
                img = np.stack([img] * 3, -1)
            self.images.append(np.ascontiguousarray(img[..., :3]))

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """(size, size, 3) float32 linear background."""
        kind = rng.random()
        if kind < 0.2:
            out = np.broadcast_to(rng.uniform(0.02, 0.9, 3), (size, size, 3)).copy()
        elif kind < 0.45:
            a, b = rng.uniform(0.02, 0.9, (2, 3))
            ang = rng.uniform(0, 2 * math.pi)
            g = np.linspace(-1, 1, size)
            ramp = (np.cos(ang) * g[None, :] + np.sin(ang) * g[:, None]) * 0.5 + 0.5
            out = a * (1 - ramp[..., None]) + b * ramp[..., None]
        else:
            img = self.images[int(rng.integers(len(self.images)))]
            h, w = img.shape[:2]
            s = int(rng.integers(min(h, w) // 3, min(h, w)))
            y, x = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
            crop = cv2.resize(img[y:y + s, x:x + s], (size, size), interpolation=cv2.INTER_AREA)
            out = (crop.astype(np.float32) / 255.0) ** 2.2 * rng.uniform(0.3, 1.2, 3)
            if rng.random() < 0.5:
                out = cv2.GaussianBlur(out, (0, 0), rng.uniform(1, 6))
        return np.clip(out, 0, 1).astype(np.float32)


def _shadow(verts: torch.Tensor, tris: torch.Tensor, light_pos: np.ndarray, centre: np.ndarray,
            points: torch.Tensor) -> torch.Tensor:
    """(B, P) 1 lit / 0 shadowed for world points (B, P, 3) seen from lights at (B, 3)."""
    B = verts.shape[0]
    res = 256
    cams = [Cameras.look_at(light_pos[b], centre[b], 4.0 * res, res, res, dtype=verts.dtype) for b in range(B)]
    cams = Cameras(torch.cat([c.K for c in cams]), torch.cat([c.R for c in cams]), torch.cat([c.t for c in cams]),
                   res, res)
    frags = rasterize(verts, tris, cams)
    uv, depth = cams.project(points)
    col = torch.floor(uv[..., 0]).clamp(0, res - 1).long()
    row = torch.floor(uv[..., 1]).clamp(0, res - 1).long()
    front = frags.depth.reshape(B, -1).gather(1, row * res + col)
    covered = frags.face_id.reshape(B, -1).gather(1, row * res + col) >= 0
    return (~covered | (depth <= front + 0.004)).to(points.dtype)


def paint_hairline(albedo: torch.Tensor, cap: torch.Tensor, hair_rgb: torch.Tensor, start: torch.Tensor,
                   width: torch.Tensor, fine: torch.Tensor) -> torch.Tensor:
    """Albedo (B, H, W, 3) with the hair cap painted per pixel: the interpolated cap paint
    ``cap`` (B, H, W) through a ramp from ``start`` over ``width`` (B,) gives how much of a
    pixel is hair, times 0.66–1 from the noise ``fine`` (B, H, W, about unit spread), so the
    hairline is as sharp as ``width`` makes it wherever it falls inside a triangle."""
    ramp = ((cap - start.view(-1, 1, 1)) / width.view(-1, 1, 1)).clamp(0, 1)
    h = (ramp * (0.83 + 0.17 * fine.clamp(-1, 1)))[..., None]
    return albedo * (1 - h) + h * hair_rgb.view(-1, 1, 1, 3)


# Glasses: a rim around each eye, a bridge and two temples, each a tube of TUBE_SIDES around a
# polyline of fixed length, so every sample's glasses have the same triangles (one batch).
RIM_POINTS, BRIDGE_POINTS, TEMPLE_POINTS, TUBE_SIDES = 40, 8, 10, 6


def tube(path: np.ndarray, radius: float, closed: bool, up: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A tube of ``TUBE_SIDES`` around the polyline ``path`` (K, 3), wound outward: (verts
    (K·TUBE_SIDES, 3), tris (2·TUBE_SIDES·(K or K-1), 3)). ``up`` (3,): a direction no segment
    runs along, which fixes where each ring starts."""
    k = len(path)
    ahead = np.roll(path, -1, 0) if closed else np.concatenate([path[1:], path[-1:] * 2 - path[-2:-1]])
    behind = np.roll(path, 1, 0) if closed else np.concatenate([path[:1] * 2 - path[1:2], path[:-1]])
    along = ahead - behind
    along /= np.linalg.norm(along, axis=1, keepdims=True)
    side = np.cross(along, up)
    side /= np.linalg.norm(side, axis=1, keepdims=True)
    other = np.cross(along, side)
    theta = 2 * math.pi * np.arange(TUBE_SIDES) / TUBE_SIDES
    ring = np.cos(theta)[None, :, None] * side[:, None] + np.sin(theta)[None, :, None] * other[:, None]
    verts = (path[:, None] + radius * ring).reshape(-1, 3)
    i = np.arange(k if closed else k - 1)[:, None]
    j = np.arange(TUBE_SIDES)[None]
    a, b = i * TUBE_SIDES + j, ((i + 1) % k) * TUBE_SIDES + j
    a2, b2 = i * TUBE_SIDES + (j + 1) % TUBE_SIDES, ((i + 1) % k) * TUBE_SIDES + (j + 1) % TUBE_SIDES
    tris = np.concatenate([np.stack([a, a2, b], -1).reshape(-1, 3), np.stack([a2, b2, b], -1).reshape(-1, 3)])
    return verts, tris


def glasses(head: np.ndarray, eye_rings: tuple[np.ndarray, np.ndarray], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random pair of glasses on a head in the template's frame (face toward -Y, Z up), metres:
    (verts, tris) with the same triangles for every draw. Rims are superellipses in front of the
    eyes, bent back toward the temples; the temples run back past the side of the head."""
    centres = [head[r].mean(0) for r in eye_rings]
    ipd = float(np.linalg.norm(centres[1] - centres[0]))
    half_w = ipd * rng.uniform(0.36, 0.46)
    half_h = half_w * rng.uniform(0.6, 0.85)
    square = rng.uniform(2.0, 5.0)
    forward = rng.uniform(0.009, 0.018)
    lift = rng.uniform(-0.002, 0.004)
    bend = rng.uniform(0.0, 3.0)
    radius = rng.uniform(0.0009, 0.0025)
    t = 2 * math.pi * np.arange(RIM_POINTS) / RIM_POINTS
    cx, cz = np.cos(t), np.sin(t)
    x = half_w * np.sign(cx) * np.abs(cx) ** (2 / square)
    z = half_h * np.sign(cz) * np.abs(cz) ** (2 / square)
    facing, up = np.array([0.0, -1.0, 0.0]), np.array([0.0, 0.0, 1.0])
    tubes = []  # (path, closed, up)
    inner, outer = [], []
    for c in centres:
        out = np.sign(c[0]) if c[0] != 0 else 1.0
        # Lens plane in front of the eye; the rim bends back toward the side of the head.
        rim = np.stack([c[0] + x, c[1] - forward + bend * np.maximum(x * out, 0) ** 2, c[2] + lift + z], 1)
        inner.append(rim[np.argmin(x * out)])
        outer.append(rim[np.argmax(x * out)])
        tubes.append((rim, True, facing))
    s = np.linspace(0, 1, BRIDGE_POINTS)[:, None]
    bridge = inner[0] * (1 - s) + inner[1] * s
    bridge[:, 2] += rng.uniform(0.0, 0.008) * np.sin(math.pi * s[:, 0])
    tubes.append((bridge, False, facing))
    level = np.abs(head[:, 2] - np.mean([c[2] for c in centres])) < 0.015
    half_head = float(np.abs(head[level, 0]).max()) if level.any() else half_w * 3
    back = rng.uniform(0.06, 0.09)
    first = TEMPLE_POINTS // 3  # points from the rim out to the hinge; the rest run back from it
    for o in outer:
        out = np.sign(o[0]) if o[0] != 0 else 1.0
        hinge = np.array([out * (half_head + 0.004), o[1] + 0.012, o[2]])
        end = np.array([out * (half_head + 0.004), o[1] + back, o[2] - rng.uniform(0.0, 0.01)])
        to_hinge = np.arange(first)[:, None] / first
        path = np.concatenate([o * (1 - to_hinge) + hinge * to_hinge,
                               hinge + (end - hinge) * np.linspace(0, 1, TEMPLE_POINTS - first)[:, None]])
        tubes.append((path, False, up))
    verts, tris, offset = [], [], 0
    for path, closed, start in tubes:
        v, f = tube(path, radius, closed, start)
        verts.append(v)
        tris.append(f + offset)
        offset += len(v)
    return np.concatenate(verts), np.concatenate(tris)


def _frame_rgb(rng: np.random.Generator) -> np.ndarray:
    r = rng.random()
    if r < 0.6:
        return np.full(3, rng.uniform(0.01, 0.06)) * rng.uniform(0.8, 1.2, 3)
    if r < 0.85:
        return np.array([0.6, 0.5, 0.3]) if rng.random() < 0.5 else np.full(3, rng.uniform(0.4, 0.7))
    return rng.uniform(0.05, 0.6, 3)


def render_batch(scene: Scene, people: list, rng: np.random.Generator, backgrounds: Backgrounds,
                 size: int = SIZE, hair_texture: bool = False, hair_edge: bool = False,
                 glasses_share: float = 0.0) -> dict[str, np.ndarray]:
    """Render one sample per entry of ``people`` ((head verts, part verts) in metres). With
    ``hair_texture`` a hair cap carries fine strands of image-space noise (lighter and darker hair)
    instead of one flat colour. With ``hair_edge`` the cap is painted per pixel through a ramp of
    the interpolated cap paint with a random start and width, so its hairline runs from as soft
    as the vertex blend to a sharp line inside a triangle (a photo's hairline, or Cycles' cap),
    broken up by fine noise. ``glasses_share``: the share of samples wearing glasses (frames only,
    no lenses; they occlude like the eyes and teeth: no normal or UV target, not head skin)."""
    t = scene.template
    B = len(people)
    S = size * SUPERSAMPLE
    verts_np = [np.concatenate([h, p[scene.part_keep]]).astype(np.float32) for h, p in people]
    tris, corner_uv, corner_tris = scene.tris, scene.corner_uv, scene.corner_tris
    face_v, part_v = scene.face, scene.is_part
    frames, frame_rgb = [], []
    if glasses_share > 0:
        rings = (t.regions["eye_l_ring"], t.regions["eye_r_ring"])
        for b, (h, _) in enumerate(people):
            g_v, g_t = glasses(h, rings, rng)
            if rng.random() >= glasses_share:
                g_v = np.broadcast_to(h[t.regions["face_mask"]].mean(0) + np.array([0, 0.05, 0]), g_v.shape)  # inside the head
            frames.append(g_v.astype(np.float32))
            frame_rgb.append(_frame_rgb(rng))
        n_before = len(verts_np[0])
        verts_np = [np.concatenate([v, g]) for v, g in zip(verts_np, frames)]
        tris = torch.cat([tris, torch.as_tensor(g_t + n_before, dtype=torch.int64)])
        n_new = len(g_t)
        corner_uv = torch.cat([corner_uv, torch.zeros(n_new * 3, 2, dtype=corner_uv.dtype)])
        corner_tris = torch.arange(len(tris) * 3).reshape(-1, 3)
        face_v = torch.cat([face_v, torch.zeros(len(frames[0]), dtype=face_v.dtype)])
        part_v = torch.cat([part_v, torch.ones(len(frames[0]), dtype=part_v.dtype)])
    verts = torch.as_tensor(np.stack(verts_np))
    Ks, Rs, ts, centres, albedo, caps, hair_rgb = [], [], [], [], [], [], []
    for b in range(B):
        head = verts_np[b][:scene.n_head]
        centre = head[t.regions["face_mask"]].mean(0)
        K, R, tt = _camera(centre, rng)
        lmk = (head[t.tris[scene.lmk_tri]] * scene.lmk_bary[..., None]).sum(1)
        Ks.append(_crop_camera(K, R, tt, lmk, rng, S))
        Rs.append(R)
        ts.append(tt)
        centres.append(centre)
        colours, cap, hc = _albedo(scene, verts_np[b][:scene.n_head + len(scene.part_keep)], rng, hair_edge)
        if frames:
            colours = np.concatenate([colours, np.broadcast_to(frame_rgb[b], frames[b].shape)]).astype(np.float32)
            cap = np.concatenate([cap, np.zeros(len(frames[b]), np.float32)])
        albedo.append(colours)
        caps.append(cap)
        hair_rgb.append(np.zeros(3) if hc is None else hc)
    cams = Cameras.from_numpy(np.stack(Ks), np.stack(Rs), np.stack(ts), S, S, dtype=torch.float32)
    frags = rasterize(verts, tris, cams)
    normals_w = torch.cat([vertex_normals(verts[:, :scene.n_head], scene.head_tris),
                           vertex_normals(verts[:, scene.n_head:], tris[len(scene.head_tris):] - scene.n_head)], 1)
    n_w = F.normalize(interpolate(normals_w, tris, frags), dim=-1, eps=1e-8)  # (B, S, S, 3)
    p_w = interpolate(verts, tris, frags)
    alb = interpolate(torch.as_tensor(np.stack(albedo)), tris, frags)
    uv = interpolate(corner_uv[None], corner_tris, frags)
    face = interpolate(face_v[None, :, None], tris, frags)[..., 0]
    part = interpolate(part_v[None, :, None], tris, frags)[..., 0]
    cover = frags.mask.float()
    n_cam = torch.einsum("bij,bhwj->bhwi", cams.R, n_w)
    # Lights: key, fill, rim around the face's front, like a portrait set.
    centre = np.stack(centres)
    eye = cams.centers().numpy()
    color = torch.zeros(B, S, S, 3)
    spec_total = torch.zeros(B, S, S, 3)
    key_pos = np.zeros((B, 3))
    lights = []
    for b in range(B):
        key_yaw = rng.choice([-1, 1]) * rng.uniform(0, 70)
        rows = []
        for yaw, elev, energy, kelvin in (
                (key_yaw, rng.uniform(-10, 50), 1.0, rng.uniform(2800, 7500)),
                (-key_yaw * rng.uniform(0.5, 1.5), rng.uniform(-10, 25), rng.uniform(0.05, 0.6), rng.uniform(3500, 8000)),
                (rng.choice([-1, 1]) * rng.uniform(110, 170), rng.uniform(10, 50), rng.uniform(0.0, 1.0),
                 rng.uniform(3000, 8000))):
            y, e = math.radians(yaw), math.radians(elev)
            pos = centre[b] + rng.uniform(0.6, 1.5) * np.array([math.sin(y) * math.cos(e), -math.cos(y) * math.cos(e),
                                                                 math.sin(e)])
            rows.append((pos, energy * _kelvin(kelvin)))
        key_pos[b] = rows[0][0]
        lights.append(rows)
    lit = _shadow(verts, tris, key_pos, centre, p_w.reshape(B, -1, 3)).reshape(B, S, S)
    # Soften the shadow's edge (area lights).
    lit = F.avg_pool2d(lit[:, None], 7, stride=1, padding=3, count_include_pad=False)[:, 0]
    view = F.normalize(torch.as_tensor(eye, dtype=torch.float32)[:, None, None] - p_w, dim=-1, eps=1e-8)
    for b in range(B):
        wrap = float(rng.uniform(0.0, 0.4))
        shininess = float(rng.uniform(8, 60))
        ks = float(rng.uniform(0.0, 0.25))
        for i, (pos, rgb) in enumerate(lights[b]):
            ldir = F.normalize(torch.as_tensor(pos, dtype=torch.float32) - p_w[b], dim=-1, eps=1e-8)
            ndl = (n_w[b] * ldir).sum(-1)
            diffuse = ((ndl + wrap) / (1 + wrap)).clamp(min=0)
            shade = lit[b] if i == 0 else 1.0
            half = F.normalize(ldir + view[b], dim=-1, eps=1e-8)
            spec = ks * (n_w[b] * half).sum(-1).clamp(min=0) ** shininess * (ndl > 0)
            rgb_t = torch.as_tensor(rgb, dtype=torch.float32)
            color[b] += (diffuse * shade)[..., None] * rgb_t
            spec_total[b] += (spec * shade)[..., None] * rgb_t
        amb = torch.as_tensor(rng.uniform(0.03, 0.25, 3), dtype=torch.float32)
        color[b] += amb * (0.6 + 0.4 * n_w[b, ..., 2:3])  # world +Z is up: a brighter sky
    # Pores and freckles: small-scale albedo noise in image space.
    noise = torch.as_tensor(rng.normal(0, 1, (B, 1, S, S)), dtype=torch.float32)
    noise = F.avg_pool2d(noise, 3, stride=1, padding=1)[:, 0, ..., None]
    skin_px = (1 - part)[..., None]
    rough = torch.as_tensor(rng.uniform(0.0, 0.12, (B, 1, 1, 1)), dtype=torch.float32)
    alb = alb * (1 + rough * noise * skin_px)
    if hair_texture or hair_edge:
        cap_px = interpolate(torch.as_tensor(np.stack(caps))[..., None], tris, frags)[..., 0]
    if hair_texture:
        # Strands: noise stretched along the image's vertical, a few supersampled pixels wide.
        strands = torch.as_tensor(rng.normal(0, 1, (B, 1, S, S)), dtype=torch.float32)
        strands = F.avg_pool2d(strands, (9, 3), stride=1, padding=(4, 1))[:, 0, ..., None] * 3.0
        depth = torch.as_tensor(rng.uniform(0.3, 0.8, (B, 1, 1, 1)), dtype=torch.float32)
        alb = alb * (1 + depth * strands.clamp(-1.5, 1.5) * (cap_px * skin_px[..., 0])[..., None]).clamp(min=0.05)
    if hair_edge:
        start = torch.as_tensor(rng.uniform(0.0, 0.6, B), dtype=torch.float32)
        width = torch.as_tensor(np.exp(rng.uniform(np.log(0.03), np.log(1.0), B)), dtype=torch.float32)
        fine = torch.as_tensor(rng.normal(0, 1, (B, 1, S, S)), dtype=torch.float32)
        fine = F.avg_pool2d(fine, 3, stride=1, padding=1)[:, 0] * 3.0
        alb = paint_hairline(alb, cap_px * skin_px[..., 0], torch.as_tensor(np.stack(hair_rgb), dtype=torch.float32),
                             start, width, fine)
    radiance = alb * color + spec_total * skin_px
    # Exposure: the face's bright pixels near 0.6-0.9.
    out_img = torch.zeros(B, S, S, 3)
    for b in range(B):
        m = (face[b] > 0.5) & (cover[b] > 0)
        lum = radiance[b][m].mean(-1) if bool(m.any()) else radiance[b].mean(-1).flatten()
        scale = float(rng.uniform(0.55, 0.95)) / max(float(torch.quantile(lum, 0.95)), 1e-4)
        bg = torch.as_tensor(backgrounds.sample(rng, S))
        out_img[b] = torch.where(cover[b][..., None] > 0, radiance[b] * scale, bg)
    # Downsample: anti-aliased image and averaged targets.
    def down(x):
        return F.avg_pool2d(x.permute(0, 3, 1, 2), SUPERSAMPLE).permute(0, 2, 3, 1)

    img = down(out_img)
    cov = down(cover[..., None])[..., 0]
    part_d = down((part * cover)[..., None])[..., 0]
    face_d = down((face * cover)[..., None])[..., 0]
    n_d = F.normalize(down(n_cam * (cover * (1 - part))[..., None]), dim=-1, eps=1e-8)
    uv_d = down(uv * (cover * (1 - part))[..., None]) / down((cover * (1 - part))[..., None]).clamp(min=1e-6)
    skin_full = cov - part_d
    label = np.zeros((B, size, size), np.uint8)
    label[(skin_full > 0.99).numpy()] = 1
    label[((skin_full > 0.99) & (face_d > 0.5)).numpy()] = 2
    label[(part_d > 0.5).numpy()] = 3
    images = []
    for b in range(B):
        x = img[b].numpy()
        x = x * rng.uniform(0.85, 1.15, 3)  # white balance
        x = np.clip(x, 0, 1) ** (1 / 2.2 * rng.uniform(0.9, 1.1))
        if rng.random() < 0.6:
            x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.3, 1.3))
        x = x + rng.normal(0, rng.uniform(0, 0.03), x.shape)
        x8 = np.clip(x * 255 + 0.5, 0, 255).astype(np.uint8)
        if rng.random() < 0.7:
            ok, enc = cv2.imencode(".jpg", x8[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(35, 96))])
            x8 = cv2.imdecode(enc, cv2.IMREAD_COLOR)[..., ::-1]
        images.append(np.ascontiguousarray(x8))
    return {
        "image": np.stack(images),
        "normals": np.clip(np.round(n_d.numpy() * 127), -127, 127).astype(np.int8),
        "uv": np.clip(np.round(uv_d.numpy() * 65535), 0, 65535).astype(np.uint16),
        "label": label,
    }


def person_states(template, model, seed: int, rng: np.random.Generator, count: int):
    """``count`` (head verts, part verts) of person ``seed``: neutral, their expression, or a random mix."""
    from core.bench.synthetic import make_person

    person = make_person(template, seed)
    # The generator's identity offsets move the skin only: carry each eyeball with its eye
    # ring and the mouth's parts with the mouth ring, as the bench photo renders do.
    t = template
    names = np.array(t.part_names)[t.part_vert_part]
    shift = np.zeros_like(t.part_verts)
    for part, ring in (("eyeball", None), ("teeth", "mouth_ring"), ("gums", "mouth_ring"), ("tongue", "mouth_ring")):
        for side, eye_ring in ((".L", "eye_l_ring"), (".R", "eye_r_ring")) if part == "eyeball" else (("", ring),):
            m = np.char.startswith(names.astype(str), part + side)
            ids = t.regions[eye_ring]
            shift[m] = person.verts[ids].mean(0) - t.verts[ids].mean(0) - (person.parts[m] - t.part_verts[m]).mean(0)
    shift = shift.astype(np.float32)
    out = []
    expr_ids = np.flatnonzero(template.ctrl_is_expression)
    with torch.no_grad():
        base = model.deform(torch.as_tensor(np.asarray(template.ctrl_default, np.float64))[None])
    for _ in range(count):
        r = rng.random()
        if r < 0.35:
            out.append((person.verts, person.parts + shift))
        elif r < 0.6:
            out.append((person.verts_expr, person.parts_expr + shift))
        else:
            # A random expression on top of the person's identity: the deltas of a few
            # expression controllers added to the neutral head (and parts).
            ctrl = np.asarray(template.ctrl_default, np.float64).copy()
            pick = rng.choice(expr_ids, size=int(rng.integers(1, 5)), replace=False)
            lo, hi = template.ctrl_bounds[pick, 0], template.ctrl_bounds[pick, 1]
            ctrl[pick] = np.clip(rng.uniform(0.0, 0.8, len(pick)), lo, hi)
            with torch.no_grad():
                moved = model.deform(torch.as_tensor(ctrl)[None])
            out.append((person.verts + (moved.verts[0] - base.verts[0]).numpy().astype(np.float32),
                        person.parts + shift + (moved.parts[0] - base.parts[0]).numpy().astype(np.float32)))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=pathlib.Path)
    p.add_argument("--people", type=int, default=600)
    p.add_argument("--per-person", type=int, default=12)
    p.add_argument("--first", type=int, default=0, help="index of the first person (to extend a set)")
    p.add_argument("--validation", action="store_true", help="render the validation people instead")
    p.add_argument("--seed", type=int, default=0, help="seed of the views, lights and looks")
    p.add_argument("--size", type=int, default=SIZE)
    p.add_argument("--shard", type=int, default=256, help="samples per shard file")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--glasses", type=float, default=0.0, metavar="SHARE",
                   help="share of samples wearing glasses (frames; default 0)")
    p.add_argument("--hair-edge", action="store_true",
                   help="hair caps painted per pixel with a hairline from soft to sharp")
    p.add_argument("--hair-texture", action="store_true",
                   help="hair caps with image-space strands instead of a flat colour")
    args = p.parse_args(argv)
    from core.template.build import load_default
    from core.template.deform import TemplateModel

    with torch.no_grad():
        return _generate(args, load_default, TemplateModel)


def _generate(args, load_default, TemplateModel) -> int:
    template = load_default()
    model = TemplateModel(template, dtype=torch.float64)
    scene = Scene(template)
    backgrounds = Backgrounds()
    seeds = validation_seeds(args.people) if args.validation else training_seeds(args.people, args.first)
    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([args.seed, args.first, int(args.validation)])
    pending: list = []
    buffer: dict[str, list] = {}
    shard = len(list(args.out.glob("shard_*.npz")))
    written = 0
    t0 = time.perf_counter()

    def flush(final: bool = False) -> None:
        nonlocal shard, buffer
        while buffer and (len(buffer["image"]) >= args.shard or (final and buffer["image"])):
            take = {k: np.stack(v[:args.shard]) for k, v in buffer.items()}
            buffer = {k: v[args.shard:] for k, v in buffer.items()}
            path = args.out / f"shard_{shard:04d}.npz"
            np.savez(str(path) + ".tmp.npz", **take)
            os.replace(str(path) + ".tmp.npz", path)
            shard += 1
            if not buffer["image"]:
                buffer = {}

    for i, seed in enumerate(seeds):
        pending += person_states(template, model, seed, rng, args.per_person)
        while len(pending) >= args.batch or (i == len(seeds) - 1 and pending):
            batch, pending = pending[:args.batch], pending[args.batch:]
            out = render_batch(scene, batch, rng, backgrounds, args.size, args.hair_texture, args.hair_edge,
                               args.glasses)
            for k, v in out.items():
                buffer.setdefault(k, []).extend(list(v))
            written += len(batch)
            flush()
        if (i + 1) % 10 == 0 or i == len(seeds) - 1:
            rate = written / (time.perf_counter() - t0)
            print(f"{i + 1}/{len(seeds)} people, {written} samples, {rate:.1f} samples/s", flush=True)
    flush(final=True)
    (args.out / "recipe.json").write_text(json.dumps({
        "seeds": [int(seeds[0]), int(seeds[-1])], "per_person": args.per_person, "size": args.size,
        "seed": args.seed, "validation": args.validation, "hair_texture": bool(args.hair_texture), "hair_edge": bool(args.hair_edge),
        "glasses": float(args.glasses)}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
