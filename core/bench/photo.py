"""The head a user gets from photos, scored against the true head.

Exactly the user's path: generated people (``core.bench.synthetic.make_person``:
macrodetails, asymmetry, local targets and a smooth random displacement, so
wider than the fitter's controllers) are rendered photo-like in Cycles
(``scripts/render_photo.py`` in its own process: textured skin, eyes, teeth,
key/fill/rim lights of varied colour temperature, plain, gradient or
cluttered backgrounds, a 35–135 mm-equivalent lens and distance fixed per
person) and written as image files: JPEG with the EXIF 35 mm focal length, or
PNG without it. ``likeness fit`` runs on those files with its default options
in a subprocess, as a user runs it; nothing else reaches the fitter. Its
``result.obj`` (the neutral head, Y up) is scored against the rendered
surface (``core.bench.score``: similarity ICP, then surface distances over the
face), beside three heads that see no photo: the default head, the mean head
of the tuning people, and the rig oracle (the shipped controllers fitted to
the true head in 3-D, ``core.bench.bounds.rig_oracle``), and the floor (the
person's own control mesh, whose subdivision is the rendered surface).

People: ``TUNE_SEEDS`` (tune on these) and ``HELD_OUT_SEEDS`` (the README's
figures; ``--quick`` never touches them). Each person also has an expression
rendering (same lights and lens, front view) whose fit is scored twice: the
posed result against the expressive truth and the neutral result against the
true neutral head (``neutral_mean_mm``).

Scored face region: the template's ``face_mask`` vertex ids; a vertex of the
rendered (subdivided) surface belongs to the face region, and to a region
(nose, cheeks, forehead, jaw, eyes, mouth: ``core.bench.score.face_regions``),
when its nearest vertex of the person's control mesh does. Every score is
given twice: per vertex (``*_mean_mm``, the figures of record) and by area
(``fit_area_mm``, ``default_area_mm``, ``neutral_area_mm``: see
``core.bench.score``), the one that does not depend on how either mesh is
tessellated and so compares a fit through an imported head (``--template``)
with the default head's. Through an imported head two more baselines: the
head untouched (``template``) and laid on the person (``template_floor``:
each of its vertices at its own point of the default head's surface, carried
onto the person's control mesh, ``core.bench.heads.laid_on``): what a perfect
fit through that mesh would give, as the floor is for the default head.

Renders are cached under ``$LIKENESS_CACHE/photo`` keyed by a hash of the
scene (every array the render script reads, for all views: the person's
surface, paint, lights, lens, cameras, size and samples) and the render
scripts' source; the JSON's ``recipe_hash`` hashes those keys and the view
sets, ``renders_hash`` the image files the fits read. Fits are never cached. Per person, a picture (true head, default
head, fit; front, three-quarter, profile; error heat maps) goes to the
output folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import subprocess
import sys
import time

import numpy as np

TUNE_SEEDS = (301, 302, 303, 304)
HELD_OUT_SEEDS = (305, 306, 307, 308)
# View name -> (yaw, pitch) degrees around the person's front (itself within ±10° of frontal).
VIEW_ANGLES = {"front": (0, 0), "yaw+30": (30, 0), "yaw-30": (-30, 0), "yaw+15": (15, 0), "yaw-15": (-15, 0),
               "pitch+10": (0, 10), "pitch-10": (0, -10)}
VIEW_SETS = {1: ("front",), 3: ("front", "yaw+30", "yaw-30"), 7: tuple(VIEW_ANGLES)}
LENSES_35MM = (35, 50, 70, 85, 105, 135)
# The 35 mm-equivalent lens frames a head this far away at 85 mm; others keep the framing.
DISTANCE_AT_85MM = 0.75
RECIPE_VERSION = 1
REPO = pathlib.Path(__file__).resolve().parents[2]
RENDER_SCRIPTS = ("scripts/render_photo.py", "scripts/render_multiview.py", "scripts/derive_landmark_embedding.py",
                  "scripts/blender_scene.py")
# Kelvin -> linear RGB of a blackbody, normalised to the brightest channel (a short table, interpolated).
KELVIN_RGB = ((2700, (1.0, 0.63, 0.32)), (3500, (1.0, 0.74, 0.50)), (4500, (1.0, 0.84, 0.70)),
              (5500, (1.0, 0.93, 0.87)), (6500, (1.0, 1.0, 1.0)), (8000, (0.84, 0.89, 1.0)))
SKIN_TONES = {"african": (0.30, 0.18, 0.12), "asian": (0.72, 0.53, 0.40), "caucasian": (0.82, 0.60, 0.50)}


def _fit_args_plain(ctx) -> list[str]:
    return []


def _every_stage(**weights) -> dict:
    """Schedule overrides setting the same term weights in the rig, joint and vertex stages."""
    return {"stages": {name: {"weights": dict(weights)} for name in ("rig", "joint", "vertex")}}


# The landmarks plus the shading term (core/fit/shading.py) in the rig stage, light held per
# stage: the setting that measured least bad on the tuning people (README, *Shading*). Agreement
# between photos stays off, so each ablation adds one cue to the landmarks.
SHADING_SCHEDULE = _every_stage(consistency=0.0)
SHADING_SCHEDULE["stages"]["rig"]["weights"]["shading"] = 1.0


def _fit_args_shading(ctx) -> list[str]:
    return ["--schedule", json.dumps(SHADING_SCHEDULE), "--cues", "none"]


# The landmark terms only: the pixel terms the shipped fit uses turned off.
LANDMARKS_SCHEDULE = _every_stage(consistency=0.0, shading=0.0)


def _fit_args_landmarks(ctx) -> list[str]:
    return ["--schedule", json.dumps(LANDMARKS_SCHEDULE), "--cues", "none"]


def _fit_args_outline(ctx) -> list[str]:
    """The landmarks plus the head's outline (the face prior's head mask only; its normals unread)."""
    return ["--schedule", json.dumps(LANDMARKS_SCHEDULE), "--cues", "outline"]


def _fit_args_consistency(ctx) -> list[str]:
    """The landmarks plus agreement between photos (the colours each shows of the face); with one
    photo there is nothing to agree with and it is the landmarks' fit."""
    from core.fit.schedule import PHOTO_CONSISTENCY_OVERRIDES  # the weight the fit gives it from two photos

    return ["--schedule", json.dumps(PHOTO_CONSISTENCY_OVERRIDES), "--cues", "none"]


