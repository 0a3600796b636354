"""Build a .blend of a head mesh bound to an armature, from arrays: the Rigify-rigged test head.

    .venv/bin/python scripts/rigify_head.py IN.npz OUT.blend

IN.npz (``core.bench.heads.rigify_head`` writes it): ``verts`` (N, 3) world metres, Z up;
``polys`` (P, K) vertex ids padded with -1; ``uvs`` (P, K, 2) per corner; ``bone_names``
(B,) str; ``parents`` (B,) int (-1: root); ``heads``, ``tails`` (B, 3); ``rolls`` (B,)
radians; ``weight_vertex``, ``weight_bone`` (W,) int and ``weight_value`` (W,) float: the
skin weights. Writes a mesh object "Head" with UVs and one vertex group per weighted bone,
parented to an armature object "Rig" through an Armature modifier. Runs under the ``bpy``
module (Blender as a Python module).
"""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src")
    parser.add_argument("dst")
    args = parser.parse_args(argv)

    import bpy
    import numpy as np

    d = np.load(args.src)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    polys = [[int(i) for i in row if i >= 0] for row in d["polys"]]
    mesh = bpy.data.meshes.new("Head")
    mesh.from_pydata([tuple(map(float, v)) for v in d["verts"]], [], polys)
    layer = mesh.uv_layers.new(name="UVMap")
    corner_uvs = np.concatenate([d["uvs"][p, : len(row)] for p, row in enumerate(polys)])
    layer.data.foreach_set("uv", corner_uvs.astype(np.float32).ravel())
    mesh.validate()
    head = bpy.data.objects.new("Head", mesh)
    bpy.context.scene.collection.objects.link(head)

    arm = bpy.data.armatures.new("Rig")
    rig = bpy.data.objects.new("Rig", arm)
    bpy.context.scene.collection.objects.link(rig)
    bpy.context.view_layer.objects.active = rig
    bpy.ops.object.mode_set(mode="EDIT")
    names = [str(n) for n in d["bone_names"]]
    bones = []
    for name, h, t, roll in zip(names, d["heads"], d["tails"], d["rolls"]):
        bone = arm.edit_bones.new(name)
        bone.head, bone.tail, bone.roll = tuple(map(float, h)), tuple(map(float, t)), float(roll)
        bones.append(bone)
    for bone, parent in zip(bones, d["parents"]):
        if parent >= 0:
            bone.parent = bones[int(parent)]
    bpy.ops.object.mode_set(mode="OBJECT")

    groups = {}
    for v, b, w in zip(d["weight_vertex"], d["weight_bone"], d["weight_value"]):
        name = names[int(b)]
        if name not in groups:
            groups[name] = head.vertex_groups.new(name=name)
        groups[name].add([int(v)], float(w), "REPLACE")
    head.parent = rig
    modifier = head.modifiers.new("Armature", "ARMATURE")
    modifier.object = rig
    bpy.ops.wm.save_as_mainfile(filepath=args.dst)
    print(f"wrote {args.dst}: {len(mesh.vertices)} vertices, {len(names)} bones, {len(groups)} vertex groups")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
