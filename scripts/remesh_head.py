"""Remesh a head in Blender: holes filled, voxel remesh, QuadriFlow quads, Smart UV Project.

Makes a head with the default head's surface but none of its topology or UVs,
for the tests and ``likeness bench adopt`` (a head "that is not ours"):

    .venv/bin/python scripts/remesh_head.py IN.obj OUT.obj [--voxel-mm 1.5] [--faces 8000]

Runs under the ``bpy`` module (Blender as a Python module); deterministic for
the same input (QuadriFlow's seed is fixed).
"""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src")
    parser.add_argument("dst")
    parser.add_argument("--voxel-mm", type=float, default=1.5)
    parser.add_argument("--faces", type=int, default=8000)
    args = parser.parse_args(argv)

    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.wm.obj_import(filepath=args.src)
    ob = bpy.context.selected_objects[0]
    bpy.context.view_layer.objects.active = ob

    def edit(*ops):
        bpy.ops.object.mode_set(mode="EDIT")
        bpy.ops.mesh.select_all(action="SELECT")
        for op in ops:
            op()
        bpy.ops.object.mode_set(mode="OBJECT")

    # A voxel remesh of an open surface makes a thin double shell: close the neck and eyes first.
    edit(lambda: bpy.ops.mesh.fill_holes(sides=0), lambda: bpy.ops.mesh.normals_make_consistent(inside=False))
    remesh = ob.modifiers.new("voxel", "REMESH")
    remesh.mode = "VOXEL"
    remesh.voxel_size = args.voxel_mm / 1000.0
    bpy.ops.object.modifier_apply(modifier=remesh.name)
    edit(bpy.ops.mesh.remove_doubles, lambda: bpy.ops.mesh.normals_make_consistent(inside=False))
    result = bpy.ops.object.quadriflow_remesh(target_faces=args.faces, use_mesh_symmetry=False,
                                              use_preserve_sharp=False, use_preserve_boundary=False, seed=1)
    if "FINISHED" not in result:
        raise SystemExit(f"QuadriFlow failed: {result}")
    edit(bpy.ops.uv.smart_project)
    bpy.ops.wm.obj_export(filepath=args.dst, export_selected_objects=True, export_materials=False)
    print(f"wrote {args.dst}: {len(ob.data.vertices)} vertices, {len(ob.data.polygons)} polygons")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