def _rendered_normal_maps(ctx, verts: np.ndarray, tris: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per photo, (camera-space normal map (h, w, 3), covered (h, w) bool) of the mesh (``verts``,
    ``tris``) seen by the photo's true camera."""
    import torch
    from PIL import Image

    from core.geometry.camera import Cameras
    from core.render import render_normals

    verts = torch.as_tensor(verts, dtype=torch.float64)[None]
    tris = torch.as_tensor(tris, dtype=torch.int64)
    maps = []
    for file, (K, R, t) in zip(ctx["files"], ctx["cameras"]):
        with Image.open(file) as im:
            width, height = im.size
        normals, mask = render_normals(verts, tris, Cameras.from_numpy(K, R, t, width, height))
        maps.append((normals[0].numpy(), mask[0].numpy() > 0.5))
    return maps


def _save_normal_maps(ctx, maps: list[np.ndarray], folder_suffix: str) -> list[str]:
    """``--normals`` arguments: each photo's map (h, w, 3; zero off the head) saved as .npy."""
    folder = ctx["out"].parent / (ctx["out"].name + folder_suffix)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for file, normals in zip(ctx["files"], maps):
        path = folder / (file.stem + ".npy")
        np.save(path, np.asarray(normals, np.float32))
        paths.append(str(path))
    return ["--normals", *paths]


def _normal_map_args(ctx, verts: np.ndarray, tris: np.ndarray, folder_suffix: str) -> list[str]:
    """``--normals`` files (.npy, zero off the head): the camera-space normal map of the mesh
    (``verts``, ``tris``) seen by each photo's true camera."""
    return _save_normal_maps(ctx, [n for n, _ in _rendered_normal_maps(ctx, verts, tris)], folder_suffix)


def _true_surface(ctx) -> tuple[np.ndarray, np.ndarray]:
    """(verts, tris) of the rendered surface of the photos in ``ctx``."""
    surface = np.load(ctx["files"][0].parent / "surface.npz")
    return surface["verts"], surface["tris"]


def _placed_default(ctx) -> np.ndarray:
    """(N, 3) the default head placed on the person by the similarity that best aligns their faces."""
    from core.geometry.similarity import similarity_align

    template = ctx["template"]
    return similarity_align(template.verts, ctx["person"].verts, template.regions["face_mask"])


def _fit_args_oracle_normals(ctx) -> list[str]:
    """A bound, not a user's fit: each photo gets the camera-space normal map of the true
    (rendered) surface seen by the true camera, so the gap between the pixel cues and the
    fitter shows per person."""
    return _normal_map_args(ctx, *_true_surface(ctx), "_normals")


def _fit_args_default_normals(ctx) -> list[str]:
    """A diagnosis, not a user's fit: each photo gets the normal map of the default head,
    placed on the true head by the similarity that best aligns their faces and seen by the
    true camera: a cue as good as a perfect one about pose and about the average face, and
    blind to the person. What a cue must beat to carry the person."""
    return _normal_map_args(ctx, _placed_default(ctx), ctx["template"].tris, "_default_normals")


# The share of a person's departure from the average face that the shipped face prior's normal
# maps carry on the bench's Cycles renders (``tools/eval_prior.py``, ``person_gain``, people
# 301-304, all seven views: 0.618).
PRIOR_PERSON_GAIN = 0.618


def _fit_args_shrunk_normals(ctx) -> list[str]:
    """A diagnosis, not a user's fit: exact maps shrunk toward the average face by as much as the
    face prior's maps are. Each photo gets n0 + g (n - n0), normalised, where n is the true head's
    normal, n0 the placed default head's (``default_normals``) and g = PRIOR_PERSON_GAIN; the true
    normal where the default head does not cover the pixel. Exact about pose, free of noise and
    of any bias, and carrying the share of the person the network carries: how far that share
    alone keeps the fit from the bound."""
    maps = []
    for (true_n, true_m), (default_n, default_m) in zip(_rendered_normal_maps(ctx, *_true_surface(ctx)),
                                                        _rendered_normal_maps(ctx, _placed_default(ctx),
                                                                              ctx["template"].tris)):
        mixed = default_n + PRIOR_PERSON_GAIN * (true_n - default_n)
        mixed /= np.maximum(np.linalg.norm(mixed, axis=-1, keepdims=True), 1e-9)
        both = (true_m & default_m)[..., None]
        maps.append(np.where(both, mixed, np.where(true_m[..., None], true_n, 0.0)))
    return _save_normal_maps(ctx, maps, "_shrunk_normals")


def _fit_args_shrunk_head(ctx) -> list[str]:
    """A diagnosis, not a user's fit: the normal maps of one head between the average face and the
    person, the placed default head moved PRIOR_PERSON_GAIN of the way to the person vertex by
    vertex (template topology). Unlike ``shrunk_normals`` the maps are a surface's, so several
    photos agree on it: what the shrinkage alone costs a fit of several photos."""
    placed = _placed_default(ctx)
    between = placed + PRIOR_PERSON_GAIN * (np.asarray(ctx["person"].verts, np.float64) - placed)
    return _normal_map_args(ctx, between, ctx["template"].tris, "_shrunk_head")


def _fit_args_no_prior(ctx) -> list[str]:
    return ["--cues", "none"]


# The shipped fit without the outline term (the head's silhouette in each photo).
NO_OUTLINE_SCHEDULE = _every_stage(outline=0.0)


def _fit_args_no_outline(ctx) -> list[str]:
    return ["--schedule", json.dumps(NO_OUTLINE_SCHEDULE)]


# Variant -> extra ``likeness fit`` arguments for a run (``ctx``: person, files, cameras).
# "fit" is the fit as shipped (the face prior's normals and outline; consistency only where
# several photos have no normal maps); ablations: "no_prior" (the same fit without the face
# prior), "no_outline" (without the outline term),
# "landmarks" (the landmark terms only), "shading" (+ the shading term), "outline" (+ the head's
# outline from the face prior, its normals unread), "consistency" (+ agreement between photos);
# "oracle_normals" is the bound: the fit given normal maps of the true head;
# "default_normals" the diagnosis: the fit given the default head's normal maps, posed on the true head;
# "shrunk_normals" the true head's maps shrunk toward those by as much as the face prior's maps are;
# "shrunk_head" the maps of a head that far between the two.
VARIANTS = {"fit": _fit_args_plain, "landmarks": _fit_args_landmarks, "shading": _fit_args_shading,
            "outline": _fit_args_outline, "consistency": _fit_args_consistency,
            "oracle_normals": _fit_args_oracle_normals, "no_prior": _fit_args_no_prior,
            "no_outline": _fit_args_no_outline, "default_normals": _fit_args_default_normals,
            "shrunk_normals": _fit_args_shrunk_normals, "shrunk_head": _fit_args_shrunk_head}


def add_arguments(p) -> None:
    p.add_argument("--quick", action="store_true",
                   help="two tuning people, 1 and 3 photos with EXIF, no expression runs (development; never "
                        "touches held-out people)")
    p.add_argument("--people", default=None, help="comma-separated seeds (default: tuning and held-out people)")
    p.add_argument("--photos", default=None, help="comma-separated view counts from 1,3,7 (default 1,3,7)")
    p.add_argument("--variants", default="fit", help="comma-separated subset of " + ",".join(VARIANTS))
    p.add_argument("--exif", default="both", choices=("yes", "no", "both"),
                   help="photos with the EXIF focal length (JPEG), without (PNG: the fit estimates it, and each "
                        "run reports its error), or both (without: one photo only)")
    p.add_argument("--no-expression", dest="expression", action="store_false", help="skip the expression runs")
    p.add_argument("--width", type=int, default=384, help="render width (pixels)")
    p.add_argument("--height", type=int, default=480, help="render height (pixels)")
    p.add_argument("--samples", type=int, default=24, help="Cycles samples per pixel")
    p.add_argument("--schedule", default=None, metavar="JSON",
                   help="schedule overrides passed to every fit (tuning on the tuning people)")
    p.add_argument("--out", default="out/bench_photo", help="folder for fits and pictures")
    p.add_argument("--template", default=None, metavar="NPZ",
                   help="fit through this template (an imported head); people and baselines stay the default head's")
    p.add_argument("--cache", default=None, help="render cache folder (default $LIKENESS_CACHE/photo)")


def cache_root(arg: str | None) -> pathlib.Path:
    if arg:
        return pathlib.Path(arg)
    root = os.environ.get("LIKENESS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "likeness")
    return pathlib.Path(root) / "photo"


def kelvin_rgb(kelvin: float) -> np.ndarray:
    ks = np.array([k for k, _ in KELVIN_RGB], np.float64)
    rgb = np.array([c for _, c in KELVIN_RGB], np.float64)
    return np.array([np.interp(kelvin, ks, rgb[:, i]) for i in range(3)])


def person_look(seed: int, ethnicity: np.ndarray) -> dict:
    """The frozen scene recipe of one person: lens, distance, front direction, skin,
    eyes, lights and background (JSON-able)."""
    rng = np.random.default_rng(10_000 + seed)
    tone = sum(w * np.array(SKIN_TONES[k]) for k, w in zip(SKIN_TONES, ethnicity))
    tone = np.clip(tone * rng.uniform(0.9, 1.1, 3), 0.05, 0.95)
    lens = int(LENSES_35MM[seed % len(LENSES_35MM)])
    key_yaw = float(rng.choice([-1, 1]) * rng.uniform(25, 60))
    key_k, fill_k, rim_k = rng.uniform(3000, 6500), rng.uniform(4500, 8000), rng.uniform(3000, 8000)
    key_e = float(rng.uniform(8, 16))
    lights = []
    for yaw, elev, dist, energy, kelvin, size in (
            (key_yaw, rng.uniform(15, 45), 1.0, key_e, key_k, rng.uniform(0.3, 0.9)),
            (-key_yaw * rng.uniform(0.6, 1.4), rng.uniform(-5, 20), 1.0, key_e * rng.uniform(0.15, 0.5), fill_k, 1.0),
            (rng.choice([-1, 1]) * rng.uniform(120, 160), rng.uniform(20, 50), 0.9, key_e * rng.uniform(0.4, 1.2),
             rim_k, 0.4)):
        lights.append({"yaw": round(float(yaw), 2), "elev": round(float(elev), 2), "dist": dist,
                       "energy": round(float(energy), 2), "kelvin": round(float(kelvin)), "size": round(float(size), 2)})
    background = int(seed % 3)
    clutter = []
    if background == 2:
        for _ in range(6):
            clutter.append([round(float(rng.uniform(-0.6, 0.6)), 3), round(float(rng.uniform(0.35, 0.8)), 3),
                            round(float(rng.uniform(-0.45, 0.35)), 3), round(float(rng.uniform(0.08, 0.3)), 3),
                            *np.round(rng.uniform(0.05, 0.8, 3), 3).tolist()])
    irises = ((0.25, 0.14, 0.07), (0.12, 0.22, 0.35), (0.18, 0.25, 0.12), (0.08, 0.05, 0.03))
    hair = rng.random() < 0.5
    brow = np.array((0.05, 0.035, 0.025)) if ethnicity[2] < 0.6 or rng.random() < 0.5 else np.array((0.35, 0.25, 0.15))
    return {
        "lens_35mm": lens,
        "distance_m": round(DISTANCE_AT_85MM * lens / 85.0 * float(rng.uniform(0.9, 1.1)), 3),
        "front_yaw": round(float(rng.uniform(-8, 8)), 2), "front_pitch": round(float(rng.uniform(-4, 4)), 2),
        "skin_rgb": np.round(tone, 3).tolist(),
        "lip_rgb": np.round(tone * np.array([0.78, 0.5, 0.5]), 3).tolist(),
        "brow_rgb": np.round(brow, 3).tolist(),
        "hair_cap": bool(hair), "hair_rgb": np.round(brow * rng.uniform(0.8, 1.2), 3).tolist(),
        "iris_rgb": list(irises[int(rng.integers(len(irises)))]),
        "freckles": round(float(rng.uniform(0, 1) * ethnicity[2]), 3), "pores": round(float(rng.uniform(0.1, 0.3)), 3),
        "lights": lights, "background": background,
        "bg_rgb": np.round(rng.uniform(0.1, 0.8, (2, 3)), 3).tolist(), "bg_angle": round(float(rng.uniform(0, 3.14)), 3),
        "world_rgb": np.round(rng.uniform(0.2, 0.5, 3), 3).tolist(), "clutter": clutter,
    }


def skin_paint(template, hair_cap: bool) -> np.ndarray:
    """(N, 4) per-vertex paint of the template: eyebrows, redness (cheeks, nose tip), hair
    cap, unused. Rules on the rest template: a brow is an arched band above each eye
    ring; redness is a Gaussian around the nose tip and below each eye; the hair cap
    covers the skull above and behind the forehead."""
    v = template.verts.astype(np.float64)
    paint = np.zeros((len(v), 4), np.float32)
    face = template.regions["face_mask"]
    tip = face[np.argmin(v[face, 1])]
    red = np.exp(-((v - v[tip]) ** 2).sum(1) / (2 * 0.012 ** 2))
    brow_top = -np.inf
    for side in ("l", "r"):
        ring = v[template.regions[f"eye_{side}_ring"]]
        c = ring.mean(0)
        w = np.ptp(ring[:, 0])
        out = np.sign(c[0])
        u = (v[:, 0] - c[0]) * out / w
        z0 = c[2] + 0.62 * w + 0.12 * w * (1 - np.clip(u / 0.7, -1, 1) ** 2)
        thick = 0.14 * w * (1.1 - 0.5 * np.clip(u, 0, 1))
        along = np.clip(1 - np.maximum(-0.55 - u, 0) / 0.08, 0, 1) * np.clip(1 - np.maximum(u - 0.75, 0) / 0.1, 0, 1)
        front = v[:, 1] < c[1] + 0.01
        brow = np.exp(-((v[:, 2] - z0) / thick) ** 4) * along * front
        paint[:, 0] = np.maximum(paint[:, 0], brow)
        cheek = c + np.array([0.15 * w * out, -0.01, -0.9 * w])
        red = np.maximum(red, 0.8 * np.exp(-((v - cheek) ** 2).sum(1) / (2 * 0.016 ** 2)))
        brow_top = max(brow_top, float(c[2] + 1.5 * w))
    paint[:, 1] = red
    if hair_cap:
        eyes = v[np.concatenate([template.regions["eye_l_ring"], template.regions["eye_r_ring"]])].mean(0)
        above = np.clip((v[:, 2] - brow_top) / 0.01, 0, 1)
        behind = np.clip((v[:, 1] - (eyes[1] + 0.07)) / 0.01, 0, 1) * np.clip((v[:, 2] - (eyes[2] - 0.02)) / 0.02, 0, 1)
        paint[:, 2] = np.maximum(above, behind)
    return paint


def _source_hash() -> str:
    h = hashlib.sha1()
    for rel in RENDER_SCRIPTS:
        h.update((REPO / rel).read_bytes())
    return h.hexdigest()


def person_cameras(template, verts: np.ndarray, look: dict, width: int, height: int) -> dict:
    """name -> (K, R, t) for VIEW_ANGLES around the person's face centre (OpenCV, world)."""
    from core.bench.synthetic import FACE_REGION, camera_looking_at
    from core.priors.image import focal_35mm_to_pixels

    f = focal_35mm_to_pixels(look["lens_35mm"], width, height)
    K = np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1.0]])
    centre = verts[template.regions[FACE_REGION]].mean(0)
    out = {}
    for name, (yaw, pitch) in VIEW_ANGLES.items():
        _, R, t = camera_looking_at(centre, look["front_yaw"] + yaw, look["front_pitch"] + pitch,
                                    look["distance_m"], f, width).numpy()
        out[name] = (K, R, t)
    return out


