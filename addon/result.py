"""Turning a fit result into Blender data, in one call, without touching the source objects.

A result (``bridge`` message of kind ``result``) carries ``verts_neutral``
(N, 3), ``joint_rest`` (J, 4, 4), ``joint_tails`` (J, 3),
``expression_deltas`` (E, N, 3), ``parts_neutral`` (P, 3),
``part_expression_deltas`` (E, P, 3) and meta ``expression_names`` (ARKit
names); the template (arrays, meta) gives topology, UVs and skin weights.
Everything created goes into one new collection named after the photo, so
deleting that collection and its contents restores the scene. Every shape key
is created at value 0: the result opens at rest.
"""

from __future__ import annotations

import os

import numpy as np

import bpy

from mathutils import Matrix

from . import mesh_build

SHAPE_KEY_NAME = "Likeness Fit"
CREATED_KEY = "likeness_created"  # custom property on the collection: what it holds
IRIS_COLOR_KEY = "likeness_iris_color"  # custom property on the eye material: the iris colour it was made with
DEFAULT_IRIS_COLOR = (0.22, 0.13, 0.07)  # a hazel brown (sRGB 0..1), the commonest iris colour
EYE_TEXTURE_SIZE = 512
# The eye texture's layout, as the template's eyeball UVs map it (core/template/parts.py):
# the iris fills the disc of this radius about the centre, the pupil the inner share of it.
UV_IRIS_RADIUS = 0.25
PUPIL_SHARE = 0.3
# Materials of the eyes, teeth and tongue object by the start of the part's name.
PART_MATERIALS = {"eyeball": "Eye", "cornea": "Cornea", "teeth": "Teeth", "gums": "Mouth", "tongue": "Mouth"}


class ResultError(Exception):
    """The result cannot be applied as asked; the message says why."""


def _need(buffers: dict, name: str) -> np.ndarray:
    if name not in buffers:
        raise ResultError(f"the result has no {name!r}; the core that produced it is too old or the fit failed")
    return np.asarray(buffers[name])


# What a result creates, by suffix after its name (the collection takes the bare name).
OBJECT_SUFFIXES = (" Head", " Rig", " Eyes and Mouth", " Skin", " Albedo", " Normal", " Eye", " Cornea", " Teeth",
                   " Mouth")
EXPORT_EXTENSIONS = {"GLB": ".glb", "FBX": ".fbx", "OBJ": ".obj"}


def result_name(base: str) -> str:
    """A free name for a new result: ``base`` (e.g. the first photo's file stem), numbered when taken."""
    base = base.strip() or "Likeness"
    taken = (set(bpy.data.collections.keys()) | set(bpy.data.objects.keys()) | set(bpy.data.meshes.keys())
             | set(bpy.data.armatures.keys()) | set(bpy.data.materials.keys()) | set(bpy.data.images.keys()))
    n = 1
    while True:
        name = base if n == 1 else f"{base} {n}"
        if name not in taken and not any(name + s in taken for s in OBJECT_SUFFIXES):
            return name
        n += 1


