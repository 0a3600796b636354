"""The add-on under the real bpy module, without a core: registration, panels, rig reading, results.

The add-on is the built extension zip installed into the user repository
(``bl_ext.user_default.likeness``), as an artist would install it.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from test_addon_helpers import MODULE, RecordingLayout, build_zip, install, uninstall

pytestmark = pytest.mark.bpy


@pytest.fixture(scope="module")
def ext(bpy_module, tmp_path_factory):
    bpy = bpy_module
    module = install(bpy, build_zip(tmp_path_factory.mktemp("ext")))
    yield module
    uninstall(bpy)


def _scene_names(bpy):
    return {
        "objects": sorted(o.name for o in bpy.data.objects),
        "meshes": sorted(m.name for m in bpy.data.meshes),
        "armatures": sorted(a.name for a in bpy.data.armatures),
        "collections": sorted(c.name for c in bpy.data.collections),
    }


def make_artist_rig(bpy, name="Artist"):
    """A small rigged head stand-in: a subdivided cube with 2 bones, weights and 2 shape keys, moved and scaled."""
    import bmesh

    mesh = bpy.data.meshes.new(name)
    bm = bmesh.new()
    bmesh.ops.create_cube(bm, size=0.2)
    bmesh.ops.subdivide_edges(bm, edges=bm.edges[:], cuts=2, use_grid_fill=True)
    bm.to_mesh(mesh)
    bm.free()
    mesh.uv_layers.new(name="UVMap")
    obj = bpy.data.objects.new(name, mesh)
    bpy.context.scene.collection.objects.link(obj)
    obj.location = (0.1, 0.2, 1.5)
    obj.scale = (1.0, 1.0, 1.2)
    arm_data = bpy.data.armatures.new(name + "Rig")
    arm = bpy.data.objects.new(name + "Rig", arm_data)
    bpy.context.scene.collection.objects.link(arm)
    bpy.context.view_layer.objects.active = arm
    bpy.ops.object.mode_set(mode="EDIT")
    root = arm_data.edit_bones.new("neck")
    root.head, root.tail = (0.1, 0.2, 1.3), (0.1, 0.2, 1.5)
    jaw = arm_data.edit_bones.new("jaw")
    jaw.head, jaw.tail, jaw.parent = (0.1, 0.2, 1.5), (0.1, 0.1, 1.45), root
    bpy.ops.object.mode_set(mode="OBJECT")
    co = np.array([v.co[:] for v in mesh.vertices])
    low = np.flatnonzero(co[:, 2] < 0).tolist()
    obj.vertex_groups.new(name="neck").add(list(range(len(co))), 0.5, "REPLACE")
    obj.vertex_groups.new(name="jaw").add(low, 0.5, "REPLACE")
    obj.vertex_groups.new(name="region.face_mask").add(low, 1.0, "REPLACE")
    obj.shape_key_add(name="Basis")
    for key_name, axis in (("jawOpen", 2), ("noseWide", 0)):
        key = obj.shape_key_add(name=key_name, from_mix=False)
        shifted = co.copy()
        shifted[:, axis] += 0.01
        key.data.foreach_set("co", shifted.astype(np.float32).ravel())
    obj.parent = arm
    return obj, arm


def snapshot(obj, arm):
    """Everything about the source rig that must not change."""
    mesh = obj.data
    co = np.empty(len(mesh.vertices) * 3, np.float32)
    mesh.vertices.foreach_get("co", co)
    keys = {k.name: np.array([d.co[:] for d in k.data]) for k in mesh.shape_keys.key_blocks}
    groups = [(v.index, g.group, g.weight) for v in mesh.vertices for g in v.groups]
    bones = {b.name: (tuple(b.head_local), tuple(b.tail_local)) for b in arm.data.bones}
    return {"co": co, "keys": keys, "groups": groups, "bones": bones, "mw": np.array(obj.matrix_world),
            "amw": np.array(arm.matrix_world), "nverts": len(mesh.vertices), "npolys": len(mesh.polygons),
            "vgroups": [g.name for g in obj.vertex_groups], "mods": [m.name for m in obj.modifiers]}


def assert_same(a, b):
    for k in a:
        if isinstance(a[k], dict) and k == "keys":
            assert a[k].keys() == b[k].keys()
            for name in a[k]:
                np.testing.assert_array_equal(a[k][name], b[k][name])
        elif isinstance(a[k], np.ndarray):
            np.testing.assert_array_equal(a[k], b[k])
        else:
            assert a[k] == b[k], k


def test_extension_registers_everything_and_unregisters_cleanly(bpy_module, ext):
    bpy = bpy_module
    classes = [c for m in ext.addon._MODULES for c in m.classes]
    assert len(classes) >= 20
    assert all(c.is_registered for c in classes)
    assert hasattr(bpy.types, "VIEW3D_PT_likeness_live") and hasattr(bpy.types.Scene, "likeness")
    assert bpy.ops.preferences.addon_disable(module=MODULE) == {"FINISHED"}
    assert not any(c.is_registered for c in classes)
    assert not hasattr(bpy.types, "VIEW3D_PT_likeness_live") and not hasattr(bpy.types.Scene, "likeness")
    assert bpy.ops.preferences.addon_enable(module=MODULE) == {"FINISHED"}
    ext = sys.modules[MODULE]
    assert all(c.is_registered for m in ext.addon._MODULES for c in m.classes)


def _check_references(bpy, log):
    assert log["props"] or log["operators"]
    for data, name in log["props"]:
        assert name in data.bl_rna.properties, f"{data.bl_rna.identifier} has no property {name!r}"
    for idname in log["operators"]:
        category, op = idname.split(".")
        func = getattr(getattr(bpy.ops, category), op)
        func.get_rna_type()  # raises KeyError when the operator does not exist
    for list_type, data, propname, active, active_prop in log["lists"]:
        assert hasattr(bpy.types, list_type)
        assert propname in data.bl_rna.properties and active_prop in active.bl_rna.properties


def test_every_panel_draws_and_references_existing_props_and_operators(bpy_module, ext, tmp_path):
    bpy = bpy_module
    live = sys.modules[MODULE + ".addon.live"]
    panels = sys.modules[MODULE + ".addon.panels"]
    scene = bpy.context.scene
    photo = scene.likeness.photos.add()
    photo.name, photo.filepath = "a.jpg", str(tmp_path / "a.jpg")
    drawn = set()
    states = [dict(), dict(state=live.RUNNING, stage="rig", step=3, total=10, losses={"landmark": 0.5},
                           pins={3: np.zeros(3, np.float32)}, held=True, message="Fitting..."),
              dict(state=live.PAUSED)]
    try:
        for template_source in ("DEFAULT", "SELECTED", "FILE"):
            scene.likeness.template_source = template_source
            for state in states:
                live.LIVE.reset_job()
                for k, v in state.items():
                    setattr(live.LIVE, k, v)
                for cls in panels.classes:
                    if issubclass(cls, bpy.types.Panel):
                        log = RecordingLayout()
                        panel = type("P", (), {"layout": log})()
                        cls.draw(panel, bpy.context)
                        _check_references(bpy, log.log)
                        drawn.add(cls.__name__)
                        if cls.__name__ == "VIEW3D_PT_likeness_live" and state.get("total"):
                            assert log.log["progress"] and "rig 3/10" in log.log["progress"][0][1]
        row = RecordingLayout()
        panels.LIKENESS_UL_photos.draw_item(None, bpy.context, row, scene.likeness, photo, 0, None, "", 0)
        _check_references(bpy, row.log)
        prefs = bpy.context.preferences.addons[MODULE].preferences
        for mode in ("LOCAL", "REMOTE"):
            prefs.core_mode = mode
            log = RecordingLayout()
            holder = type("P", (), {"layout": log, "core_mode": mode, "python_path": ""})()
            type(prefs).draw(holder, bpy.context)
            for _, name in log.log["props"]:
                assert name in prefs.bl_rna.properties, name
        prefs.core_mode = "LOCAL"
    finally:
        live.LIVE.reset_job()
        scene.likeness.photos.clear()
        scene.likeness.template_source = "DEFAULT"
    assert {"VIEW3D_PT_likeness_main", "VIEW3D_PT_likeness_photos", "VIEW3D_PT_likeness_template",
            "VIEW3D_PT_likeness_fit", "VIEW3D_PT_likeness_live", "VIEW3D_PT_likeness_result"} <= drawn


def test_photos_add_and_remove(bpy_module, ext, tmp_path):
    bpy = bpy_module
    for name in ("front.jpg", "side.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    settings = bpy.context.scene.likeness
    bpy.ops.likeness.add_photos(directory=str(tmp_path), files=[{"name": "front.jpg"}, {"name": "side.png"},
                                                                {"name": "notes.txt"}, {"name": "gone.jpg"}])
    assert [p.name for p in settings.photos] == ["front.jpg", "side.png", "gone.jpg"]
    assert [p.status for p in settings.photos] == ["ready", "ready", "missing"]
    settings.photo_index = 2
    assert bpy.ops.likeness.remove_photo() == {"FINISHED"}
    assert [p.name for p in settings.photos] == ["front.jpg", "side.png"]
    settings.photos.clear()


def test_job_options_carry_preset_focal_and_stage_overrides(bpy_module, ext):
    settings = bpy_module.context.scene.likeness
    settings.preset = "draft"
    assert settings.job_options() == {"preset": "draft", "focal": "auto"}
    settings.override_rig, settings.rig_iterations = True, 7
    settings.override_vertex, settings.vertex_iterations = True, 0
    assert settings.job_options() == {"preset": "draft", "focal": "auto",
                                      "schedule": {"stages": {"rig": {"iterations": 7}, "vertex": {"iterations": 0}}}}
    settings.override_rig = settings.override_vertex = False
    settings.focal_mode, settings.focal_35mm = "GIVEN", 85.0
    assert settings.job_options() == {"preset": "draft", "focal": 85.0}
    settings.focal_mode = "ESTIMATE"
    assert settings.job_options()["focal"] == "estimate"
    settings.focal_mode = "AUTO"
    settings.preset = "default"


def test_fan_triangles_matches_a_loop(ext):
    mb = sys.modules[MODULE + ".addon.mesh_build"]
    rng = np.random.default_rng(0)
    sizes = rng.integers(3, 7, size=40)
    poly_start = np.r_[0, np.cumsum(sizes)]
    poly_verts = rng.integers(0, 100, size=poly_start[-1])
    tris, tri_poly = mb.fan_triangles(poly_verts, poly_start)
    ref = [(f, poly_verts[s], poly_verts[s + k], poly_verts[s + k + 1])
           for f, (s, e) in enumerate(zip(poly_start[:-1], poly_start[1:])) for k in range(1, e - s - 1)]
    assert tri_poly.tolist() == [r[0] for r in ref]
    assert tris.tolist() == [list(r[1:]) for r in ref]


def test_artist_rig_becomes_a_valid_template_and_stays_unchanged(bpy_module, ext):
    bpy = bpy_module
    mb = sys.modules[MODULE + ".addon.mesh_build"]
    wire = sys.modules[MODULE + ".bridge.template"]
    obj, arm = make_artist_rig(bpy, "RigA")
    before = snapshot(obj, arm)
    arrays, meta, report = mb.read_rig(obj, arm)
    assert report.ok
    wire.TemplateMessage(arrays, meta).validate()
    assert meta["joint_names"] == ["neck", "jaw"] and meta["ctrl_names"] == ["jawOpen", "noseWide"]
    assert arrays["ctrl_is_expression"].tolist() == [True, False]
    assert "face_mask" in meta["regions"]
    # world space: the object's transform is applied, shape-key deltas too (scale 1.2 on z)
    mw = np.array(obj.matrix_world)
    local = before["co"].reshape(-1, 3)
    np.testing.assert_allclose(arrays["verts"], local @ mw[:3, :3].T + mw[:3, 3], atol=1e-6)
    np.testing.assert_allclose(arrays["ctrl_basis"][0, 0, :, 2], 0.012, atol=1e-6)
    np.testing.assert_array_equal(arrays["ctrl_basis"][:, 1], -arrays["ctrl_basis"][:, 0])
    np.testing.assert_allclose(arrays["skin_w"].sum(1), 1.0, atol=1e-6)
    np.testing.assert_allclose(arrays["joint_rest"][1, :3, 3], [0.1, 0.2, 1.5], atol=1e-6)
    # the cube is mirror-symmetric about its centre, not about x = 0 in the world: no pairs
    assert (arrays["mirror"] == np.arange(len(arrays["verts"]))).all()
    text = "\n".join(report.lines())
    assert "landmark embedding" in text and "eye_l_ring" in text
    assert_same(before, snapshot(obj, arm))


def test_rig_without_armature_or_keys_reports_what_is_missing(bpy_module, ext):
    bpy = bpy_module
    mb = sys.modules[MODULE + ".addon.mesh_build"]
    mesh = bpy.data.meshes.new("Bare")
    mesh.from_pydata([(0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0), (-1, 0, 0), (-1, 1, 0)], [],
                     [(0, 1, 2, 3), (4, 0, 3, 5)])
    obj = bpy.data.objects.new("Bare", mesh)
    bpy.context.scene.collection.objects.link(obj)
    arrays, meta, report = mb.read_rig(obj, None)
    text = "\n".join(report.lines())
    for needed in ("armature", "shape keys", "landmark embedding", "UV map", "face_mask"):
        assert needed in text, needed
    assert arrays["mirror"].tolist() == [0, 4, 5, 3, 1, 2]  # x = 0 vertices map to themselves
    assert meta["joint_names"] == ["root"]
    bpy.data.objects.remove(obj)
    bpy.data.meshes.remove(mesh)


def _result_message(ext, arrays, meta, seed=0):
    """A result as the core sends it (the keys core/fit/result.py writes), for the rig in ``arrays``."""
    protocol = sys.modules[MODULE + ".bridge.protocol"]
    rng = np.random.default_rng(seed)
    n, j = len(arrays["verts"]), len(meta["joint_names"])
    neutral = arrays["verts"] + rng.normal(0, 0.002, (n, 3)).astype(np.float32)
    rest = arrays["joint_rest"].copy()
    rest[:, :3, 3] += 0.003
    names = ["jawOpen", "eyeBlinkLeft"]
    deltas = rng.normal(0, 0.003, (2, n, 3)).astype(np.float32)
    msg = protocol.Message("result", job="j1", fields={"meta": {
        "joint_names": meta["joint_names"], "expression_names": names, "views": []}}, buffers={
        "verts": neutral, "verts_neutral": neutral, "joint_rest": rest,
        "joint_tails": arrays["joint_tails"] + 0.003, "expression_deltas": deltas})
    # through the real codec, as it arrives from a socket
    return protocol.decode_frame(protocol.encode(msg))


def test_create_result_in_one_call_leaves_sources_alone_and_removal_restores(bpy_module, ext):
    bpy = bpy_module
    mb = sys.modules[MODULE + ".addon.mesh_build"]
    result = sys.modules[MODULE + ".addon.result"]
    obj, arm = make_artist_rig(bpy, "RigB")
    arrays, meta, _ = mb.read_rig(obj, arm)
    msg = _result_message(ext, arrays, meta)
    before_rig, before_names = snapshot(obj, arm), _scene_names(bpy)

    coll = result.create_result(msg, (arrays, meta))
    head = next(o for o in coll.objects if o.type == "MESH")
    rig = next(o for o in coll.objects if o.type == "ARMATURE")
    np.testing.assert_allclose(mb.read_positions(head.data), msg.buffers["verts_neutral"], atol=1e-6)
    assert [k.name for k in head.data.shape_keys.key_blocks] == ["Basis", "jawOpen", "eyeBlinkLeft"]
    key = np.empty(len(head.data.vertices) * 3, np.float32)
    head.data.shape_keys.key_blocks["jawOpen"].data.foreach_get("co", key)
    np.testing.assert_allclose(key.reshape(-1, 3), msg.buffers["verts_neutral"] + msg.buffers["expression_deltas"][0],
                               atol=1e-6)
    assert head.parent == rig and head.modifiers[0].object == rig
    assert [b.name for b in rig.data.bones] == ["neck", "jaw"]
    np.testing.assert_allclose(rig.data.bones["jaw"].head_local, msg.buffers["joint_rest"][1, :3, 3], atol=1e-5)
    np.testing.assert_allclose(rig.data.bones["jaw"].tail_local, msg.buffers["joint_tails"][1], atol=1e-5)
    np.testing.assert_allclose(np.array(rig.data.bones["jaw"].matrix_local)[:3, :3],
                               msg.buffers["joint_rest"][1, :3, :3], atol=1e-5)
    assert {g.name for g in head.vertex_groups} == {"neck", "jaw"}
    assert_same(before_rig, snapshot(obj, arm))

    result.remove_result(coll)
    assert _scene_names(bpy) == before_names

    # as a shape key on the artist's rig: only that key is added, and removing the result removes it
    coll = result.create_result(msg, (arrays, meta), mode="SHAPE_KEY", source_mesh=obj)
    keys = obj.data.shape_keys.key_blocks
    assert keys[-1].name == result.SHAPE_KEY_NAME
    co = np.empty(len(obj.data.vertices) * 3, np.float32)
    keys[-1].data.foreach_get("co", co)
    mw = np.array(obj.matrix_world)
    np.testing.assert_allclose(co.reshape(-1, 3) @ mw[:3, :3].T + mw[:3, 3], msg.buffers["verts_neutral"], atol=1e-5)
    result.remove_result(coll)
    assert_same(before_rig, snapshot(obj, arm))
    assert _scene_names(bpy) == before_names


def test_bad_result_is_refused_before_anything_is_created(bpy_module, ext):
    bpy = bpy_module
    mb = sys.modules[MODULE + ".addon.mesh_build"]
    result = sys.modules[MODULE + ".addon.result"]
    obj, arm = make_artist_rig(bpy, "RigC")
    arrays, meta, _ = mb.read_rig(obj, arm)
    msg = _result_message(ext, arrays, meta)
    msg.buffers["verts_neutral"] = msg.buffers["verts_neutral"][:-1]
    before = _scene_names(bpy)
    with pytest.raises(result.ResultError, match="vertices"):
        result.create_result(msg, (arrays, meta))
    with pytest.raises(result.ResultError, match="Shape Key"):
        result.create_result(_result_message(ext, arrays, meta), (arrays, meta), mode="SHAPE_KEY")
    assert _scene_names(bpy) == before


@pytest.mark.parametrize("fmt", ["GLB", "FBX", "OBJ"])
def test_export_result(bpy_module, ext, tmp_path, fmt):
    bpy = bpy_module
    mb = sys.modules[MODULE + ".addon.mesh_build"]
    result = sys.modules[MODULE + ".addon.result"]
    obj, arm = make_artist_rig(bpy, f"RigE{fmt}")
    arrays, meta, _ = mb.read_rig(obj, arm)
    coll = result.create_result(_result_message(ext, arrays, meta), (arrays, meta))
    path = tmp_path / f"head.{fmt.lower()}"
    result.export_result(coll, str(path), fmt)
    assert path.stat().st_size > 1000
    if fmt == "GLB":
        import json
        import struct

        data = path.read_bytes()
        (length,) = struct.unpack_from("<I", data, 12)
        gltf = json.loads(data[20:20 + length])
        assert len(gltf["skins"][0]["joints"]) == 2
        assert gltf["meshes"][0]["extras"]["targetNames"] == ["jawOpen", "eyeBlinkLeft"]
    result.remove_result(coll)


def _default_head_result(ext, keys: dict | None = None):
    """The default template's arrays and a result for it (neutral head and parts at rest), with
    ``keys``: {name: (head deltas (N, 3), part deltas (P, 3))} as its expression shape keys."""
    from core.template import load_default

    protocol = sys.modules[MODULE + ".bridge.protocol"]
    t = load_default()
    arrays, meta = t.to_arrays()
    keys = keys or {}
    extra = {} if not keys else {
        "expression_deltas": np.stack([h for h, _ in keys.values()]).astype(np.float32),
        "part_expression_deltas": np.stack([p for _, p in keys.values()]).astype(np.float32)}
    msg = protocol.Message("result", job="j2", fields={"meta": {
        "joint_names": meta["joint_names"], "expression_names": list(keys), "views": []}}, buffers={
        "verts": t.verts, "verts_neutral": t.verts, "joint_rest": t.joint_rest, "joint_tails": t.joint_tails,
        "parts_neutral": t.part_verts, **extra})
    return protocol.decode_frame(protocol.encode(msg)), (arrays, meta)


def test_the_irises_take_the_photo_colour_unless_one_is_given(bpy_module, ext):
    """A result that carries the photo's iris colour gets eyes of that colour by default; a colour
    given wins; without one, or with a malformed one, the default hazel."""
    result = sys.modules[MODULE + ".addon.result"]
    protocol = sys.modules[MODULE + ".bridge.protocol"]

    def iris_of(meta_colour, given=None):
        msg, template = _default_head_result(ext)
        fields = dict(msg.fields)
        fields["meta"] = {**fields["meta"], **({} if meta_colour is None else {"iris_color": meta_colour})}
        msg = protocol.decode_frame(protocol.encode(protocol.Message("result", job="j3", fields=fields,
                                                                     buffers=msg.buffers)))
        coll = result.create_result(msg, template, iris_color=given)
        parts = next(o for o in coll.objects if o.name.endswith("Eyes and Mouth"))
        eye = next(m for m in parts.data.materials if m.name.endswith("Eye"))
        got = tuple(eye[result.IRIS_COLOR_KEY])
        result.remove_result(coll)
        return got

    assert iris_of([0.2, 0.4, 0.6]) == pytest.approx((0.2, 0.4, 0.6))
    assert iris_of([0.2, 0.4, 0.6], given=(0.5, 0.3, 0.1)) == pytest.approx((0.5, 0.3, 0.1))
    assert iris_of(None) == pytest.approx(result.DEFAULT_IRIS_COLOR)
    assert iris_of([0.2, "blue", 9]) == pytest.approx(result.DEFAULT_IRIS_COLOR)
    assert iris_of([0.2, 0.4, 1.5]) == pytest.approx(result.DEFAULT_IRIS_COLOR)


def test_head_sliders_move_the_eyes_teeth_and_tongue(bpy_module, ext):
    """One slider per expression, on the head: the parts' keys of the same name follow it through
    drivers, also for a key that moves only the parts (it still gets its slider on the head)."""
    bpy = bpy_module
    result = sys.modules[MODULE + ".addon.result"]
    mb = sys.modules[MODULE + ".addon.mesh_build"]
    from core.template import load_default

    t = load_default()
    n, p = len(t.verts), len(t.part_verts)
    rng = np.random.default_rng(3)
    jaw = (rng.normal(0, 0.002, (n, 3)), rng.normal(0, 0.004, (p, 3)))
    look = (np.zeros((n, 3)), rng.normal(0, 0.003, (p, 3)))
    msg, template = _default_head_result(ext, {"jawOpen": jaw, "eyeLookUpLeft": look})
    coll = result.create_result(msg, template)
    head = next(o for o in coll.objects if o.name.endswith("Head"))
    parts = next(o for o in coll.objects if o.name.endswith("Eyes and Mouth"))
    assert [k.name for k in head.data.shape_keys.key_blocks] == ["Basis", "jawOpen", "eyeLookUpLeft"]

    def parts_now():
        bpy.context.view_layer.update()
        ev = parts.evaluated_get(bpy.context.evaluated_depsgraph_get())
        m = ev.to_mesh()
        co = np.empty(len(m.vertices) * 3, np.float32)
        m.vertices.foreach_get("co", co)
        ev.to_mesh_clear()
        return co.reshape(-1, 3)

    rest = parts_now()
    np.testing.assert_allclose(rest, mb.read_positions(parts.data), atol=1e-6)
    for name, (_, part_delta) in (("jawOpen", jaw), ("eyeLookUpLeft", look)):
        head.data.shape_keys.key_blocks[name].value = 1.0
        np.testing.assert_allclose(parts_now() - rest, part_delta, atol=1e-5, err_msg=name)
        head.data.shape_keys.key_blocks[name].value = 0.0
    np.testing.assert_allclose(parts_now(), rest, atol=1e-6)
    result.remove_result(coll)


def test_result_eyes_have_the_iris_colour_and_keep_their_uvs_in_every_export(bpy_module, ext, tmp_path):
    bpy = bpy_module
    result = sys.modules[MODULE + ".addon.result"]
    msg, template = _default_head_result(ext)
    iris = (0.1, 0.35, 0.6)
    coll = result.create_result(msg, template, iris_color=iris)
    parts = next(o for o in coll.objects if o.name.endswith("Eyes and Mouth"))
    mats = {m.name.rsplit(" ", 1)[-1]: m for m in parts.data.materials}
    assert set(mats) == {"Eye", "Cornea", "Teeth", "Mouth"}
    eye = mats["Eye"]
    assert list(eye[result.IRIS_COLOR_KEY]) == pytest.approx(iris)
    (tex,) = [n for n in eye.node_tree.nodes if n.type == "TEX_IMAGE"]
    px = np.array(tex.image.pixels[:], np.float32).reshape(tex.image.size[1], tex.image.size[0], 4)
    s = tex.image.size[0]
    ring = px[s // 2, s // 2 + int(0.6 * result.UV_IRIS_RADIUS * s), :3]  # iris body, right of the pupil
    assert np.abs(ring / ring.max() - np.array(iris) / max(iris)).max() < 0.15, ring
    assert px[s // 2, s // 2, :3].max() < 0.05 and px[s // 2, int(0.05 * s), :3].min() > 0.8  # pupil, sclera
    # each eyeball polygon wears the eye material; the cornea its clear glossy one
    names, part = template[1]["part_names"], template[0]["part_vert_part"]
    starts, corners = template[0]["part_poly_start"], template[0]["part_poly_verts"]
    idx = np.empty(len(parts.data.polygons), np.int32)
    parts.data.polygons.foreach_get("material_index", idx)
    slot = {m.name: i for i, m in enumerate(parts.data.materials)}
    first_part = part[corners[starts[:-1]]]
    assert (idx[first_part == names.index("eyeball.L")] == slot[eye.name]).all()
    assert (idx[first_part == names.index("cornea.R")] == slot[mats["Cornea"].name]).all()
    bsdf = next(n for n in mats["Cornea"].node_tree.nodes if n.type == "BSDF_PRINCIPLED")
    assert bsdf.inputs["Transmission Weight"].default_value == 1.0 and bsdf.inputs["Roughness"].default_value < 0.05
    assert parts.data.uv_layers.active is not None
    for fmt in ("GLB", "FBX", "OBJ"):
        path = result.export_result(coll, str(tmp_path / "eyes"), fmt)
        before = set(bpy.data.objects)
        {"GLB": lambda: bpy.ops.import_scene.gltf(filepath=path), "FBX": lambda: bpy.ops.import_scene.fbx(filepath=path),
         "OBJ": lambda: bpy.ops.wm.obj_import(filepath=path)}[fmt]()
        meshes = [o for o in set(bpy.data.objects) - before if o.type == "MESH"]
        got = min(meshes, key=lambda o: abs(len(o.data.vertices) - len(parts.data.vertices)))
        assert got.data.uv_layers, fmt
        uv = np.empty(len(got.data.loops) * 2, np.float32)
        got.data.uv_layers[0].data.foreach_get("uv", uv)
        assert (np.hypot(*(uv.reshape(-1, 2) - 0.5).T) < result.UV_IRIS_RADIUS).mean() > 0.05, fmt  # iris discs
        for o in set(bpy.data.objects) - before:
            bpy.data.objects.remove(o)
    result.remove_result(coll)