def _scene_arrays(template, person, look, state: str, cams: dict, names: list[str], width, height, samples) -> dict:
    from core.bench.multiview import eye_spheres

    verts = person.verts if state == "neutral" else person.verts_expr
    parts = person.parts if state == "neutral" else person.parts_expr
    centres, radii = eye_spheres(template, verts)
    teeth_ids = [template.part_names.index(n) for n in ("teeth.upper", "teeth.lower")]
    mouth = template.regions["mouth_ring"]
    shift = verts[mouth].mean(0) - template.verts[mouth].mean(0)
    teeth = template.part_verts + shift + (parts - person.parts)
    # Part polygons (into all part vertices) of the teeth only.
    starts, corners = template.part_poly_start, template.part_poly_verts
    polys = [corners[starts[i]:starts[i + 1]] for i in range(len(starts) - 1)]
    keep = [p for p in polys if np.isin(template.part_vert_part[p], teeth_ids).all()]
    light_pos, light_rgb = [], []
    centre = verts[template.regions["face_mask"]].mean(0)
    for li in look["lights"]:
        yaw, elev = np.radians(li["yaw"] + look["front_yaw"]), np.radians(li["elev"])
        light_pos.append(centre + li["dist"] * np.array([np.sin(yaw) * np.cos(elev), -np.cos(yaw) * np.cos(elev),
                                                         np.sin(elev)]))
        light_rgb.append(kelvin_rgb(li["kelvin"]))
    clutter = np.array(look["clutter"], np.float64).reshape(-1, 7)
    if len(clutter):
        clutter[:, :3] += centre
    return dict(
        verts=verts, poly_verts=template.poly_verts, poly_start=template.poly_start, uvs=template.uvs,
        eye_centres=centres, eye_radius=radii, paint=skin_paint(template, look["hair_cap"]),
        skin_rgb=look["skin_rgb"], lip_rgb=look["lip_rgb"], brow_rgb=look["brow_rgb"], hair_rgb=look["hair_rgb"],
        iris_rgb=look["iris_rgb"], freckles=look["freckles"], pores=look["pores"],
        teeth_verts=teeth, teeth_poly_verts=np.concatenate(keep),
        teeth_poly_start=np.concatenate([[0], np.cumsum([len(p) for p in keep])]),
        light_pos=np.array(light_pos), light_rgb=np.array(light_rgb),
        light_energy=np.array([li["energy"] for li in look["lights"]]),
        light_size=np.array([li["size"] for li in look["lights"]]),
        background=look["background"], bg_rgb=np.array(look["bg_rgb"]), bg_angle=look["bg_angle"], clutter=clutter,
        world_rgb=look["world_rgb"],
        K=np.stack([cams[n][0] for n in names]), R=np.stack([cams[n][1] for n in names]),
        t=np.stack([cams[n][2] for n in names]), width=width, height=height, samples=samples, names=np.array(names),
    )


