"""Write a fit's files: result.obj/.glb/.npz, report.json, overlay.png, albedo/normal/preview.png.

They are written into a private folder, then published all or nothing
(``core/fit/result_set.py``).
"""

from __future__ import annotations

import json
import pathlib
import shutil
import tempfile

import numpy as np
import torch
from PIL import Image, ImageDraw

from bridge.template import SHAPE_KEY_MIN_MOVE

from core.export import Armature, MeshData, Skin, write_glb, write_obj
from core.geometry.camera import Cameras
from core.render import render_normals
from core.template import Template
from core.template.mesh_layout import corner_uvs, padded_part_polygons, padded_polygons, part_corner_uvs
from core.texture import write_texture_files

from .api import FitResult
from .result_set import publish_result_set

# The overlay is drawn at most this many pixels on its long side.
OVERLAY_MAX = 1024


def write_result_files(out_dir, template: Template, result: FitResult, photos=None, landmarks=None) -> dict:
    """Write everything for one fit, all or nothing; returns {file name: path in ``out_dir``}.

    photos, landmarks: the fit's ``Photo``s and ``FaceLandmarks`` (``FitInputs``),
    for the overlay and, with the result's texture maps, the texture files."""
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    staging = pathlib.Path(tempfile.mkdtemp(prefix=".likeness-", dir=out))
    try:
        _, report = _write_into(staging, template, result, photos, landmarks)
        return publish_result_set(out, staging, report)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_into(out: pathlib.Path, template: Template, result: FitResult, photos, landmarks):
    a, meta = result.arrays, result.meta
    polys = padded_polygons(template)
    uvs = corner_uvs(template, polys)
    paths = {}

    paths["obj"] = out / "result.obj"
    write_obj(paths["obj"], a["verts_neutral"], polys, uvs, name="likeness_head")
    paths["obj_posed"] = out / "result_posed.obj"
    write_obj(paths["obj_posed"], a["verts"], polys, uvs, name="likeness_head_posed")
    paths["obj_parts"] = out / "result_eyes_mouth.obj"
    part_polys = padded_part_polygons(template)
    write_obj(paths["obj_parts"], a["parts_neutral"], part_polys, part_corner_uvs(template, part_polys),
              name="likeness_eyes_mouth")

    material = meta.get("material")
    if photos and result.textures is not None:
        paths.update(write_texture_files(out, template, a, [p.rgb for p in photos], result.textures))
        material = result.textures.to_material()

    names = meta.get("expression_names", [])
    paths["glb"] = out / "result.glb"
    write_glb(paths["glb"], result_meshes(template, a["verts_neutral"], a["parts_neutral"], names,
                                          a["expression_deltas"], a.get("part_expression_deltas"), material),
              armature=Armature(list(template.joint_names), template.joint_parents, a["joint_rest"].astype(np.float64)))

    paths["npz"] = out / "result.npz"
    np.savez_compressed(paths["npz"], **a, meta=np.frombuffer(json.dumps(_jsonable(meta)).encode(), dtype=np.uint8))

    report = {k: v for k, v in meta.items() if k in ("stages", "seconds", "landmark_error_iod", "device",
                                                    "landmark_error_iod_per_view", "views", "animation_check", "multiview",
                                                    "teeth_seated_mm", "rig_ready", "heldout_landmark_error_iod",
                                                    "iris_color", "batch")}

    if photos:
        paths["overlay"] = out / "overlay.png"
        draw_overlay(paths["overlay"], template, result, photos[0].rgb, None if landmarks is None else landmarks[0])
    return paths, _jsonable(report)


def _moving_keys(names: list[str], deltas: np.ndarray | None) -> dict[str, np.ndarray]:
    """name -> (N, 3) deltas, only for the keys that move this mesh."""
    if deltas is None or not len(deltas):
        return {}
    moves = np.abs(deltas).max(axis=(1, 2)) > SHAPE_KEY_MIN_MOVE
    return {n: deltas[i] for i, n in enumerate(names) if moves[i]}