def create_result(result, template: tuple[dict, dict], *, mode: str = "NEW_OBJECT", with_armature: bool = True,
                  with_expressions: bool = True, source_mesh: bpy.types.Object | None = None,
                  name: str = "", iris_color=None) -> bpy.types.Collection:
    """Create all result data; returns the new collection. Raises ResultError before creating anything.

    name: the result's name (objects are "<name> Head", "<name> Rig", ...; numbered when taken, never
    Blender's ".001"); empty: the file stem of the result's first photo. iris_color: (r, g, b) sRGB
    0..1 of the eyes' irises; None: the colour the core read from the photo's irises, else
    DEFAULT_IRIS_COLOR."""
    arrays, meta = template
    buffers, rmeta = result.buffers, result.fields.get("meta", {})
    if iris_color is None:
        iris_color = photo_iris_color(rmeta) or DEFAULT_IRIS_COLOR
    neutral = _need(buffers, "verts_neutral").astype(np.float32)
    n = len(arrays["verts"])
    if neutral.shape != (n, 3):
        raise ResultError(f"the result has {neutral.shape[0]} vertices, the template {n}: they do not belong together")
    rest = _need(buffers, "joint_rest") if with_armature else None
    tails = _need(buffers, "joint_tails") if with_armature else None
    joint_names = rmeta.get("joint_names") or meta["joint_names"]
    if with_armature and len(joint_names) != len(rest):
        raise ResultError(f"the result has {len(rest)} joints but names {len(joint_names)}")
    names = list(rmeta.get("expression_names", []))
    deltas = buffers.get("expression_deltas") if with_expressions else None
    if deltas is not None and (len(deltas) != len(names) or (len(deltas) and deltas.shape[1] != n)):
        raise ResultError("the result's expression shape keys do not match its names or vertex count")
    part_deltas = buffers.get("part_expression_deltas") if with_expressions else None
    if part_deltas is not None and (len(part_deltas) != len(names)
                                    or (len(part_deltas) and part_deltas.shape[1] != len(arrays["part_verts"]))):
        raise ResultError("the result's eye, teeth and tongue shape keys do not match its names or parts")
    if mode == "SHAPE_KEY":
        if source_mesh is None or source_mesh.type != "MESH":
            raise ResultError("Apply as Shape Key needs the fit's template mesh (fit with Template: Selected Rig)")
        if len(source_mesh.data.vertices) != n:
            raise ResultError(f"{source_mesh.name} has {len(source_mesh.data.vertices)} vertices, the result {n}")

    views = rmeta.get("views") or [{}]
    name = result_name(name or os.path.splitext(os.path.basename(str(views[0].get("name", ""))))[0])
    coll = bpy.data.collections.new(name)
    bpy.context.scene.collection.children.link(coll)
    created: list[str] = []
    arm_obj = None
    if with_armature:
        arm_obj = mesh_build.new_armature(f"{name} Rig", joint_names, arrays["joint_parents"], rest, tails, coll)
        created.append(arm_obj.name)
    if mode == "SHAPE_KEY":
        m = np.array(source_mesh.matrix_world, dtype=np.float64)
        local = (neutral.astype(np.float64) - m[:3, 3]) @ np.linalg.inv(m[:3, :3]).T
        if source_mesh.data.shape_keys is None:
            source_mesh.shape_key_add(name="Basis", from_mix=False)
        key = source_mesh.shape_key_add(name=SHAPE_KEY_NAME, from_mix=False)
        key.data.foreach_set("co", local.astype(np.float32).ravel())
        key.value = 1.0
        coll[CREATED_KEY] = {"objects": created, "shape_key": [source_mesh.name, key.name]}
        return coll

    mesh = mesh_build.new_mesh(f"{name} Head", neutral, arrays["poly_verts"], arrays["poly_start"], arrays.get("uvs"))
    head = mesh_build.link_object(f"{name} Head", mesh, coll)
    created.append(head.name)
    if arm_obj is not None:
        mesh_build.add_vertex_groups(head, joint_names, arrays["skin_idx"], arrays["skin_w"])
        mesh_build.bind(head, arm_obj)
    # The head carries every key, also those that move only the eyes, teeth or tongue: its sliders
    # drive the parts' keys of the same name (mesh_build.drive_shape_keys).
    part_moves = frozenset() if part_deltas is None else frozenset(mesh_build.moving_keys(names, part_deltas))
    if deltas is not None and len(deltas):
        mesh_build.add_shape_keys(head, neutral, names, np.asarray(deltas, np.float32), keep=part_moves)
    materials, images = [], []
    if "albedo" in buffers and "normal_map" in buffers:
        mat, imgs = skin_material(name, buffers["albedo"], buffers["normal_map"])
        head.data.materials.append(mat)
        materials.append(mat.name)
        images.extend(img.name for img in imgs)
    parts = buffers.get("parts_neutral")
    if parts is not None and len(parts) and len(parts) == len(arrays["part_verts"]):
        pmesh = mesh_build.new_mesh(f"{name} Eyes and Mouth", parts, arrays["part_poly_verts"],
                                    arrays["part_poly_start"], arrays.get("part_uvs"))
        pobj = mesh_build.link_object(f"{name} Eyes and Mouth", pmesh, coll)
        created.append(pobj.name)
        part_mats, eye_image = part_materials(name, pmesh, arrays, meta.get("part_names", []), iris_color)
        materials += [m.name for m in part_mats]
        images += [eye_image.name] if eye_image is not None else []
        if arm_obj is not None:
            joints = np.asarray(arrays["part_joint"], np.int64)[:, None]
            mesh_build.add_vertex_groups(pobj, joint_names, joints, np.ones_like(joints, np.float32))
            mesh_build.bind(pobj, arm_obj)
        if part_deltas is not None and len(part_deltas):
            mesh_build.add_shape_keys(pobj, np.asarray(parts, np.float32), names, np.asarray(part_deltas, np.float32))
            mesh_build.drive_shape_keys(pobj, head)
    # An imported head's template lives in the default head's frame: the result goes back onto the artist's head.
    placement = Matrix(mesh_build.placement_matrix(meta).tolist())
    for obj in ([arm_obj] if arm_obj is not None else [bpy.data.objects[n] for n in created]):
        obj.matrix_world = placement
    coll[CREATED_KEY] = {"objects": created, "materials": materials, "images": images}
    return coll


