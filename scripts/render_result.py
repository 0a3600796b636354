"""A picture of a result as an artist opens it: Workbench renders, front and three-quarter, side by side.

    .venv/bin/python scripts/render_result.py OUT/grace_hopper.blend docs/result_as_opened.png
    .venv/bin/python scripts/render_result.py OUT/grace_hopper.blend docs/result_poses.png \
        --poses jaw_25,jawOpen,mouthSmileLeft,eyeBlinkLeft,browInnerUp,neck_left

Opens the file as saved (shape keys and pose as stored, nothing reset), frames
the largest mesh, renders with Workbench (needs EGL: Debian's libegl1,
libegl-mesa0, libgl1-mesa-dri) and writes one PNG. With ``--poses`` (names
from core/template/rig_poses.py's POSES) the first row is the rest pose and
each further row one pose, front and three-quarter.
"""

from __future__ import annotations

import math
import pathlib
import sys
import tempfile

import numpy as np

import bpy

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from animation_check import apply_pose, evaluated_vertices  # noqa: E402  (poses and meshes have one home)

VIEWS = (("front", 0.0), ("three_quarter", 35.0))
SIZE = 512


def frame_camera(target: np.ndarray, radius: float, yaw_deg: float) -> bpy.types.Object:
    """A camera looking at ``target`` from the face side (-Y), turned ``yaw_deg`` about Z."""
    cam = bpy.data.objects.new("Probe Camera", bpy.data.cameras.new("Probe Camera"))
    bpy.context.scene.collection.objects.link(cam)
    cam.data.lens = 85.0
    distance = radius / math.tan(cam.data.angle / 2) * 1.1
    yaw = math.radians(yaw_deg)
    cam.location = target + distance * np.array([math.sin(yaw), -math.cos(yaw), 0.0])
    cam.rotation_euler = (math.pi / 2, 0.0, yaw)
    return cam


def main(argv: list[str]) -> None:
    poses = []
    if "--poses" in argv:
        i = argv.index("--poses")
        poses, argv = argv[i + 1].split(","), argv[:i] + argv[i + 2:]
    src, out = pathlib.Path(argv[0]), pathlib.Path(argv[1])
    bpy.ops.wm.open_mainfile(filepath=str(src))
    meshes = [o for o in bpy.data.objects if o.type == "MESH"]
    head = max(meshes, key=lambda o: len(o.data.vertices))
    co = evaluated_vertices(bpy, head, world=True)
    lo, hi = co.min(0), co.max(0)
    target, radius = (lo + hi) / 2, float(np.linalg.norm(hi - lo)) / 2
    scene = bpy.context.scene
    scene.render.engine = "BLENDER_WORKBENCH"
    scene.display.shading.light = "STUDIO"
    scene.display.shading.color_type = "TEXTURE"
    scene.render.resolution_x = scene.render.resolution_y = SIZE
    scene.render.film_transparent = False
    if poses:  # pose sheets frame the face: the upper part of the head, closer
        target, radius = target + np.array([0.0, 0.0, 0.12 * radius]), 0.72 * radius
    cams = [frame_camera(target, radius, yaw) for _, yaw in VIEWS]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for pose in (["rest", *poses] if poses else [None]):
            if pose is not None:
                why = apply_pose(bpy, head.find_armature(), head, "jaw_0" if pose == "rest" else pose)
                if why:
                    raise SystemExit(f"{src}: cannot pose {pose}: {why}")
            tiles = []
            for (name, _), cam in zip(VIEWS, cams):
                scene.camera = cam
                scene.render.filepath = str(pathlib.Path(tmp) / f"{pose}_{name}.png")
                bpy.ops.render.render(write_still=True)
                img = bpy.data.images.load(scene.render.filepath)
                px = np.array(img.pixels[:], np.float32).reshape(SIZE, SIZE, 4)[::-1]
                tiles.append((np.clip(px[..., :3], 0, 1) * 255).astype(np.uint8))
            rows.append((pose, np.concatenate(tiles, axis=1)))
    from PIL import Image, ImageDraw

    images = []
    for pose, row in rows:
        im = Image.fromarray(row)
        if pose is not None:
            ImageDraw.Draw(im).text((12, 8), pose, fill=(255, 255, 255), font=_font())
        images.append(np.asarray(im))
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(images, axis=0)).save(out)
    print(f"wrote {out}")


def _font():
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=28)
    except TypeError:  # Pillow < 10.1: the small bitmap font
        return ImageFont.load_default()


if __name__ == "__main__":
    main(sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:])
