"""Photo-like Cycles renders of a generated person, and the rendered surface itself.

Run under the ``bpy`` module in its own process (core never imports bpy):

    .venv/bin/python scripts/render_photo.py SCENE.npz OUT_DIR

Grows the scene of ``scripts/blender_scene.py`` (its mesh, eyes, camera
loop and output settings, as ``render_multiview.py`` renders it) into a photograph: the skin mesh under one level of
Catmull-Clark subdivision, a skin shader (the person's tone, procedural pores
as bump, freckles, redness on cheeks and nose, darker lips from
``textures/mpfb_lips.jpg``, painted eyebrows and an optional hair cap from a
per-vertex ``paint`` attribute), eyes, teeth, key/fill/rim area lights of
given colours, and a plain, gradient or cluttered background.

SCENE.npz holds what ``render_multiview.py`` reads (``verts``, ``poly_verts``,
``poly_start``, ``uvs``, ``eye_centres``, ``eye_radius``, ``K``, ``R``, ``t``,
``width``, ``height``, ``samples``, ``names``) plus ``paint`` (N, 4: brow,
redness, hair, unused), ``skin_rgb``, ``lip_rgb``, ``brow_rgb``, ``hair_rgb``,
``iris_rgb`` (3,), ``freckles`` and ``pores`` (scalars), ``teeth_verts``
(T, 3), ``teeth_poly_verts``, ``teeth_poly_start``, ``light_pos`` (L, 3),
``light_rgb`` (L, 3), ``light_energy`` (L,), ``light_size`` (L,),
``background`` (0 plain, 1 gradient, 2 clutter), ``bg_rgb`` (2, 3),
``clutter`` (C, 7: centre xyz, size, rgb) and ``world_rgb`` (3,).

Writes ``OUT_DIR/<name>.png`` per camera (existing files are kept: the
caller's cache) and ``OUT_DIR/surface.npz``: the rendered skin surface
(``verts`` (M, 3) metres, world frame; ``tris`` (T, 3)), the ground truth a
fit is scored against.
"""

from __future__ import annotations

import pathlib
import sys

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO))

from blender_scene import (  # noqa: E402
    add_eyes, add_polygon_mesh, cycles_cpu, lips_mask, render_cameras, scene_script_main, set_output, track_rotation,
)

SUBDIVISION_LEVELS = 1


