"""Synthetic ground truth the fitter has not seen.

An identity in the template's topology that the controllers do not span
exactly: MakeHuman macrodetail and asymmetry targets (not among the
template's controllers), random identity controllers, a random smooth
displacement field of a few millimetres and a light expression. A camera
looks at it from a random yaw (±30°) and pitch (±15°); we render the
ground-truth normal map and project the 2D landmarks from the template's
embedding (optionally with pixel noise). The fitter is given the
observations only, never the camera.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from core.fit.observations import ViewObservation
from core.geometry.camera import Cameras, axis_angle_to_matrix
from core.geometry.constants import MM
from core.render import project_surface_points, rasterize, render_normals, surface_points, visible_points
from core.template import LMK_CONTOUR, LMK_UNUSED, Template, TemplateModel
from core.template import mpfb

FACE_REGION = "face_mask"
MACRO_KINDS = ("african", "asian", "caucasian")
MACRO_GENDERS = ("female", "male")
MACRO_AGES = ("young", "old")


@dataclass
class SyntheticCase:
    """verts: (N, 3) ground-truth posed vertices; K, R, t: the hidden camera."""

    name: str
    verts: np.ndarray
    view: ViewObservation
    K: np.ndarray
    R: np.ndarray
    t: np.ndarray
    yaw_deg: float
    pitch_deg: float


def _target_deltas(template: Template, relpath: str) -> np.ndarray:
    """(N, 3) metres: a MakeHuman target on the template's vertices."""
    base_ids = template.source_vertex_id
    if (base_ids < 0).any():
        raise ValueError("synthetic identities need a template made from MakeHuman's base mesh")
    path = mpfb.data_dir() / "mpfb2" / "targets" / relpath
    full = mpfb.read_target(path, len(mpfb.read_base_obj().verts))
    return mpfb.to_world(full[base_ids])


def smooth_field(template: Template, rng: np.random.Generator, rms_m: float, sigma_m: float = 0.025,
                 bumps: int = 16) -> np.ndarray:
    """(N, 3) a smooth random 3D displacement: Gaussian bumps (``sigma_m`` wide, random
    directions, centred on random vertices), scaled to ``rms_m`` over the mesh. Being
    smooth in space (gradient ~ rms / sigma), it bends the surface without folding thin
    features such as eyelid rims, which a displacement along the normals would."""
    v = template.verts.astype(np.float64)
    centres = v[rng.choice(len(v), size=bumps, replace=False)]
    amp = rng.normal(size=(bumps, 3))
    d2 = ((v[:, None, :] - centres[None]) ** 2).sum(-1)
    field = np.exp(-d2 / (2 * sigma_m ** 2)) @ amp
    field -= field.mean(0)
    return field * rms_m / max(np.sqrt((field ** 2).sum(1).mean()), 1e-12)


def camera_looking_at(center: np.ndarray, yaw_deg: float, pitch_deg: float, dist: float, f: float,
                      res: int) -> Cameras:
    """A batch-1 float64 camera (res x res, focal ``f`` px) in front of the face (-Y side), ``dist``
    metres from ``center`` (3,), orbiting it by ``yaw_deg`` about world Z and ``pitch_deg`` about
    world X (its own angle convention, not ``Cameras.orbit``'s)."""
    base = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])  # camera looks along world +Y, image y = world -Z
    turn = axis_angle_to_matrix(torch.tensor(np.radians([[0.0, 0.0, yaw_deg], [pitch_deg, 0.0, 0.0]]))).numpy()
    R = base @ turn[0] @ turn[1]
    t = np.array([0.0, 0.0, dist]) - R @ center
    K = np.array([[f, 0, res / 2], [0, f, res / 2], [0, 0, 1.0]])
    return Cameras.from_numpy(K, R, t, res, res)


