"""Blender data from template arrays, and template arrays from an artist's rig.

Arrays follow the template's flat form (``bridge/template.py``): metres in
Blender's world frame, polygons as ``poly_verts`` + ``poly_start`` offsets.
Bulk data moves with ``foreach_set``/``foreach_get``; the few Python loops left
run once per joint, shape key or unique weight, never per frame.
"""

from __future__ import annotations

import numpy as np

import bpy

from ..bridge import template as wire

ARKIT_EXPRESSIONS = frozenset(wire.ARKIT_EXPRESSIONS)
# Regions the fitting losses use; a custom rig provides them as vertex groups named "region.<name>".
REGION_PREFIX = "region."
NEEDED_REGIONS = ("face_mask", "eye_l_ring", "eye_r_ring", "mouth_ring")
MIN_BONE_LENGTH = 1e-3
MIRROR_TOLERANCE = 1e-4  # metres
MAX_INFLUENCES = 8


def fan_triangles(poly_verts: np.ndarray, poly_start: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fan-triangulate polygons: (a, b, c), (a, c, d), ...

    poly_verts: (C,) int64 corner vertex ids; poly_start: (F+1,) int64 offsets.
    Returns tris (T, 3) int64 and tri_poly (T,) int64.
    """
    sizes = np.diff(poly_start)
    per_poly = sizes - 2
    tri_poly = np.repeat(np.arange(len(sizes), dtype=np.int64), per_poly)
    first = poly_start[:-1][tri_poly]
    # index of each triangle inside its polygon: 0, 1, ... per_poly - 1
    k = np.arange(len(tri_poly)) - np.repeat(np.cumsum(per_poly) - per_poly, per_poly)
    tris = np.stack([poly_verts[first], poly_verts[first + k + 1], poly_verts[first + k + 2]], axis=1)
    return tris.astype(np.int64), tri_poly


def new_mesh(name: str, verts: np.ndarray, poly_verts: np.ndarray, poly_start: np.ndarray,
             uvs: np.ndarray | None = None) -> bpy.types.Mesh:
    """A mesh datablock. verts: (N, 3) float; poly_verts: (C,) int; poly_start: (F+1,) int; uvs: (C, 2) float."""
    mesh = bpy.data.meshes.new(name)
    mesh.vertices.add(len(verts))
    mesh.loops.add(len(poly_verts))
    mesh.polygons.add(len(poly_start) - 1)
    mesh.vertices.foreach_set("co", np.ascontiguousarray(verts, np.float32).ravel())
    mesh.loops.foreach_set("vertex_index", np.ascontiguousarray(poly_verts, np.int32))
    mesh.polygons.foreach_set("loop_start", np.ascontiguousarray(poly_start[:-1], np.int32))
    mesh.update(calc_edges=True)
    if uvs is not None and len(uvs) == len(poly_verts):
        layer = mesh.uv_layers.new(name="UVMap")
        layer.data.foreach_set("uv", np.ascontiguousarray(uvs, np.float32).ravel())
    if mesh.validate(verbose=False):
        raise ValueError(f"{name}: the template's polygons are not a valid mesh")
    return mesh


def write_positions(mesh: bpy.types.Mesh, verts: np.ndarray) -> None:
    """Overwrite all vertex positions. verts: (N, 3) or (3N,) float32. Mesh must not be in Edit Mode."""
    mesh.attributes["position"].data.foreach_set("vector", np.ascontiguousarray(verts, np.float32).reshape(-1))
    mesh.update()


def read_positions(mesh: bpy.types.Mesh) -> np.ndarray:
    """(N, 3) float32 vertex positions (object space)."""
    out = np.empty(len(mesh.vertices) * 3, np.float32)
    mesh.attributes["position"].data.foreach_get("vector", out)
    return out.reshape(-1, 3)


def link_object(name: str, data, collection: bpy.types.Collection) -> bpy.types.Object:
    obj = bpy.data.objects.new(name, data)
    collection.objects.link(obj)
    return obj


def add_vertex_groups(obj: bpy.types.Object, joint_names: list[str], skin_idx: np.ndarray, skin_w: np.ndarray) -> None:
    """One vertex group per joint. skin_idx: (N, K) int64; skin_w: (N, K) float32 (zeros skipped)."""
    rows, cols = np.nonzero(skin_w > 0)
    joints, weights = skin_idx[rows, cols], skin_w[rows, cols]
    groups = [obj.vertex_groups.new(name=n) for n in joint_names]
    # vertex_groups.add takes many vertices with one weight: group by (joint, weight)
    order = np.lexsort((weights, joints))
    rows, joints, weights = rows[order], joints[order], weights[order]
    cut = np.flatnonzero((np.diff(joints) != 0) | (np.diff(weights) != 0)) + 1
    for start, stop in zip(np.r_[0, cut], np.r_[cut, len(rows)]):
        if stop > start:
            groups[int(joints[start])].add(rows[start:stop].tolist(), float(weights[start]), "REPLACE")


def moving_keys(names: list[str], deltas: np.ndarray) -> list[str]:
    """The names whose deltas (E, N, 3) move some vertex by more than SHAPE_KEY_MIN_MOVE."""
    moves = np.abs(np.asarray(deltas)).reshape(len(deltas), -1).max(1, initial=0.0) > wire.SHAPE_KEY_MIN_MOVE
    return [name for name, m in zip(names, moves) if m]


def add_shape_keys(obj: bpy.types.Object, basis: np.ndarray, names: list[str], deltas: np.ndarray,
                   keep: frozenset[str] = frozenset()) -> list[str]:
    """Basis + one key per name that moves this mesh (or is in ``keep``), every key at value 0 (the
    mesh opens at rest).

    basis: (N, 3) float32; deltas: (E, N, 3) float32. Returns the names of the keys added."""
    moving = set(moving_keys(names, deltas)) | set(keep)
    moves = [name in moving for name in names]
    added = [name for name, m in zip(names, moves) if m]
    if not added:
        return added
    if obj.data.shape_keys is None:
        obj.shape_key_add(name="Basis", from_mix=False)
    for name, delta, m in zip(names, deltas, moves):
        if not m:
            continue
        key = obj.shape_key_add(name=name, from_mix=False)
        key.data.foreach_set("co", (basis + delta).astype(np.float32).ravel())
        key.slider_min, key.slider_max = 0.0, 1.0
        key.value = 0.0  # Blender 5 gives a new key the value 1.0
    return added


def drive_shape_keys(follower: bpy.types.Object, leader: bpy.types.Object) -> list[str]:
    """Drive each of ``follower``'s shape keys from ``leader``'s key of the same name, so one slider
    (or one keyframe) on the head moves its eyes, teeth and tongue with it. The drivers are simple
    expressions: Blender evaluates them without running Python. Returns the names driven."""
    fkeys, lkeys = follower.data.shape_keys, leader.data.shape_keys
    if fkeys is None or lkeys is None:
        return []
    driven = []
    for kb in fkeys.key_blocks[1:]:
        if kb.name not in lkeys.key_blocks:
            continue
        fcurve = kb.driver_add("value")
        drv = fcurve.driver
        drv.type = "SCRIPTED"
        var = drv.variables.new()
        var.name, var.type = "value", "SINGLE_PROP"
        var.targets[0].id_type = "KEY"
        var.targets[0].id = lkeys
        var.targets[0].data_path = f'key_blocks["{kb.name}"].value'
        drv.expression = "value"
        driven.append(kb.name)
    return driven


def new_armature(name: str, joint_names: list[str], parents: np.ndarray, rest: np.ndarray, tails: np.ndarray,
                 collection: bpy.types.Collection) -> bpy.types.Object:
    """An armature object in the world frame.

    parents: (J,) int64 (-1 root, parents first); rest: (J, 4, 4) float rest frames
    (columns X, Y head→tail, Z; translation = head); tails: (J, 3) float.
    """
    from mathutils import Matrix

    arm = bpy.data.armatures.new(name)
    obj = link_object(name, arm, collection)
    view_layer = bpy.context.view_layer
    previous = view_layer.objects.active
    view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode="EDIT")
    try:
        bones = []
        for j, bname in enumerate(joint_names):
            eb = arm.edit_bones.new(bname)
            head = rest[j, :3, 3]
            length = max(float(np.linalg.norm(tails[j] - head)), MIN_BONE_LENGTH)
            eb.head, eb.tail = (0.0, 0.0, 0.0), (0.0, length, 0.0)
            eb.matrix = Matrix(rest[j].astype(np.float64).tolist())
            if parents[j] >= 0:
                eb.parent = bones[int(parents[j])]
            bones.append(eb)
    finally:
        bpy.ops.object.mode_set(mode="OBJECT")
        view_layer.objects.active = previous
    return obj


def bind(mesh_obj: bpy.types.Object, arm_obj: bpy.types.Object) -> None:
    """Parent a mesh to an armature with an Armature modifier (vertex groups = bone weights)."""
    mesh_obj.parent = arm_obj
    mod = mesh_obj.modifiers.new("Armature", "ARMATURE")
    mod.object = arm_obj


# -- where an imported head's template sits -------------------------------------------
def canonical_placement(meta: dict | None):
    """(s, R, t) with x_template = s R x_artist + t for a template made by ``likeness template
    import`` (its info's ``to_canonical``), or None for templates in the scene's own frame."""
    info = (meta or {}).get("info") or {}
    tc = info.get("to_canonical") if isinstance(info, dict) else None
    if not isinstance(tc, dict):
        return None
    try:
        s, R, t = float(tc["scale"]), np.asarray(tc["rotation"], np.float64), np.asarray(tc["translation"], np.float64)
    except (KeyError, TypeError, ValueError):
        return None
    if R.shape != (3, 3) or t.shape != (3,) or not (np.isfinite(R).all() and np.isfinite(t).all() and s > 0):
        return None
    return s, R, t


def placement_matrix(meta: dict | None) -> np.ndarray:
    """(4, 4) object matrix that puts a template-frame mesh back where the artist's head was
    (identity for templates in the scene's own frame)."""
    m = np.eye(4)
    place = canonical_placement(meta)
    if place is not None:
        s, R, t = place
        m[:3, :3] = R.T / s
        m[:3, 3] = -R.T @ t / s
    return m


def camera_in_artist_frame(R: np.ndarray, t: np.ndarray, meta: dict | None) -> tuple[np.ndarray, np.ndarray]:
    """A fit's camera (world-to-camera R, t in the template's frame) in the artist's frame. The
    similarity's scale scales the scene about the camera, which the image does not see."""
    place = canonical_placement(meta)
    if place is None:
        return R, t
    s, Rc, tc = place
    R, t = np.asarray(R, np.float64), np.asarray(t, np.float64).reshape(3)
    return R @ Rc, (R @ tc + t) / s


# -- an artist's rig -> template arrays ------------------------------------------------
class RigReport:
    """What a custom rig provides and what the fit will miss."""

    def __init__(self):
        self.errors: list[str] = []    # the rig cannot be sent
        self.missing: list[str] = []   # it can be sent but some losses have nothing to work on
        self.summary: list[str] = []

    @property
    def ok(self) -> bool:
        return not self.errors

    def lines(self) -> list[str]:
        return ([f"Error: {e}" for e in self.errors] + [f"Missing: {m}" for m in self.missing] + self.summary)


def _world_points(obj: bpy.types.Object, local: np.ndarray) -> np.ndarray:
    m = np.array(obj.matrix_world, dtype=np.float64)
    return (local @ m[:3, :3].T + m[:3, 3]).astype(np.float32)


def _mirror_map(verts: np.ndarray) -> np.ndarray:
    """(N,) int64: the vertex at each vertex's x-mirrored position, else itself (kept an involution)."""
    from mathutils.kdtree import KDTree

    tree = KDTree(len(verts))
    for i, co in enumerate(verts.tolist()):
        tree.insert(co, i)
    tree.balance()
    flipped = verts * np.array([-1.0, 1.0, 1.0], np.float32)
    found = np.array([tree.find(co)[1:] for co in flipped.tolist()], dtype=np.float64)
    idx, dist = found[:, 0].astype(np.int64), found[:, 1]
    mirror = np.where(dist <= MIRROR_TOLERANCE, idx, np.arange(len(verts)))
    return np.where(mirror[mirror] == np.arange(len(verts)), mirror, np.arange(len(verts)))


def _sorted_bones(arm: bpy.types.Armature) -> list:
    """Bones with parents before children (the order the template needs)."""
    depth = {b.name: len(b.parent_recursive) for b in arm.bones}
    return sorted(arm.bones, key=lambda b: (depth[b.name], b.name))


def read_rig(mesh_obj: bpy.types.Object, arm_obj: bpy.types.Object | None,
             reference: tuple[dict, dict] | None = None) -> tuple[dict, dict, RigReport]:
    """Template arrays + meta from a mesh (and armature) in the scene, without changing them.

    Vertex groups named like bones are skin weights, bones are joints, shape
    keys are controllers (ARKit names are expressions), vertex groups named
    ``region.<name>`` are regions. ``reference``: the default template's
    (arrays, meta); when the rig has its topology, its regions and landmark
    embedding are used. Returns (arrays, meta, report).
    """
    report = RigReport()
    mesh = mesh_obj.data
    n = len(mesh.vertices)
    local = np.empty(n * 3, np.float32)
    mesh.vertices.foreach_get("co", local)
    local = local.reshape(-1, 3).astype(np.float64)
    verts = _world_points(mesh_obj, local)
    c, f = len(mesh.loops), len(mesh.polygons)
    poly_verts = np.empty(c, np.int32)
    mesh.loops.foreach_get("vertex_index", poly_verts)
    starts = np.empty(f, np.int32)
    mesh.polygons.foreach_get("loop_start", starts)
    totals = np.empty(f, np.int32)
    mesh.polygons.foreach_get("loop_total", totals)
    order = np.argsort(starts)
    if not np.array_equal(starts[order], np.r_[0, np.cumsum(totals[order])[:-1]]):
        report.errors.append("the mesh's polygon corners are not contiguous; apply or re-import the mesh")
    poly_start = np.r_[0, np.cumsum(totals[order])].astype(np.int64)
    poly_verts = poly_verts.astype(np.int64)
    uvs = np.zeros((c, 2), np.float32)
    if mesh.uv_layers.active is not None:
        mesh.uv_layers.active.data.foreach_get("uv", uvs.reshape(-1))
    else:
        report.missing.append("UV map (texture extraction needs one)")
    tris, tri_poly = fan_triangles(poly_verts, poly_start)

    # joints
    if arm_obj is not None and arm_obj.type == "ARMATURE" and len(arm_obj.data.bones):
        bones = _sorted_bones(arm_obj.data)
        names = [b.name for b in bones]
        index = {b: i for i, b in enumerate(names)}
        parents = np.array([index[b.parent.name] if b.parent else -1 for b in bones], np.int64)
        if (parents == -1).sum() != 1:
            report.errors.append(f"the armature must have exactly one root bone, it has {(parents == -1).sum()}")
        am = np.array(arm_obj.matrix_world, dtype=np.float64)
        rest = np.stack([am @ np.array(b.matrix_local, dtype=np.float64) for b in bones])
        # object scale must not leak into the joint frames: keep the rotation only
        u, _, vt = np.linalg.svd(rest[:, :3, :3])
        rest[:, :3, :3] = u @ vt
        tails = np.array([am[:3, :3] @ np.array(b.tail_local) + am[:3, 3] for b in bones], np.float32)
    else:
        report.missing.append("armature (the joint stage has nothing to move; a single root joint is used)")
        names, parents = ["root"], np.array([-1], np.int64)
        centre = verts.mean(0)
        rest = np.eye(4)[None].copy()
        rest[0, :3, 3] = centre
        tails = (centre + np.array([0.0, 0.0, 0.1]))[None].astype(np.float32)
    j = len(names)

    # skin weights from vertex groups named like bones
    groups = {g.index: g.name for g in mesh_obj.vertex_groups}
    joint_of_group = {gi: names.index(gn) for gi, gn in groups.items() if gn in names}
    regions: dict[str, list[int]] = {}
    region_of_group = {gi: gn[len(REGION_PREFIX):] for gi, gn in groups.items() if gn.startswith(REGION_PREFIX)}
    skin = np.zeros((n, j), np.float32)
    # Vertex group weights have no bulk accessor: one pass over the vertices, once per send.
    for v in mesh.vertices:
        for g in v.groups:
            ji = joint_of_group.get(g.group)
            if ji is not None:
                skin[v.index, ji] += g.weight
            elif g.group in region_of_group and g.weight > 0:
                regions.setdefault(region_of_group[g.group], []).append(v.index)
    k = min(MAX_INFLUENCES, j)
    skin_idx = np.argsort(-skin, axis=1)[:, :k].astype(np.int64)
    skin_w = np.take_along_axis(skin, skin_idx, axis=1)
    sums = skin_w.sum(1, keepdims=True)
    unweighted = sums[:, 0] <= 0
    if unweighted.any():
        if arm_obj is not None:
            report.missing.append(f"skin weights for {int(unweighted.sum())} of {n} vertices (bound to the root bone)")
        skin_idx[unweighted] = 0
        skin_w[unweighted] = 0.0
        skin_w[unweighted, 0] = 1.0
        sums[unweighted] = 1.0
    skin_w = (skin_w / sums).astype(np.float32)

    # controllers from shape keys
    keys = mesh.shape_keys.key_blocks[1:] if mesh.shape_keys is not None else []
    ctrl_names = [kb.name for kb in keys]
    r = len(ctrl_names)
    basis_world = verts.astype(np.float64)
    deltas = np.zeros((r, n, 3), np.float32)
    for i, kb in enumerate(keys):
        co = np.empty(n * 3, np.float32)
        kb.data.foreach_get("co", co)
        deltas[i] = _world_points(mesh_obj, co.reshape(-1, 3).astype(np.float64)) - basis_world
    bounds = np.array([[kb.slider_min, kb.slider_max] for kb in keys], np.float32).reshape(r, 2)
    default = np.clip(np.zeros(r, np.float32), bounds[:, 0], bounds[:, 1]) if r else np.zeros(0, np.float32)
    is_expr = np.array([kb.name in ARKIT_EXPRESSIONS for kb in keys], bool)
    if r == 0:
        report.missing.append("shape keys (the rig stage has no controllers; only pose, camera and joints fit)")
    elif not is_expr.any():
        report.missing.append("expression shape keys with ARKit names (e.g. jawOpen, eyeBlinkLeft)")

    arrays = {
        "verts": verts, "poly_verts": poly_verts, "poly_start": poly_start, "uvs": uvs,
        "tris": tris, "tri_poly": tri_poly, "skin_idx": skin_idx, "skin_w": skin_w,
        "joint_parents": parents, "joint_rest": rest.astype(np.float32), "joint_tails": tails,
        "ctrl_bounds": bounds, "ctrl_default": default, "ctrl_is_expression": is_expr,
        "part_verts": np.zeros((0, 3), np.float32), "part_poly_verts": np.zeros(0, np.int64),
        "part_poly_start": np.zeros(1, np.int64), "part_vert_part": np.zeros(0, np.int64),
        "part_joint": np.zeros(0, np.int64),
        "mirror": _mirror_map(verts),
    }
    # a shape key is linear: its delta at -1 is the negated delta at +1
    arrays["ctrl_basis"] = np.stack([deltas, -deltas], axis=1)
    arrays["ctrl_joint_basis"] = np.zeros((r, 2, j, 3), np.float32)
    arrays["ctrl_tail_basis"] = np.zeros((r, 2, j, 3), np.float32)
    arrays["part_ctrl_basis"] = np.zeros((r, 2, 0, 3), np.float32)
    arrays["source_vertex_id"] = np.full(n, -1, np.int64)

    lmk_subsets: dict[str, np.ndarray] = {}
    same_topology = False
    if reference is not None:
        ref, ref_meta = reference
        same_topology = (len(ref["verts"]) == n and np.array_equal(ref["poly_start"], poly_start)
                         and np.array_equal(ref["poly_verts"], poly_verts))
    if same_topology:
        for name in ("lmk_tri", "lmk_bary", "lmk_kind", "mirror", "source_vertex_id"):
            arrays[name] = np.asarray(ref[name])
        ref_regions = {name: np.asarray(ref[REGION_PREFIX + name]) for name in ref_meta.get("regions", [])}
        regions = {**{k2: v.tolist() for k2, v in ref_regions.items()}, **regions}
        lmk_subsets = {name: np.asarray(ref["lmk_subset." + name]) for name in ref_meta.get("lmk_subsets", [])}
        report.summary.append("same topology as the default head: its landmark embedding and regions are used")
    else:
        arrays["lmk_tri"] = np.zeros(0, np.int64)
        arrays["lmk_bary"] = np.zeros((0, 3), np.float32)
        arrays["lmk_kind"] = np.zeros(0, np.int8)
        report.missing.append("landmark embedding (478 face landmarks on the surface): fits to photos need it; "
                              "only meshes with the default head's topology carry one")
    for name in NEEDED_REGIONS:
        if name not in regions:
            report.missing.append(f"region '{name}' (a vertex group named '{REGION_PREFIX}{name}')")
    for name, ids in regions.items():
        arrays[REGION_PREFIX + name] = np.asarray(ids, np.int64)
    for name, ids in lmk_subsets.items():
        arrays["lmk_subset." + name] = ids
    meta = {
        "format_version": wire.FORMAT_VERSION,
        "joint_names": names,
        "ctrl_names": ctrl_names,
        "part_names": [],
        "regions": sorted(regions),
        "lmk_subsets": sorted(lmk_subsets),
        "info": {"source": "blender", "object": mesh_obj.name, "armature": arm_obj.name if arm_obj else ""},
    }
    report.summary.insert(0, f"{n} vertices, {f} polygons, {j} joints, {r} controllers "
                             f"({int(is_expr.sum())} expressions), {len(regions)} regions")
    return arrays, meta, report