def scene_key(arrays: dict) -> str:
    """The cache key of a scene: its arrays (every view), the recipe version and the render scripts' source."""
    h = hashlib.sha1(f"v{RECIPE_VERSION}".encode() + _source_hash().encode())
    for k in sorted(arrays):
        h.update(k.encode())
        h.update(np.ascontiguousarray(np.asarray(arrays[k])).tobytes())
    return h.hexdigest()[:12]


def render_person(template, person, look: dict, state: str, names: list[str], args, cache: pathlib.Path):
    """Render (or read from the cache) ``names`` of one person in ``state`` ("neutral" or
    "expression"). Returns (folder, cameras {name: (K, R, t)}, key)."""
    cams = person_cameras(template, person.verts, look, args.width, args.height)
    key = scene_key(_scene_arrays(template, person, look, state, cams, list(VIEW_ANGLES), args.width, args.height,
                                  args.samples))
    folder = cache / f"{person.name}_{state}_{key}"
    pngs = [folder / f"{n}.png" for n in names]
    if not all(p.exists() for p in pngs) or not (folder / "surface.npz").exists():
        folder.mkdir(parents=True, exist_ok=True)
        scene = folder / "scene.npz"
        np.savez(scene, **_scene_arrays(template, person, look, state, cams, names, args.width, args.height,
                                        args.samples))
        script = REPO / "scripts" / "render_photo.py"
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, str(script), str(scene), str(folder)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"rendering {person.name} ({state}) failed:\n{proc.stderr[-3000:]}")
        print(f"  rendered {person.name} {state}: {len(names)} views in {time.perf_counter() - t0:.0f} s", flush=True)
    for n in names:
        jpg = folder / f"{n}.jpg"
        if not jpg.exists():
            _write_jpeg_with_focal(folder / f"{n}.png", jpg, look["lens_35mm"])
    return folder, cams, key