def photo_iris_color(result_meta: dict) -> tuple[float, float, float] | None:
    """The iris colour the core read from the photo (sRGB 0..1), or None when it sent none or a
    malformed one."""
    value = result_meta.get("iris_color")
    try:
        rgb = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    if len(rgb) != 3 or not all(np.isfinite(rgb)) or min(rgb) < 0.0 or max(rgb) > 1.0:
        return None
    return rgb


def _image(name: str, pixels: np.ndarray, non_color: bool) -> bpy.types.Image:
    """A packed image from (S, S, 3) uint8 whose row 0 is the top (v = 1) of UV space."""
    pixels = np.asarray(pixels, np.uint8)
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ResultError(f"texture {name!r} has shape {pixels.shape}, expected (S, S, 3)")
    h, w = pixels.shape[:2]
    img = bpy.data.images.new(name, w, h, alpha=False)
    if non_color:
        img.colorspace_settings.name = "Non-Color"
    rgba = np.concatenate([pixels, np.full((h, w, 1), 255, np.uint8)], -1)[::-1]  # Blender rows start at the bottom
    img.pixels.foreach_set((rgba.astype(np.float32) / 255.0).ravel())
    img.pack()
    return img


def skin_material(name: str, albedo: np.ndarray, normal: np.ndarray):
    """A Principled material with the fitted albedo and tangent-space detail normal map.

    Returns (material, [albedo image, normal image])."""
    img_a = _image(f"{name} Albedo", albedo, non_color=False)
    img_n = _image(f"{name} Normal", normal, non_color=True)
    mat = bpy.data.materials.new(f"{name} Skin")
    if mat.node_tree is None:  # Blender 4.x; from 5.0 every material has its node tree
        mat.use_nodes = True
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    bsdf = next(n for n in nodes if n.type == "BSDF_PRINCIPLED")
    tex_a = nodes.new("ShaderNodeTexImage")
    tex_a.image, tex_a.location = img_a, (-500, 250)
    links.new(tex_a.outputs["Color"], bsdf.inputs["Base Color"])
    tex_n = nodes.new("ShaderNodeTexImage")
    tex_n.image, tex_n.location = img_n, (-700, -200)
    normal_map = nodes.new("ShaderNodeNormalMap")
    normal_map.location = (-300, -200)
    links.new(tex_n.outputs["Color"], normal_map.inputs["Color"])
    links.new(normal_map.outputs["Normal"], bsdf.inputs["Normal"])
    bsdf.inputs["Roughness"].default_value = 0.6
    return mat, [img_a, img_n]


