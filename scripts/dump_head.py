"""Read a head out of a ``.blend`` or ``.fbx`` file with Blender, in a process of its own.

``.venv/bin/python scripts/dump_head.py FILE OUT.npz [--object NAME]`` opens the file
with the ``bpy`` module (Blender's own FBX importer for ``.fbx``), takes the
named mesh object (or the one with most vertices) and writes its vertices in
world space (metres, Blender's frame), polygons, active UV layer and shape keys
(world-space deltas from the basis) to an ``.npz``. The mesh data is read as
the artist made it: modifiers are not applied, vertex order is kept.
``core.adopt.mesh.read_head`` runs it; bpy keeps global state, so it never
runs inside the core's own process.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def _world(ob) -> np.ndarray:
    """(4, 4) the object's world matrix from its own transform and its parents' (a file written with
    ``bpy.data.libraries.write`` has no scene, so Blender never evaluated ``matrix_world``)."""
    m = np.array(ob.matrix_basis, np.float64)
    if ob.parent is not None:
        m = _world(ob.parent) @ np.array(ob.matrix_parent_inverse, np.float64) @ m
    return m


def dump(path: str, out: str, object_name: str | None) -> None:
    import bpy

    if path.lower().endswith(".blend"):
        bpy.ops.wm.open_mainfile(filepath=path, load_ui=False)
    else:
        bpy.ops.wm.read_factory_settings(use_empty=True)
        bpy.ops.import_scene.fbx(filepath=path)
    meshes = [ob for ob in bpy.data.objects if ob.type == "MESH"]
    if not meshes:
        raise SystemExit("the file has no mesh object")
    if object_name is not None:
        chosen = [ob for ob in meshes if ob.name == object_name]
        if not chosen:
            raise SystemExit(f"no mesh object named {object_name!r}; meshes: {', '.join(ob.name for ob in meshes)}")
        ob = chosen[0]
    else:
        ob = max(meshes, key=lambda o: len(o.data.vertices))
    mesh = ob.data
    n, c, f = len(mesh.vertices), len(mesh.loops), len(mesh.polygons)
    co = np.empty(n * 3, np.float64)
    mesh.vertices.foreach_get("co", co)
    m = _world(ob)
    verts = co.reshape(-1, 3) @ m[:3, :3].T + m[:3, 3]
    loops = np.empty(c, np.int64)
    mesh.loops.foreach_get("vertex_index", loops)
    starts, totals = np.empty(f, np.int64), np.empty(f, np.int64)
    mesh.polygons.foreach_get("loop_start", starts)
    mesh.polygons.foreach_get("loop_total", totals)
    order = np.argsort(starts, kind="stable")
    corners = np.concatenate([loops[s:s + t] for s, t in zip(starts[order], totals[order])]) if f else loops
    uvs = np.zeros((c, 2), np.float32)
    has_uvs = mesh.uv_layers.active is not None
    if has_uvs:
        raw = np.empty(c * 2, np.float32)
        mesh.uv_layers.active.data.foreach_get("uv", raw)
        raw = raw.reshape(-1, 2)
        uvs = np.concatenate([raw[s:s + t] for s, t in zip(starts[order], totals[order])]) if f else raw
    keys, names = [], []
    if mesh.shape_keys is not None:
        basis = mesh.shape_keys.reference_key
        for kb in mesh.shape_keys.key_blocks:
            if kb == basis:
                continue
            k = np.empty(n * 3, np.float64)
            kb.data.foreach_get("co", k)
            keys.append((k.reshape(-1, 3) - co.reshape(-1, 3)) @ m[:3, :3].T)
            names.append(kb.name)
    bones = _armature(ob, n)
    extra = {} if bones is None else {f"bone_{k}": v for k, v in bones.items() if k != "names"}
    np.savez(out, verts=verts, poly_verts=corners, poly_start=np.r_[0, np.cumsum(totals[order])].astype(np.int64),
             uvs=uvs, has_uvs=np.array(has_uvs), keys=np.array(keys).reshape(len(keys), n, 3),
             meta=np.array(json.dumps({"object": ob.name, "keys": names,
                                       "bones": bones["names"] if bones is not None else None})), **extra)


def _armature(ob, n: int):
    """The mesh's armature (its Armature modifier's object, else an armature parent): bone names
    (parents first), parents, rest frames and tails in world space, and the weights of the vertex
    groups named like bones ((N, J)); None without one."""
    arm = next((m.object for m in ob.modifiers if m.type == "ARMATURE" and m.object is not None), None)
    if arm is None and ob.parent is not None and ob.parent.type == "ARMATURE":
        arm = ob.parent
    if arm is None or not len(arm.data.bones):
        return None
    depth = {}
    for b in arm.data.bones:
        d, p = 0, b.parent
        while p is not None:
            d, p = d + 1, p.parent
        depth[b.name] = d
    bones = sorted(arm.data.bones, key=lambda b: depth[b.name])  # stable: file order within a depth
    index = {b.name: i for i, b in enumerate(bones)}
    world = _world(arm)
    rest = np.stack([world @ np.array(b.matrix_local, np.float64) for b in bones])
    tails = np.array([world[:3, :3] @ np.array(b.tail_local, np.float64) + world[:3, 3] for b in bones])
    weights = np.zeros((n, len(bones)))
    group_bone = {g.index: index[g.name] for g in ob.vertex_groups if g.name in index}
    for v in ob.data.vertices:  # vertex groups have no bulk accessor
        for g in v.groups:
            j = group_bone.get(g.group)
            if j is not None:
                weights[v.index, j] += g.weight
    return {"names": [b.name for b in bones], "parents": np.array([index[b.parent.name] if b.parent else -1
                                                                   for b in bones], np.int64),
            "rest": rest, "tails": tails, "weights": weights}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="dump a head mesh from .blend/.fbx with Blender")
    p.add_argument("file")
    p.add_argument("out")
    p.add_argument("--object", default=None)
    args = p.parse_args(argv)
    dump(args.file, args.out, args.object)
    return 0


if __name__ == "__main__":
    sys.exit(main())