def _write_jpeg_with_focal(png: pathlib.Path, jpg: pathlib.Path, lens_35mm: int) -> None:
    """A JPEG of ``png`` whose EXIF says the 35 mm-equivalent focal length (and the capture size)."""
    from PIL import Image

    img = Image.open(png).convert("RGB")
    exif = Image.Exif()
    exif[0x8769] = {0xA405: int(lens_35mm), 0xA002: img.width, 0xA003: img.height}
    tmp = jpg.with_name(f".{jpg.name}.{os.getpid()}.tmp.jpg")  # another bench may write the same file
    img.save(tmp, quality=92, exif=exif)
    tmp.rename(jpg)


def file_hash(paths) -> str:
    h = hashlib.sha1()
    for p in sorted(str(p) for p in paths):
        h.update(pathlib.Path(p).read_bytes())
    return h.hexdigest()


class Truth:
    """The rendered surface of one person in one state, with its face region and labels."""

    def __init__(self, template, folder: pathlib.Path, control: np.ndarray, labels: np.ndarray):
        from scipy.spatial import cKDTree

        d = np.load(folder / "surface.npz")
        self.verts, self.tris = d["verts"].astype(np.float64), d["tris"]
        nearest = cKDTree(control).query(self.verts)[1]
        is_face = np.zeros(len(control), bool)
        is_face[template.regions["face_mask"]] = True
        self.face = is_face[nearest]
        self.labels = labels[nearest]

    def score(self, template, verts: np.ndarray, camera_centre: np.ndarray | None):
        from core.bench.score import score_surface

        return score_surface(verts, template.tris, template.regions["face_mask"], self.verts, self.tris, self.face,
                             self.labels, camera_centre)


def run_fit(files: list[pathlib.Path], out: pathlib.Path, extra: list[str], device: str) -> tuple[dict, float]:
    """``likeness fit FILES --out OUT`` in a subprocess (the user's command, default options).
    Returns (report.json or {"error": ...}, seconds)."""
    cmd = [sys.executable, "-m", "core.cli", "fit", *map(str, files), "--out", str(out), "--quiet",
           "--device", device, *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=str(REPO))
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"error": (proc.stderr or proc.stdout)[-500:].strip()}, seconds
    return json.loads((out / "report.json").read_text()), seconds


def read_result(path: pathlib.Path) -> np.ndarray:
    """(N, 3) world-frame vertices of a Likeness OBJ (template topology, Y up in the file)."""
    from core.export.obj import read_obj
    from core.export.obj import obj_to_world

    return obj_to_world(read_obj(path).verts.astype(np.float64))


def neutral_pair_mm(template, a: np.ndarray, b: np.ndarray) -> float:
    """How far apart two neutral results of one person are (a neutral photo's and an expression
    photo's): the mean distance in mm between their face-mask vertices once ``b`` is moved onto
    ``a`` by the similarity that best aligns those vertices."""
    from core.geometry.similarity import similarity_align

    face = template.regions["face_mask"]
    moved = similarity_align(np.asarray(b, np.float64), np.asarray(a, np.float64), face)
    return float(np.linalg.norm(moved[face] - np.asarray(a, np.float64)[face], axis=1).mean() * 1000.0)