def make_case(template: Template, seed: int, res: int = 256, pixel_noise: float = 0.0,
              expression: bool = True) -> SyntheticCase:
    rng = np.random.default_rng(seed)
    model = TemplateModel(template, dtype=torch.float64)
    ctrl = np.asarray(template.ctrl_default, np.float64).copy()
    shape_ids = np.flatnonzero(~template.ctrl_is_expression)
    expr_ids = np.flatnonzero(template.ctrl_is_expression)
    pick = rng.choice(shape_ids, size=min(30, len(shape_ids)), replace=False)
    lo, hi = template.ctrl_bounds[:, 0], template.ctrl_bounds[:, 1]
    ctrl[pick] = np.clip(rng.normal(0, 0.35, len(pick)), lo[pick], hi[pick])
    if expression and len(expr_ids):
        e = rng.choice(expr_ids, size=2, replace=False)
        ctrl[e] = rng.uniform(0.1, 0.35, 2)
    macro = f"macrodetails/{rng.choice(MACRO_KINDS)}-{rng.choice(MACRO_GENDERS)}-{rng.choice(MACRO_AGES)}.target.gz"
    asym_dir = mpfb.data_dir() / "mpfb2" / "targets" / "asym"
    asym = sorted(p.name for p in asym_dir.glob("*.target.gz"))
    extra = rng.uniform(0.3, 0.7) * _target_deltas(template, macro)
    for name in rng.choice(asym, size=2, replace=False):
        extra += rng.uniform(0.3, 1.0) * _target_deltas(template, f"asym/{name}")
    extra += smooth_field(template, rng, rms_m=0.0015)
    with torch.no_grad():
        verts = model.deform(torch.as_tensor(ctrl)[None], None, torch.as_tensor(extra)[None]).verts[0].numpy()
    yaw, pitch = rng.uniform(-30, 30), rng.uniform(-15, 15)
    center = verts[template.regions[FACE_REGION]].mean(0)
    cams = camera_looking_at(center, yaw, pitch, dist=rng.uniform(0.6, 0.8), f=2.4 * res, res=res)
    K, R, t = cams.numpy()
    vt = torch.as_tensor(verts)[None]
    tris = torch.as_tensor(template.tris)
    frags = rasterize(vt, tris, cams)
    normals, mask = render_normals(vt, tris, cams, fragments=frags)
    lmk_tri = torch.as_tensor(template.lmk_tri)
    lmk_bary = torch.as_tensor(template.lmk_bary, dtype=torch.float64)
    uv, _ = project_surface_points(vt, tris, lmk_tri, lmk_bary, cams)
    uv = uv[0].numpy()
    if pixel_noise > 0:
        uv = uv + rng.normal(0, pixel_noise, uv.shape)
    visible = visible_points(surface_points(vt, tris, lmk_tri, lmk_bary), cams, frags)[0].numpy()
    kind = np.asarray(template.lmk_kind)
    # Silhouette points sit on the outline, where a depth test is unreliable;
    # a detector reports all of them, as MediaPipe does.
    weight = ((visible | (kind == LMK_CONTOUR)) & (kind != LMK_UNUSED)).astype(np.float32)
    view = ViewObservation(res, res, uv.astype(np.float32), weight, normals[0].numpy(), mask[0].numpy() > 0.5,
                           name=f"case{seed}")
    return SyntheticCase(f"case{seed}", verts.astype(np.float32), view, K, R, t, float(yaw), float(pitch))


# Expressions a person shows in their second rendering: ARKit controllers and value ranges.
PERSON_EXPRESSIONS = (
    {"mouthSmileLeft": (0.4, 0.8), "mouthSmileRight": (0.4, 0.8), "cheekSquintLeft": (0.1, 0.3),
     "cheekSquintRight": (0.1, 0.3)},
    {"jawOpen": (0.25, 0.45), "browInnerUp": (0.3, 0.7)},
    {"mouthFrownLeft": (0.3, 0.6), "mouthFrownRight": (0.3, 0.6), "browDownLeft": (0.3, 0.6),
     "browDownRight": (0.3, 0.6)},
    {"mouthSmileLeft": (0.3, 0.6), "jawOpen": (0.1, 0.25), "eyeSquintLeft": (0.2, 0.4)},
)
MUSCLE_WEIGHT = ("minmuscle-minweight", "minmuscle-maxweight", "maxmuscle-minweight", "maxmuscle-maxweight",
                 "averagemuscle-maxweight", "averagemuscle-minweight")


@dataclass
class Person:
    """A generated identity in the template's topology (metres, world frame).

    verts: (N, 3) neutral head; verts_expr: (N, 3) the same head with ``expression``;
    parts, parts_expr: (P, 3) the rigid parts (eyeballs, teeth, tongue) moved with it;
    ethnicity: (3,) weights of MACRO_KINDS; ``recipe``: what made it (for the JSON).
    """

    name: str
    seed: int
    verts: np.ndarray
    verts_expr: np.ndarray
    parts: np.ndarray
    parts_expr: np.ndarray
    expression: dict
    ethnicity: np.ndarray
    recipe: dict