def _photo_skin_material(bpy, d):
    mat = bpy.data.materials.new("skin")
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    bsdf = nodes["Principled BSDF"]
    bsdf.inputs["Roughness"].default_value = 0.45
    bsdf.inputs["Subsurface Weight"].default_value = 0.12
    bsdf.inputs["Subsurface Radius"].default_value = (0.01, 0.004, 0.002)
    bsdf.inputs["Subsurface Scale"].default_value = 0.3
    coords = nodes.new("ShaderNodeTexCoord")
    paint = nodes.new("ShaderNodeAttribute")
    paint.attribute_name = "paint"
    channels = nodes.new("ShaderNodeSeparateColor")
    links.new(paint.outputs["Color"], channels.inputs["Color"])

    def mix(a, b, factor):
        node = nodes.new("ShaderNodeMix")
        node.data_type = "RGBA"
        for slot, value in (("A", a), ("B", b)):
            if isinstance(value, tuple):
                node.inputs[slot].default_value = (*value, 1.0)
            else:
                links.new(value, node.inputs[slot])
        if isinstance(factor, float):
            node.inputs["Factor"].default_value = factor
        else:
            links.new(factor, node.inputs["Factor"])
        return node.outputs["Result"]

    def noise(scale, detail=2.0, stretch=(1.0, 1.0, 1.0)):
        mapping = nodes.new("ShaderNodeMapping")
        mapping.inputs["Scale"].default_value = stretch
        links.new(coords.outputs["Object"], mapping.inputs["Vector"])
        tex = nodes.new("ShaderNodeTexNoise")
        tex.inputs["Scale"].default_value = scale
        tex.inputs["Detail"].default_value = detail
        links.new(mapping.outputs["Vector"], tex.inputs["Vector"])
        return tex.outputs["Fac"]

    def ramp(value, lo, hi):
        node = nodes.new("ShaderNodeMapRange")
        node.inputs["From Min"].default_value = lo
        node.inputs["From Max"].default_value = hi
        links.new(value, node.inputs["Value"])
        return node.outputs["Result"]

    def times(a, b):
        node = nodes.new("ShaderNodeMath")
        node.operation = "MULTIPLY"
        node.use_clamp = True
        links.new(a, node.inputs[0])
        if isinstance(b, float):
            node.inputs[1].default_value = b
        else:
            links.new(b, node.inputs[1])
        return node.outputs["Value"]

    skin = tuple(float(c) for c in d["skin_rgb"])
    mottled = mix(skin, tuple(0.85 * c for c in skin), times(noise(60.0, 4.0), 0.6))
    red = mix(mottled, (min(1.0, skin[0] * 1.05), skin[1] * 0.62, skin[2] * 0.62),
              times(channels.outputs["Green"], ramp(noise(25.0), 0.3, 0.7)))
    freckle = times(ramp(noise(900.0, 1.0), 0.62, 0.70), float(d["freckles"]))
    spotted = mix(red, (skin[0] * 0.55, skin[1] * 0.4, skin[2] * 0.3), freckle)
    lips = nodes.new("ShaderNodeTexImage")
    lips.image = bpy.data.images.load(str(lips_mask()))
    lips.image.colorspace_settings.name = "Non-Color"
    lipped = mix(spotted, tuple(float(c) for c in d["lip_rgb"]), lips.outputs["Color"])
    # Eyebrow hairs: the painted brow band times a noise stretched along x (strokes).
    strokes = ramp(noise(700.0, 2.0, (0.15, 1.0, 1.0)), 0.3, 0.5)
    brow = times(channels.outputs["Red"], strokes)
    browed = mix(lipped, tuple(float(c) for c in d["brow_rgb"]), brow)
    hair = ramp(channels.outputs["Blue"], 0.3, 0.6)
    haired = mix(browed, tuple(float(c) for c in d["hair_rgb"]), times(hair, ramp(noise(400.0, 3.0), -1.0, 0.5)))
    links.new(haired, bsdf.inputs["Base Color"])
    rough = nodes.new("ShaderNodeMath")
    rough.operation = "MULTIPLY_ADD"
    rough.inputs[1].default_value = 0.4
    rough.inputs[2].default_value = 0.45
    links.new(hair, rough.inputs[0])
    links.new(rough.outputs["Value"], bsdf.inputs["Roughness"])
    bump = nodes.new("ShaderNodeBump")
    bump.inputs["Strength"].default_value = float(d["pores"])
    bump.inputs["Distance"].default_value = 0.0002
    links.new(noise(2500.0, 1.0), bump.inputs["Height"])
    links.new(bump.outputs["Normal"], bsdf.inputs["Normal"])
    return mat


def _plain_material(bpy, name, rgb, roughness):
    mat = bpy.data.materials.new(name)
    bsdf = mat.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Base Color"].default_value = (*[float(c) for c in rgb], 1.0)
    bsdf.inputs["Roughness"].default_value = roughness
    return mat


def _add_lights(bpy, scene, d, centre):
    for i, (pos, rgb, energy, size) in enumerate(zip(d["light_pos"], d["light_rgb"], d["light_energy"], d["light_size"])):
        light_data = bpy.data.lights.new(f"light{i}", type="AREA")
        light_data.energy = float(energy)
        light_data.size = float(size)
        light_data.color = tuple(float(c) for c in rgb)
        light = bpy.data.objects.new(f"light{i}", light_data)
        light.location = tuple(float(c) for c in pos)
        light.rotation_euler = track_rotation(bpy, centre - np.asarray(pos, np.float64))
        scene.collection.objects.link(light)