def neutral_pair_surface_mm(template, a: np.ndarray, b: np.ndarray) -> float:
    """How far apart two neutral results are as surfaces: after the alignment of ``neutral_pair_mm``,
    the mean distance in mm from each one's face-mask vertices to the other's surface, both ways.
    Unlike the vertex-wise figure it does not count a vertex sliding along the same surface (where a
    fit places the chin's vertices on the chin)."""
    from core.bench.score import distances_to_surface
    from core.geometry.similarity import similarity_align

    face = template.regions["face_mask"]
    a = np.asarray(a, np.float64)
    moved = similarity_align(np.asarray(b, np.float64), a, face)
    there = distances_to_surface(a[face], moved, template.tris)
    back = distances_to_surface(moved[face], a, template.tris)
    return float(0.5 * (there.mean() + back.mean()) * 1000.0)


def focal_error(report: dict, lens_35mm: float) -> float | None:
    """The fit's estimated focal length against the true lens, as a fraction (+0.1: 10 % long),
    the mean over views of their 35 mm-equivalent focal lengths; None when a view's focal
    length was given (EXIF) rather than estimated."""
    views = report.get("views", [])
    if not views or any(v.get("focal_source") in ("exif", "given") or v.get("focal_35mm") is None for v in views):
        return None
    return float(np.mean([v["focal_35mm"] for v in views]) / lens_35mm - 1.0)


def _camera_centre(cam) -> np.ndarray:
    _, R, t = cam
    return -R.T @ t


