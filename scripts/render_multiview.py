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
lights and the grey world of ``scripts/blender_scene.py``.
"""

from __future__ import annotations

import pathlib
import sys

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO))

from blender_scene import (  # noqa: E402
    add_eyes, add_key_fill_lights, add_polygon_mesh, cycles_cpu, grey_world, lips_mask, render_cameras,
    scene_script_main, set_output, skin_material,
)


def build_scene(bpy, scene_data) -> None:
    """Skin mesh, eyes, lights, world and render settings into an empty file."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    skin = add_polygon_mesh(bpy, scene, "skin", scene_data["verts"], scene_data["poly_verts"],
                            scene_data["poly_start"], scene_data["uvs"])
    skin.data.materials.append(skin_material(bpy, lips_mask()))
    add_eyes(bpy, scene_data["eye_centres"], scene_data["eye_radius"])
    add_key_fill_lights(bpy, scene, np.asarray(scene_data["verts"]).mean(axis=0))
    grey_world(bpy, scene)
    cycles_cpu(scene, int(scene_data["samples"]))
    set_output(scene, scene_data["width"], scene_data["height"])


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


if __name__ == "__main__":
    sys.exit(scene_script_main(render, __doc__))
