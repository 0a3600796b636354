"""Open or import a file in a fresh Blender (the bpy module) and describe what an artist gets.

    python tests/blender_probe.py FILE OUT.json

Prints nothing useful; writes JSON: per mesh object its evaluated vertex
positions as the file opens (shape keys at their stored values, armature at
rest), shape keys with values, the largest number of skin influences on a
vertex, its armature; per armature its bones; every image with whether its
pixels load. glTF import adds an ``Icosphere`` bone-display mesh: skipped.
Run in its own process: bpy can be imported once per process.
"""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np

import bpy

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "scripts"))
from animation_check import evaluated_vertices  # noqa: E402  (one home for Blender's evaluated mesh)


def load(path: pathlib.Path) -> None:
    ext = path.suffix.lower()
    if ext == ".blend":
        bpy.ops.wm.open_mainfile(filepath=str(path))
        return
    bpy.ops.wm.read_factory_settings(use_empty=True)
    if ext == ".glb":
        bpy.ops.import_scene.gltf(filepath=str(path))
    elif ext == ".fbx":
        bpy.ops.import_scene.fbx(filepath=str(path))
    elif ext == ".obj":
        bpy.ops.wm.obj_import(filepath=str(path))
    else:
        raise SystemExit(f"unknown file type {ext}")




def _co(collection, n: int) -> np.ndarray:
    co = np.empty(n * 3, np.float32)
    collection.foreach_get("co", co)
    return co.reshape(-1, 3)


def describe(obj) -> dict:
    keys = obj.data.shape_keys.key_blocks[1:] if obj.data.shape_keys else []
    n = len(obj.data.vertices)
    base = _co(obj.data.vertices, n)
    counts = np.zeros(len(obj.data.vertices), np.int64)
    for v in obj.data.vertices:  # a probe, run once per file: plain loops are fine here
        counts[v.index] = sum(1 for g in v.groups if g.weight > 0)
    arm = obj.find_armature()
    return {
        "name": obj.name, "verts": evaluated_vertices(bpy, obj, world=True).tolist(), "polygons": len(obj.data.polygons),
        "keys": {k.name: k.value for k in keys},
        "key_moves": {k.name: float(np.abs(_co(k.data, n) - base).max()) for k in keys},
        "max_influences": int(counts.max(initial=0)), "armature": arm.name if arm else "",
        "uv_layers": len(obj.data.uv_layers),
        "materials": [s.material.name for s in obj.material_slots if s.material is not None],
    }


def main(argv: list[str]) -> None:
    path, out = pathlib.Path(argv[0]), pathlib.Path(argv[1])
    load(path)
    meshes = [o for o in bpy.context.scene.objects if o.type == "MESH" and not o.name.startswith("Icosphere")]
    arms = [o for o in bpy.context.scene.objects if o.type == "ARMATURE"]
    info = {
        "meshes": [describe(o) for o in meshes],
        "armatures": {a.name: [b.name for b in a.data.bones] for a in arms},
        "images": [{"name": i.name, "has_data": bool(i.has_data or i.size[0] > 0), "packed": i.packed_file is not None,
                    "filepath": bpy.path.abspath(i.filepath)} for i in bpy.data.images if i.type == "IMAGE"],
    }
    out.write_text(json.dumps(info))


if __name__ == "__main__":
    main(sys.argv[1:])