def result_meshes(template: Template, verts: np.ndarray, parts: np.ndarray, expression_names: list[str],
                  expression_deltas: np.ndarray, part_expression_deltas: np.ndarray | None,
                  material=None) -> list[MeshData]:
    """The GLB's meshes: the head (skin weights, UVs, material) and the eyes, teeth and tongue
    (each vertex rigid on its joint), each with the expression keys that move it.

    verts: (N, 3) neutral head; parts: (P, 3) neutral parts; *_deltas: (E, N|P, 3) at each key's value 1.
    """
    polys = padded_polygons(template)
    head = MeshData("likeness_head", verts, polys, corner_uvs(template, polys),
                    skin=Skin(template.skin_idx, template.skin_w),
                    shape_keys=_moving_keys(expression_names, expression_deltas), material=material)
    part_joint = np.asarray(template.part_joint, np.int64)[:, None]
    part_polys = padded_part_polygons(template)
    eyes_mouth = MeshData("likeness_eyes_mouth", parts, part_polys, part_corner_uvs(template, part_polys),
                          skin=Skin(part_joint, np.ones(part_joint.shape, np.float32)),
                          shape_keys=_moving_keys(expression_names, part_expression_deltas))
    return [head, eyes_mouth]


def template_expression_deltas(template: Template) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The expression controllers of the neutral template at their upper bound.

    Returns (names (E,), head deltas (E, N, 3), part deltas (E, P, 3))."""
    from core.template import TemplateModel
    from core.template.deform import expression_deltas

    model = TemplateModel(template)
    ids = np.flatnonzero(template.ctrl_is_expression)
    head, part = expression_deltas(model, model.default_controllers(), torch.as_tensor(ids))
    return [template.ctrl_names[i] for i in ids], head.numpy(), part.numpy()


def write_template_glb(path, template: Template) -> None:
    """The neutral template as a rigged GLB (the yardstick of the animation check)."""
    names, deltas, part_deltas = template_expression_deltas(template)
    write_glb(path, result_meshes(template, template.verts, template.part_verts, names, deltas, part_deltas),
              armature=Armature(list(template.joint_names), template.joint_parents,
                                template.joint_rest.astype(np.float64)))


def draw_overlay(path, template: Template, result: FitResult, rgb: np.ndarray, detected=None) -> None:
    """The fitted mesh (shaded, half transparent) and landmarks over the photo of view 0."""
    h, w = rgb.shape[:2]
    s = min(1.0, OVERLAY_MAX / max(h, w))
    a = result.arrays
    cams = Cameras.from_numpy(a["K"][:1], a["R"][:1], a["t"][:1], w, h, dtype=torch.float32).scaled(s)
    verts = torch.as_tensor(a["verts"])[None]
    normals, mask = render_normals(verts, torch.as_tensor(template.tris), cams)
    shade = (-normals[0, ..., 2]).clamp(0, 1).numpy()
    mask = mask[0].numpy()[..., None]
    photo = np.asarray(Image.fromarray(rgb).resize((cams.width, cams.height), Image.BILINEAR), dtype=np.float32)
    tint = np.array([0.75, 0.85, 1.0], np.float32) * 255 * (0.25 + 0.75 * shade[..., None])
    img = photo * (1 - 0.55 * mask) + tint * 0.55 * mask
    im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    r = max(1, int(round(2 * max(cams.width, cams.height) / 512)))
    if detected is not None:
        for x, y in np.asarray(detected.points, np.float32)[:468] * s:
            draw.ellipse([x - r, y - r, x + r, y + r], fill=(40, 220, 60))
    for x, y in a["landmarks_projected"][0][:468] * s:
        draw.ellipse([x - r, y - r, x + r, y + r], fill=(235, 50, 50))
    im.save(path)


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items() if not hasattr(v, "base_color_png")}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return x
