"""OBJ and GLB writers: round trips through real readers (trimesh, Blender's glTF importer)."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from core.export import Armature, MeshData, Skin, read_obj, write_glb, write_obj
from core.export.obj import obj_to_world


def grid_mesh(n=4):
    """An n x n quad grid in the XZ plane (facing -Y), UVs over [0,1]^2, plus one triangle."""
    xs, zs = np.meshgrid(np.linspace(-0.1, 0.1, n + 1), np.linspace(0.0, 0.2, n + 1))
    verts = np.stack([xs.ravel(), np.zeros(xs.size), zs.ravel()], 1)
    ids = np.arange(xs.size).reshape(n + 1, n + 1)
    quads = np.stack([ids[:-1, :-1], ids[:-1, 1:], ids[1:, 1:], ids[1:, :-1]], -1).reshape(-1, 4)
    polys = np.concatenate([quads, [[0, 1, n + 2, -1]]])
    uv_v = np.stack([(verts[:, 0] + 0.1) / 0.2, verts[:, 2] / 0.2], 1)
    corner_uvs = uv_v[np.where(polys >= 0, polys, 0)]
    return verts, polys, corner_uvs


def test_obj_round_trip(tmp_path):
    verts, polys, uvs = grid_mesh()
    path = tmp_path / "m.obj"
    write_obj(path, verts, polys, uvs)
    text = path.read_text().splitlines()
    faces = [l for l in text if l.startswith("f ")]
    assert len(faces) == len(polys)
    assert faces[-1].count("/") == 3 and faces[0].count("/") == 4
    mesh = trimesh.load(path, process=False, force="mesh")
    # trimesh reads Y-up files as written: (x, z, -y)
    assert np.allclose(np.sort(mesh.vertices[:, 1]), np.sort(verts[:, 2]), atol=1e-6)


def test_obj_rejects_nan(tmp_path):
    verts, polys, uvs = grid_mesh()
    verts[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        write_obj(tmp_path / "bad.obj", verts, polys, uvs)


def _rig(verts):
    rest = np.repeat(np.eye(4)[None], 2, 0)
    rest[1, :3, 3] = [0.0, 0.0, 0.1]
    skin_idx = np.where(verts[:, 2:3] > 0.1, [[1, 0]], [[0, 1]])
    skin_w = np.tile([[0.75, 0.25]], (len(verts), 1))
    return Armature(["root", "upper"], np.array([-1, 0]), rest), Skin(skin_idx, skin_w)


def test_glb_document(tmp_path):
    verts, polys, uvs = grid_mesh()
    arm, skin = _rig(verts)
    keys = {"lift": np.tile([0.0, 0.0, 0.01], (len(verts), 1))}
    other = MeshData("rigid", verts + [0.3, 0, 0], polys, skin=Skin(np.zeros((len(verts), 1), int), np.ones((len(verts), 1))))
    doc = write_glb(tmp_path / "m.glb", [MeshData("likeness_head", verts, polys, uvs, skin, keys), other], arm)
    prim = doc["meshes"][0]["primitives"][0]
    assert doc["meshes"][0]["extras"]["targetNames"] == ["lift"]
    assert doc["meshes"][0]["weights"] == [0.0]  # every key at rest
    assert [n.get("skin") for n in doc["nodes"] if "mesh" in n] == [0, 0]
    assert "TEXCOORD_0" not in doc["meshes"][1]["primitives"][0]["attributes"]
    assert {"JOINTS_0", "WEIGHTS_0", "TEXCOORD_0"} <= set(prim["attributes"])
    n_tris = sum(1 if p[3] < 0 else 2 for p in polys)
    assert doc["accessors"][prim["indices"]]["count"] == 3 * n_tris
    data = (tmp_path / "m.glb").read_bytes()
    assert data[:4] == b"glTF" and int.from_bytes(data[8:12], "little") == len(data)


@pytest.mark.bpy
def test_glb_imports_into_blender(bpy_module, tmp_path):
    bpy = bpy_module
    verts, polys, uvs = grid_mesh()
    arm, skin = _rig(verts)
    keys = {"lift": np.tile([0.0, 0.0, 0.01], (len(verts), 1))}
    path = tmp_path / "m.glb"
    write_glb(path, [MeshData("likeness_head", verts, polys, uvs, skin, keys)], arm)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    assert bpy.ops.import_scene.gltf(filepath=str(path)) == {"FINISHED"}
    meshes = [o for o in bpy.context.scene.objects if o.type == "MESH" and o.name.startswith("likeness_head")]
    arms = [o for o in bpy.context.scene.objects if o.type == "ARMATURE"]
    assert len(meshes) == 1 and len(arms) == 1
    mesh = meshes[0]
    assert {b.name for b in arms[0].data.bones} == {"root", "upper"}
    assert [k.name for k in mesh.data.shape_keys.key_blocks] == ["Basis", "lift"]
    assert {g.name for g in mesh.vertex_groups} == {"root", "upper"}
    co = np.array([v.co[:] for v in mesh.data.vertices])
    # Blender's importer restores our Z-up frame.
    assert co[:, 2].max() == pytest.approx(0.2, abs=1e-5)
    assert np.allclose(co[:, 1], 0.0, atol=1e-6)
    lift = mesh.data.shape_keys.key_blocks["lift"]
    d = np.array([p.co[:] for p in lift.data]) - co
    assert np.allclose(d, [0, 0, 0.01], atol=1e-6)


def test_read_obj(tmp_path):
    path = tmp_path / "m.obj"
    path.write_text(
        "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nv 0 0 1\nvt 0 0\nvt 1 0\nvt 1 1\n"
        "g skin\nf 1/1 2/2 3/3 4/1\ng eye\nf 1/1 2/2 5/3\n"
    )
    mesh = read_obj(path)
    assert mesh.verts.shape == (5, 3) and mesh.uvs.shape == (3, 2)
    np.testing.assert_array_equal(mesh.polygons, [[0, 1, 2, 3], [0, 1, 4, -1]])
    np.testing.assert_array_equal(mesh.polygon_uvs, [[0, 1, 2, 0], [0, 1, 2, -1]])
    np.testing.assert_array_equal(mesh.group_mask("eye"), [False, True])
    with pytest.raises(KeyError, match="no group 'hair'"):
        mesh.group_mask("hair")
    bad = tmp_path / "bad.obj"
    bad.write_text("v 0 0 0\nf 1 2 3\n")
    with pytest.raises(ValueError, match="refers to vertex 3 of 1"):
        read_obj(bad)
    with pytest.raises(FileNotFoundError):
        read_obj(tmp_path / "missing.obj")


def test_read_obj_reads_back_what_write_obj_wrote(tmp_path):
    verts = np.random.default_rng(0).normal(size=(6, 3))
    polys = np.array([[0, 1, 2, 3], [2, 4, 5, -1]])
    write_obj(tmp_path / "round.obj", verts, polys)
    mesh = read_obj(tmp_path / "round.obj")
    np.testing.assert_array_equal(mesh.polygons, polys)
    np.testing.assert_allclose(obj_to_world(mesh.verts), verts, atol=1e-6)