def run(args) -> dict:
    from core.bench.bounds import rig_oracle
    from core.bench.score import REGION_PREFIXES, face_regions
    from core.bench.heads import laid_on, surface_correspondence
    from core.bench.synthetic import make_person
    from core.template import load_default

    t_start = time.perf_counter()
    variants = [v for v in args.variants.split(",") if v]
    # The variant each person's picture shows: the shipped fit where it ran, else the first asked.
    drawn = "fit" if "fit" in variants else (variants[0] if variants else "fit")
    if set(variants) - set(VARIANTS):
        raise SystemExit(f"unknown variants {sorted(set(variants) - set(VARIANTS))}; choose from {sorted(VARIANTS)}")
    if args.quick:
        seeds, counts = list(TUNE_SEEDS[:2]), [1, 3]
    else:
        seeds = [int(s) for s in args.people.split(",")] if args.people else [*TUNE_SEEDS, *HELD_OUT_SEEDS]
        counts = [int(k) for k in args.photos.split(",")] if args.photos else sorted(VIEW_SETS)
    if args.photos and args.quick:
        counts = [int(k) for k in args.photos.split(",")]
    if set(counts) - set(VIEW_SETS):
        raise SystemExit(f"--photos must be among {sorted(VIEW_SETS)}")
    exif_modes = {"yes": [True], "no": [False], "both": [True, False]}["yes" if args.quick else args.exif]
    with_expression = args.expression and not args.quick
    template = load_default()
    fit_template = template
    if args.template:
        from core.template import load

        fit_template = load(args.template)
        # Where each of its vertices lies on the default head: laid on a person, the floor of a fit through it.
        fit_correspondence = surface_correspondence(template, fit_template)
    face_ids = template.regions["face_mask"]
    labels = face_regions(template)
    cache = cache_root(args.cache)
    out_root = pathlib.Path(args.out)
    out_root.mkdir(parents=True, exist_ok=True)
    names_needed = sorted({n for k in counts for n in VIEW_SETS[k]}, key=list(VIEW_ANGLES).index)
    # The mean head of the tuning people: a do-nothing baseline that knows the population.
    mean_head = np.mean([make_person(template, s).verts for s in TUNE_SEEDS], axis=0)

    runs, people, render_files, recipe = [], [], [], {}
    for seed in seeds:
        person = make_person(template, seed)
        look = person_look(seed, person.ethnicity)
        held_out = seed in HELD_OUT_SEEDS
        t0 = time.perf_counter()
        folder, cams, key = render_person(template, person, look, "neutral", names_needed, args, cache)
        states, keys = {"neutral": folder}, {"neutral": key}
        if with_expression:
            states["expression"], _, keys["expression"] = render_person(template, person, look, "expression",
                                                                        ["front"], args, cache)
        render_s = time.perf_counter() - t0
        recipe[person.name] = {"seed": seed, "keys": keys, "look": look, "person": person.recipe}
        truth = Truth(template, folder, person.verts, labels)
        truth_expr = Truth(template, states["expression"], person.verts_expr, labels) if with_expression else None
        front = _camera_centre(cams["front"])
        oracle = rig_oracle(template, person.verts.astype(np.float64), face_ids)
        base = {name: truth.score(template, v, front) for name, v in
                (("default", template.verts), ("mean_head", mean_head), ("oracle", oracle), ("floor", person.verts))}
        if args.template:  # the imported head untouched (its own do-nothing baseline) and laid on the person
            base["template"] = truth.score(fit_template, fit_template.verts, front)
            base["template_floor"] = truth.score(fit_template, laid_on(template, fit_correspondence, person.verts),
                                                 front)
        base_expr = {"default": truth_expr.score(template, template.verts, front)} if truth_expr else {}
        entry = {"person": person.name, "seed": seed, "held_out": held_out, "render_seconds": round(render_s, 1),
                 "lens_35mm": look["lens_35mm"], "background": look["background"],
                 "baselines": {k: s.summary() for k, s in base.items()}}
        print(f"{person.name} ({'held out' if held_out else 'tuning'}, {look['lens_35mm']} mm): default "
              f"{base['default'].mean_mm:.3f} mm, mean head {base['mean_head'].mean_mm:.3f}, rig oracle "
              f"{base['oracle'].mean_mm:.3f}, floor {base['floor'].mean_mm:.3f}; by area default "
              f"{base['default'].area_mean_mm:.3f}"
              + (f"; the --template head untouched {base['template'].mean_mm:.3f} (by area "
                 f"{base['template'].area_mean_mm:.3f}), laid on the person {base['template_floor'].mean_mm:.3f} "
                 f"(by area {base['template_floor'].area_mean_mm:.3f})" if args.template else ""), flush=True)
        pictures = {}
        neutral_results = {}
        # With both modes, photos without EXIF run for the smallest view count only (time).
        jobs = [(k, exif, False) for k in counts for exif in exif_modes
                if exif or k == min(counts) or len(exif_modes) == 1]
        if with_expression:
            jobs.append((1, True, True))
        for variant in variants:
            for k, exif, expr in jobs:
                views = VIEW_SETS[k]
                src = states["expression" if expr else "neutral"]
                files = [src / f"{n}.{'jpg' if exif else 'png'}" for n in views]
                render_files += files
                tag = f"{variant}_{k}photos_{'exif' if exif else 'noexif'}{'_expression' if expr else ''}"
                out = out_root / person.name / tag
                ctx = {"person": person, "files": files, "cameras": [cams[n] for n in views], "out": out,
                       "template": template}
                # --schedule (tuning) replaces a variant's own schedule overrides.
                extra = VARIANTS[variant](ctx) + (["--template", str(args.template)] if args.template else [])
                if args.schedule:
                    extra = [a for i, a in enumerate(extra) if a != "--schedule" and (i == 0 or extra[i - 1] != "--schedule")]
                    extra += ["--schedule", args.schedule]
                report, seconds = run_fit(files, out, extra, args.device)
                row = {"person": person.name, "held_out": held_out, "variant": variant, "photos": k, "exif": exif,
                       "expression": expr, "seconds": round(seconds, 1)}
                if "error" in report:
                    row.update({"error": report["error"], "fit_mean_mm": None, "fit_median_mm": None,
                                "default_mean_mm": base["default"].mean_mm, "oracle_mean_mm": base["oracle"].mean_mm,
                                "neutral_mean_mm": None, "regions": {}})
                    print(f"  {tag}: fit failed: {report['error'][-200:]}", flush=True)
                    runs.append(row)
                    continue
                neutral_verts = read_result(out / "result.obj")
                neutral = truth.score(fit_template, neutral_verts, front)
                twin = neutral_results.get((variant, k, exif)) if expr else None
                if not expr:
                    neutral_results[(variant, k, exif)] = neutral_verts
                if expr:
                    fit = truth_expr.score(fit_template, read_result(out / "result_posed.obj"), front)
                    default = base_expr["default"]
                else:
                    fit, default = neutral, base["default"]
                row.update({
                    "fit_mean_mm": fit.mean_mm, "fit_median_mm": fit.median_mm, "fit_p90_mm": fit.p90_mm,
                    "fit_result_to_true_mm": fit.result_to_true_mm, "fit_front_mm": fit.front_mm,
                    "fit_oblique_mm": fit.oblique_mm, "default_mean_mm": default.mean_mm,
                    "oracle_mean_mm": base["oracle"].mean_mm, "neutral_mean_mm": neutral.mean_mm,
                    # The same by area (topology-free: the figure to compare heads of other meshes by).
                    "fit_area_mm": fit.area_mean_mm, "default_area_mm": default.area_mean_mm,
                    "neutral_area_mm": neutral.area_mean_mm,
                    "regions": fit.regions, "landmark_error_iod": report.get("landmark_error_iod"),
                    "focal_35mm": [v.get("focal_35mm") for v in report.get("views", [])],
                    "focal_source": [v.get("focal_source") for v in report.get("views", [])],
                    "focal_error": focal_error(report, look["lens_35mm"]),
                    # The expression photo's neutral result against the neutral photo's (same variant).
                    "neutral_pair_mm": None if twin is None else neutral_pair_mm(fit_template, twin, neutral_verts),
                    "neutral_pair_surface_mm": (None if twin is None
                                                else neutral_pair_surface_mm(fit_template, twin, neutral_verts)),
                })
                runs.append(row)
                if not expr and exif and variant == drawn:
                    pictures[k] = fit
                focal = "" if row["focal_error"] is None else f", focal {100 * row['focal_error']:+.1f} %"
                if row["neutral_pair_mm"] is not None:
                    focal += (f", the two neutral heads {row['neutral_pair_mm']:.2f} mm apart "
                              f"({row['neutral_pair_surface_mm']:.2f} as surfaces)")
                print(f"  {tag}: fit {fit.mean_mm:.3f} mm (median {fit.median_mm:.3f}, p90 {fit.p90_mm:.3f}; front "
                      f"{fit.front_mm:.3f}, oblique {fit.oblique_mm:.3f}), neutral {neutral.mean_mm:.3f}, default "
                      f"{default.mean_mm:.3f}, ratio {fit.mean_mm / default.mean_mm:.2f}; by area fit "
                      f"{fit.area_mean_mm:.3f}, default {default.area_mean_mm:.3f}{focal}, {seconds:.0f} s",
                      flush=True)
        if pictures:
            k = max(pictures)
            png = out_root / f"{person.name}.png"
            draw_person(png, template, truth, base["default"], pictures[k], f"{person.name}: {k} photo(s)",
                        fit_template, fit_label=drawn)
            entry["picture"] = str(png)
        people.append(entry)

    recipe_hash = hashlib.sha1(json.dumps({"keys": {n: r["keys"] for n, r in recipe.items()}, "views": VIEW_SETS},
                                          sort_keys=True).encode()).hexdigest()[:16]
    out = {"recipe_hash": recipe_hash, "renders_hash": file_hash(set(render_files)) if render_files else None,
           "summary": summarise(runs, people, held_out=True), "summary_tuning": summarise(runs, people, held_out=False),
           "runs": runs, "people": people, "recipe": recipe, "regions": list(REGION_PREFIXES), "quick": bool(args.quick),
           "size": [args.width, args.height], "samples": args.samples, "device": args.device,
           "seconds": round(time.perf_counter() - t_start, 1)}
    out["table"] = table_rows(out)
    return out