def _macro_deltas(template: Template, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """(N, 3) a mix of MakeHuman macrodetails — ethnicity (Dirichlet weights), gender,
    age, muscle/weight and proportions — and what was drawn."""
    eth = rng.dirichlet(np.full(len(MACRO_KINDS), 0.7))
    gender = float(rng.uniform(0, 1))
    old = float(rng.uniform(0, 0.6))
    out = np.zeros_like(template.verts, dtype=np.float64)
    for k, w_k in zip(MACRO_KINDS, eth):
        for g, w_g in (("female", 1 - gender), ("male", gender)):
            for a, w_a in (("young", 1 - old), ("old", old)):
                out += w_k * w_g * w_a * _target_deltas(template, f"macrodetails/{k}-{g}-{a}.target.gz")
    sex = "male" if gender > 0.5 else "female"
    mw = str(rng.choice(MUSCLE_WEIGHT))
    w_mw = float(rng.uniform(0.2, 0.7))
    out += w_mw * _target_deltas(template, f"macrodetails/universal-{sex}-young-{mw}.target.gz")
    prop = str(rng.choice(("idealproportions", "uncommonproportions")))
    w_prop = float(rng.uniform(0.2, 0.8))
    out += w_prop * _target_deltas(template, f"macrodetails/proportions/{sex}-young-averagemuscle-averageweight-{prop}.target.gz")
    scale = float(rng.uniform(0.5, 0.9))
    info = {"ethnicity": dict(zip(MACRO_KINDS, np.round(eth, 3).tolist())), "gender": round(gender, 3),
            "old": round(old, 3), "muscle_weight": [mw, round(w_mw, 3)], "proportions": [prop, round(w_prop, 3)],
            "scale": round(scale, 3)}
    return scale * out, info


def make_person(template: Template, seed: int, field_mm: float = 2.0) -> Person:
    """An identity wider than the template's controllers: macrodetails (ethnicity mix,
    gender, age, muscle/weight, proportions), three asymmetry targets, 40 random local
    shape controllers and a smooth random displacement of ``field_mm`` RMS; plus the
    same head with one of PERSON_EXPRESSIONS."""
    rng = np.random.default_rng(seed)
    model = TemplateModel(template, dtype=torch.float64)
    ctrl = np.asarray(template.ctrl_default, np.float64).copy()
    shape_ids = np.flatnonzero(~template.ctrl_is_expression)
    pick = rng.choice(shape_ids, size=min(40, len(shape_ids)), replace=False)
    lo, hi = template.ctrl_bounds[:, 0], template.ctrl_bounds[:, 1]
    ctrl[pick] = np.clip(rng.normal(0, 0.4, len(pick)), lo[pick], hi[pick])
    extra, macro = _macro_deltas(template, rng)
    asym_dir = mpfb.data_dir() / "mpfb2" / "targets" / "asym"
    asym = sorted(p.name for p in asym_dir.glob("*.target.gz"))
    asym_used = {}
    for name in rng.choice(asym, size=3, replace=False):
        w = float(rng.uniform(0.3, 1.0))
        extra += w * _target_deltas(template, f"asym/{name}")
        asym_used[str(name)] = round(w, 3)
    extra += smooth_field(template, rng, rms_m=field_mm / MM)
    choice = PERSON_EXPRESSIONS[int(rng.integers(len(PERSON_EXPRESSIONS)))]
    expression = {k: round(float(rng.uniform(*r)), 3) for k, r in choice.items()}
    ctrl_expr = ctrl.copy()
    for k, v in expression.items():
        ctrl_expr[template.ctrl_names.index(k)] = v
    with torch.no_grad():
        both = model.deform(torch.as_tensor(np.stack([ctrl, ctrl_expr])), None,
                            torch.as_tensor(np.stack([extra, extra])))
    verts, parts = both.verts.numpy(), both.parts.numpy()
    recipe = {"macro": macro, "asym": asym_used, "controllers": {template.ctrl_names[i]: round(float(ctrl[i]), 3)
                                                                 for i in pick},
              "field_mm": field_mm, "expression": expression}
    eth = np.array([macro["ethnicity"][k] for k in MACRO_KINDS])
    return Person(f"person{seed}", seed, verts[0].astype(np.float32), verts[1].astype(np.float32),
                  parts[0].astype(np.float32), parts[1].astype(np.float32), expression, eth, recipe)