def _add_background(bpy, scene, d, centre):
    kind = int(d["background"])
    world = bpy.data.worlds.new("world")
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (*[float(c) for c in d["world_rgb"]], 1.0)
    world.node_tree.nodes["Background"].inputs["Strength"].default_value = 0.5
    scene.world = world
    if kind == 0:
        return
    # A wall behind the head (the face looks toward -Y), large enough for every view.
    bpy.ops.mesh.primitive_plane_add(size=4.0, location=(float(centre[0]), float(centre[1]) + 0.9, float(centre[2])),
                                     rotation=(np.pi / 2, 0.0, 0.0))
    wall = bpy.context.active_object
    mat = bpy.data.materials.new("wall")
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    bsdf = nodes["Principled BSDF"]
    bsdf.inputs["Roughness"].default_value = 0.8
    coords = nodes.new("ShaderNodeTexCoord")
    if kind == 1:
        tex = nodes.new("ShaderNodeTexGradient")
        mapping = nodes.new("ShaderNodeMapping")
        mapping.inputs["Rotation"].default_value = (0.0, 0.0, float(d["bg_angle"]))
        mapping.inputs["Location"].default_value = (0.5, 0.5, 0.0)
        mapping.inputs["Scale"].default_value = (0.5, 0.5, 1.0)
        links.new(coords.outputs["Object"], mapping.inputs["Vector"])
        links.new(mapping.outputs["Vector"], tex.inputs["Vector"])
        fac = tex.outputs["Fac"]
    else:
        tex = nodes.new("ShaderNodeTexVoronoi")
        tex.inputs["Scale"].default_value = 3.0
        links.new(coords.outputs["Object"], tex.inputs["Vector"])
        fac = tex.outputs["Distance"]
    mix = nodes.new("ShaderNodeMix")
    mix.data_type = "RGBA"
    mix.inputs["A"].default_value = (*[float(c) for c in d["bg_rgb"][0]], 1.0)
    mix.inputs["B"].default_value = (*[float(c) for c in d["bg_rgb"][1]], 1.0)
    links.new(fac, mix.inputs["Factor"])
    links.new(mix.outputs["Result"], bsdf.inputs["Base Color"])
    wall.data.materials.append(mat)
    for i, row in enumerate(np.asarray(d["clutter"]).reshape(-1, 7)):
        bpy.ops.mesh.primitive_cube_add(size=float(row[3]), location=tuple(float(c) for c in row[:3]),
                                        rotation=(0.0, 0.0, 0.5 * i))
        bpy.context.active_object.data.materials.append(_plain_material(bpy, f"clutter{i}", row[4:7], 0.6))


def build_scene(bpy, d):
    """The photo scene into an empty file; returns the skin object (subdivided at render)."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    skin = add_polygon_mesh(bpy, scene, "skin", d["verts"], d["poly_verts"], d["poly_start"], d["uvs"])
    paint = skin.data.color_attributes.new("paint", "FLOAT_COLOR", "POINT")
    paint.data.foreach_set("color", np.asarray(d["paint"], np.float32).ravel())
    skin.data.materials.append(_photo_skin_material(bpy, d))
    subd = skin.modifiers.new("subdivision", "SUBSURF")
    subd.levels = subd.render_levels = SUBDIVISION_LEVELS
    add_eyes(bpy, d["eye_centres"], d["eye_radius"])
    iris = next(m for m in bpy.data.materials if m.name.startswith("eye"))
    iris.node_tree.nodes["Color Ramp"].color_ramp.elements[1].color = (*[float(c) for c in d["iris_rgb"]], 1.0)
    teeth = add_polygon_mesh(bpy, scene, "teeth", d["teeth_verts"], d["teeth_poly_verts"], d["teeth_poly_start"])
    teeth.data.materials.append(_plain_material(bpy, "teeth", (0.78, 0.74, 0.64), 0.25))
    centre = np.asarray(d["verts"], np.float64).mean(0)
    _add_lights(bpy, scene, d, centre)
    _add_background(bpy, scene, d, centre)
    cycles_cpu(scene, int(d["samples"]))
    set_output(scene, d["width"], d["height"])
    return skin


def write_surface(bpy, skin, path: pathlib.Path) -> None:
    """The evaluated (subdivided) skin as triangles: what the camera saw."""
    depsgraph = bpy.context.evaluated_depsgraph_get()
    evaluated = skin.evaluated_get(depsgraph)
    me = evaluated.to_mesh()
    me.calc_loop_triangles()
    verts = np.zeros(len(me.vertices) * 3, np.float32)
    me.vertices.foreach_get("co", verts)
    tris = np.zeros(len(me.loop_triangles) * 3, np.int32)
    me.loop_triangles.foreach_get("vertices", tris)
    world = np.asarray(skin.matrix_world, np.float64)
    v = verts.reshape(-1, 3).astype(np.float64) @ world[:3, :3].T + world[:3, 3]
    tmp = path.with_name(".surface.tmp.npz")
    np.savez(tmp, verts=v.astype(np.float32), tris=tris.reshape(-1, 3).astype(np.int64))
    tmp.rename(path)
    evaluated.to_mesh_clear()


def render(scene_path: pathlib.Path, out_dir: pathlib.Path) -> None:
    import bpy

    d = dict(np.load(scene_path, allow_pickle=False))
    out_dir.mkdir(parents=True, exist_ok=True)
    names = [str(n) for n in d["names"]]
    todo = [i for i, n in enumerate(names) if not (out_dir / f"{n}.png").exists()]
    surface = out_dir / "surface.npz"
    if todo or not surface.exists():
        skin = build_scene(bpy, d)
        write_surface(bpy, skin, surface)
        render_cameras(bpy, d, out_dir, todo)


if __name__ == "__main__":
    sys.exit(scene_script_main(render, __doc__))