def summarise(runs: list[dict], people: list[dict], held_out: bool) -> dict:
    """{variant: {N: figures}} over the neutral, EXIF runs of held-out (or tuning) people.
    ``ratio`` is the mean fit error over the mean default-head error."""
    base = {p["person"]: p["baselines"] for p in people}
    out: dict = {}
    for r in runs:
        if r["held_out"] != held_out or r["expression"] or not r["exif"] or r["fit_mean_mm"] is None:
            continue
        out.setdefault(r["variant"], {}).setdefault(str(r["photos"]), []).append(r)
    summary = {}
    for variant, per in out.items():
        summary[variant] = {}
        for k, rows in sorted(per.items(), key=lambda kv: int(kv[0])):
            mean = lambda key: float(np.mean([r[key] for r in rows]))  # noqa: E731
            summary[variant][k] = {
                "fit_mean_mm": mean("fit_mean_mm"), "fit_median_mm": mean("fit_median_mm"),
                "default_mean_mm": mean("default_mean_mm"),
                "fit_area_mm": mean("fit_area_mm"), "default_area_mm": mean("default_area_mm"),
                "mean_head_mm": float(np.mean([base[r["person"]]["mean_head"]["mean_mm"] for r in rows])),
                "oracle_mean_mm": mean("oracle_mean_mm"),
                "ratio": mean("fit_mean_mm") / mean("default_mean_mm"), "n_people": len(rows),
            }
            floors = [base[r["person"]].get("template_floor") for r in rows]
            if all(floors):  # a fit through an imported head: the floor of that head's mesh
                summary[variant][k]["template_floor_mm"] = float(np.mean([f["mean_mm"] for f in floors]))
                summary[variant][k]["template_floor_area_mm"] = float(np.mean([f["area_mean_mm"] for f in floors]))
    return summary


def table_rows(out: dict) -> list[dict]:
    rows = []
    for r in out["runs"]:
        rows.append({"person": r["person"], "held_out": r["held_out"], "variant": r["variant"], "photos": r["photos"],
                     "exif": r["exif"], "expr": r["expression"], "fit_mm": r["fit_mean_mm"],
                     "neutral_mm": r["neutral_mean_mm"], "default_mm": r["default_mean_mm"],
                     "oracle_mm": r["oracle_mean_mm"],
                     "ratio": None if r["fit_mean_mm"] is None else r["fit_mean_mm"] / r["default_mean_mm"],
                     "seconds": r["seconds"]})
    for which in ("summary", "summary_tuning"):
        for variant, per in out[which].items():
            for k, s in per.items():
                rows.append({"person": f"{'held-out' if which == 'summary' else 'tuning'} mean", "held_out": which == "summary",
                             "variant": variant, "photos": int(k), "exif": True, "expr": False,
                             "fit_mm": s["fit_mean_mm"], "neutral_mm": s["fit_mean_mm"],
                             "default_mm": s["default_mean_mm"], "oracle_mm": s["oracle_mean_mm"], "ratio": s["ratio"],
                             "seconds": None})
    return rows


def _draw(verts: np.ndarray, tris: np.ndarray, colours: np.ndarray, centre: np.ndarray, yaw: float,
          res: int = 256) -> np.ndarray:
    """(res, res, 3) float image: the mesh (verts (N, 3), tris (T, 3), per-vertex colours
    (N, 3)) seen from ``yaw`` degrees around ``centre``, Lambert-shaded from the camera."""
    import torch

    from core.bench.synthetic import camera_looking_at
    from core.geometry.normals import vertex_normals
    from core.render import interpolate, rasterize

    cams = camera_looking_at(centre, yaw, 0.0, 1.2, 5.5 * res, res)
    v = torch.as_tensor(verts, dtype=torch.float64)[None]
    f = torch.as_tensor(np.asarray(tris, np.int64))
    frags = rasterize(v, f, cams)
    n = vertex_normals(v, f)
    attrs = torch.cat([n, torch.as_tensor(colours, dtype=torch.float64)[None]], -1)
    img = interpolate(attrs, f, frags)[0].numpy()
    R = cams.R[0].numpy()
    to_cam = -(R.T @ np.array([0.0, 0.0, 1.0]))
    light = to_cam + np.array([0.0, 0.0, 0.4])
    light /= np.linalg.norm(light)
    shade = 0.25 + 0.75 * np.clip(np.abs((img[..., :3] * light).sum(-1)), 0, 1)
    rgb = img[..., 3:] * shade[..., None]
    mask = frags.mask[0].numpy()
    rgb[~mask] = 1.0
    return rgb


def draw_person(path: pathlib.Path, template, truth: Truth, default, fit, title: str, fit_template=None,
                vmax_mm: float = 3.0, fit_label: str = "fit") -> None:
    """True head, default head and fit (rows) from the front, three-quarter and profile
    (columns); the last two coloured by their distance to the true surface. ``fit_template``:
    the fit's own template where it is not the default head's (an imported head)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cmap = matplotlib.colormaps["inferno"]
    centre = truth.verts[truth.face].mean(0)
    grey = np.full((len(truth.verts), 3), 0.8)
    rows = [("true head", truth.verts, truth.tris, grey)]
    for name, s, t in (("default head", default, template), (fit_label, fit, fit_template or template)):
        face = np.zeros(t.num_verts, bool)
        face[t.regions["face_mask"]] = True
        col = cmap(np.clip(s.vertex_error_mm / vmax_mm, 0, 1))[:, :3] * 0.9 + 0.1
        col[~face] = 0.8
        rows.append((f"{name}: {s.mean_mm:.2f} mm", s.aligned, t.tris, col))
    fig, axes = plt.subplots(3, 3, figsize=(9.6, 9.6))
    fig.subplots_adjust(left=0.06, right=0.86, top=0.93, bottom=0.03, wspace=0.04, hspace=0.08)
    for i, (name, v, tris, col) in enumerate(rows):
        for j, (view, yaw) in enumerate((("front", 0.0), ("three-quarter", 40.0), ("profile", 90.0))):
            ax = axes[i, j]
            ax.imshow(_draw(v, tris, col, centre, yaw))
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(name)
            if i == 0:
                ax.set_title(view)
    sm = matplotlib.cm.ScalarMappable(cmap=cmap, norm=matplotlib.colors.Normalize(0, vmax_mm))
    fig.colorbar(sm, cax=fig.add_axes([0.89, 0.08, 0.02, 0.55]), label="distance to the true surface (mm)")
    fig.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