def eye_texture(iris_color, size: int = EYE_TEXTURE_SIZE) -> np.ndarray:
    """(S, S, 3) uint8 eye colour map, row 0 the top: sclera, the iris (radial fibres, a darker
    limbal ring and collarette) in ``iris_color`` (sRGB 0..1) and a dark pupil, laid out as the
    template's eyeball UVs map it."""
    iris = np.clip(np.asarray(iris_color, np.float64)[:3], 0.0, 1.0)
    c = (np.arange(size) + 0.5) / size - 0.5
    x, y = np.meshgrid(c, -c)
    rho, ang = np.hypot(x, y) / UV_IRIS_RADIUS, np.arctan2(y, x)
    fibres = 0.82 + 0.1 * np.sin(ang * 37) * np.sin(ang * 11 + 3 * rho) + 0.08 * np.sin(ang * 71 + 1.3)
    shade = fibres * (1.0 - 0.45 * np.clip((rho - 0.8) / 0.2, 0, 1) ** 2) * (1.0 + 0.25 * np.exp(-((rho - 0.45) / 0.08) ** 2))
    img = np.where(rho[..., None] <= 1.0, iris * shade[..., None], np.array([0.93, 0.91, 0.88]))
    limbus = np.clip(1.0 - np.abs(rho - 1.0) / 0.08, 0, 1)[..., None]
    img = img * (1.0 - 0.35 * limbus)
    img = np.where(rho[..., None] <= PUPIL_SHARE, np.array([0.02, 0.02, 0.02]), img)
    return (np.clip(img, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def part_materials(name: str, mesh: bpy.types.Mesh, arrays: dict, part_names: list[str], iris_color):
    """The eyes', teeth's and tongue's materials (PART_MATERIALS), each polygon given its part's.

    Returns ([materials], the eye image or None)."""
    kinds = [next((k for p, k in PART_MATERIALS.items() if n.startswith(p)), "Mouth") for n in part_names]
    if not kinds:
        return [], None
    img = _image(f"{name} Eye", eye_texture(iris_color), non_color=False)
    made = {}
    for kind in dict.fromkeys(kinds):
        mat = bpy.data.materials.new(f"{name} {kind}")
        if mat.node_tree is None:  # Blender 4.x; from 5.0 every material has its node tree
            mat.use_nodes = True
        bsdf = next(n for n in mat.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
        if kind in ("Eye", "Cornea"):
            tex = mat.node_tree.nodes.new("ShaderNodeTexImage")
            tex.image, tex.location = img, (-500, 250)
            mat.node_tree.links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
            mat[IRIS_COLOR_KEY] = [float(v) for v in iris_color[:3]]
        flat = {"Eye": (0.9, 0.88, 0.85), "Cornea": (1.0, 1.0, 1.0), "Teeth": (0.86, 0.83, 0.74),
                "Mouth": (0.62, 0.25, 0.27)}[kind]
        if kind not in ("Eye", "Cornea"):
            bsdf.inputs["Base Color"].default_value = (*flat, 1.0)
        mat.diffuse_color = (*flat, 1.0)
        bsdf.inputs["Roughness"].default_value = {"Eye": 0.3, "Cornea": 0.02, "Teeth": 0.35, "Mouth": 0.5}[kind]
        if kind == "Cornea":  # clear and glossy over the iris
            bsdf.inputs["Transmission Weight"].default_value = 1.0
            bsdf.inputs["IOR"].default_value = 1.376
        made[kind] = mat
        mesh.materials.append(mat)
    slot = {k: i for i, k in enumerate(made)}
    starts = np.asarray(arrays["part_poly_start"])[:-1]
    first = np.asarray(arrays["part_poly_verts"])[starts]
    part_of = np.asarray(arrays["part_vert_part"])[first]
    mesh.polygons.foreach_set("material_index", np.array([slot[kinds[p]] for p in part_of], np.int32))
    return list(made.values()), img


def result_collections() -> list[bpy.types.Collection]:
    return [c for c in bpy.data.collections if CREATED_KEY in c]


def remove_result(coll: bpy.types.Collection) -> None:
    """Delete a result collection, the objects and data it created, and a shape key it added."""
    record = coll[CREATED_KEY].to_dict()
    key_ref = record.get("shape_key")
    if key_ref:
        obj = bpy.data.objects.get(key_ref[0])
        if obj is not None and obj.data.shape_keys is not None:
            key = obj.data.shape_keys.key_blocks.get(key_ref[1])
            if key is not None:
                obj.shape_key_remove(key)
            if len(obj.data.shape_keys.key_blocks) == 1:
                obj.shape_key_clear()  # the Basis was added with the key
    from .live import remove_object

    for name in record.get("objects", []):
        obj = bpy.data.objects.get(name)
        if obj is not None:
            remove_object(obj)
    for name in record.get("materials", []):
        mat = bpy.data.materials.get(name)
        if mat is not None and mat.users == 0:
            bpy.data.materials.remove(mat)
    for name in record.get("images", []):
        img = bpy.data.images.get(name)
        if img is not None and img.users == 0:
            bpy.data.images.remove(img)
    bpy.data.collections.remove(coll)


def export_path(filepath: str, fmt: str) -> str:
    """The file an export writes: ``filepath`` with the format's extension (``x.fbx`` as GLB is ``x.glb``)."""
    if fmt not in EXPORT_EXTENSIONS:
        raise ResultError(f"unknown export format {fmt!r}; choose GLB, FBX or OBJ")
    root, ext = os.path.splitext(filepath)
    return (root if ext.lower() in (*EXPORT_EXTENSIONS.values(), ".gltf") else filepath) + EXPORT_EXTENSIONS[fmt]


def _images_of(objs) -> list[bpy.types.Image]:
    images = []
    for obj in objs:
        for slot in getattr(obj, "material_slots", ()):
            if slot.material is not None and slot.material.node_tree is not None:
                images += [n.image for n in slot.material.node_tree.nodes
                           if n.type == "TEX_IMAGE" and n.image is not None and n.image not in images]
    return images


def _save_textures_beside(images, folder) -> dict:
    """Write each image as PNG into ``folder`` and point it there; returns {image: old filepath} to restore."""
    os.makedirs(folder, exist_ok=True)
    old = {}
    for img in images:
        path = os.path.join(folder, bpy.path.clean_name(img.name) + ".png")
        img.save(filepath=path)
        old[img] = img.filepath_raw
        img.filepath_raw = path
    return old


def export_result(coll: bpy.types.Collection, filepath: str, fmt: str) -> str:
    """Export a result collection's objects; returns the file written (see ``export_path``).

    GLB: every mesh, the armature, all skin influences, shape keys at 0, textures packed.
    FBX: the same, textures written as PNG to ``<name>_textures/`` beside it with relative paths.
    OBJ: the meshes only (rest shape, UVs)."""
    path = export_path(filepath, fmt)
    objs = list(coll.objects)
    if not objs:
        raise ResultError(f"{coll.name} holds no objects to export")
    view_layer = bpy.context.view_layer
    selected = [o for o in view_layer.objects if o.select_get()]
    active = view_layer.objects.active
    for o in selected:
        o.select_set(False)
    for o in objs:
        o.select_set(True)
    view_layer.objects.active = objs[0]
    restore: dict = {}
    try:
        if fmt == "GLB":
            bpy.ops.export_scene.gltf(filepath=path, export_format="GLB", use_selection=True, export_morph=True,
                                      export_skins=True, export_all_influences=True)
        elif fmt == "FBX":
            stem = os.path.splitext(os.path.basename(path))[0]
            restore = _save_textures_beside(_images_of(objs), os.path.join(os.path.dirname(path), f"{stem}_textures"))
            bpy.ops.export_scene.fbx(filepath=path, use_selection=True, add_leaf_bones=False,
                                     path_mode="RELATIVE", embed_textures=False)
        else:
            bpy.ops.wm.obj_export(filepath=path, export_selected_objects=True, export_uv=True,
                                  apply_modifiers=False)
    finally:
        for img, old in restore.items():
            img.filepath_raw = old  # the packed pixels stay in the .blend
        for o in objs:
            o.select_set(False)
        for o in selected:
            o.select_set(True)
        view_layer.objects.active = active
    return path
