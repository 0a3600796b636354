"""read_gltf: a head written by write_glb read back, hand-built .gltf files, and the refusals."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from core.export import Armature, MeshData, Skin, read_gltf, write_glb
from core.export import gltf as gltf_module
from core.export.gltf import split_by_uv


def head_mesh(n=3):
    """An n x n quad grid facing -Y (Z up, our frame) with UVs over [0,1]^2, plus one triangle."""
    xs, zs = np.meshgrid(np.linspace(-0.1, 0.1, n + 1), np.linspace(0.0, 0.2, n + 1))
    verts = np.stack([xs.ravel(), 0.01 * xs.ravel() ** 2, zs.ravel()], 1)
    ids = np.arange(xs.size).reshape(n + 1, n + 1)
    quads = np.stack([ids[:-1, :-1], ids[:-1, 1:], ids[1:, 1:], ids[1:, :-1]], -1).reshape(-1, 4)
    polys = np.concatenate([quads, [[0, 1, n + 2, -1]]])
    uv = np.stack([(verts[:, 0] + 0.1) / 0.2, verts[:, 2] / 0.2], 1)
    uv[0] = [0.25, 0.75]  # off the grid, so a wrong v flip shows
    return verts, polys, uv[np.where(polys >= 0, polys, 0)]


def test_reads_back_a_head_written_by_write_glb(tmp_path):
    verts, polys, corner_uvs = head_mesh()
    rest = np.repeat(np.eye(4)[None], 2, 0)
    rest[1, :3, 3] = [0.0, 0.0, 0.1]
    arm = Armature(["root", "upper"], np.array([-1, 0]), rest)
    skin = Skin(np.zeros((len(verts), 1), int), np.ones((len(verts), 1)))
    keys = {"lift": np.tile([0.0, 0.0, 0.01], (len(verts), 1)), "push": np.tile([0.0, -0.02, 0.0], (len(verts), 1))}
    eye = MeshData("eye", verts[[0, 1, 4, 5]] + [0.3, 0.0, 0.0], np.array([[0, 1, 3, 2]]))
    path = tmp_path / "head.glb"
    doc = write_glb(path, [eye, MeshData("likeness_head", verts, polys, corner_uvs, skin, keys)], arm)

    mesh = read_gltf(path)  # the mesh with most vertices
    tris, vmap, uv = split_by_uv(polys, corner_uvs)
    assert mesh.name == "likeness_head"
    assert vmap.tolist() == doc["meshes"][1]["extras"]["vertex_map"]
    # write_glb writes (x, z, -y) (glTF is Y up); the reader keeps the file's frame, in file order.
    expected = np.stack([verts[vmap, 0], verts[vmap, 2], -verts[vmap, 1]], 1)
    assert mesh.verts.dtype == np.float64 and mesh.verts.shape == expected.shape
    np.testing.assert_allclose(mesh.verts, expected, atol=1e-7)
    assert mesh.tris.dtype == np.int64 and len(mesh.tris) == sum(1 if p[3] < 0 else 2 for p in polys)
    np.testing.assert_array_equal(mesh.tris, tris)
    # The file holds v' = 1 - v; the reader returns Blender's v again.
    np.testing.assert_allclose(mesh.uvs, uv, atol=1e-7)
    assert mesh.morph_names == ["lift", "push"] and mesh.morphs.shape == (2, len(vmap), 3)
    np.testing.assert_allclose(mesh.morphs[0], np.tile([0.0, 0.01, 0.0], (len(vmap), 1)), atol=1e-8)
    np.testing.assert_allclose(mesh.morphs[1], np.tile([0.0, 0.0, 0.02], (len(vmap), 1)), atol=1e-8)

    small = read_gltf(path, mesh_name="eye")
    assert small.verts.shape == (4, 3) and small.uvs is None and small.morph_names == []
    assert small.morphs.shape == (0, 4, 3)
    np.testing.assert_allclose(small.verts[:, 0], verts[[0, 1, 4, 5], 0] + 0.3, atol=1e-7)


def _views(*arrays):
    """One little-endian blob of the arrays (4-byte aligned) and a bufferView for each."""
    blob, views = b"", []
    for a in arrays:
        blob += b"\0" * (-len(blob) % 4)
        data = np.ascontiguousarray(a).tobytes()
        views.append({"buffer": 0, "byteOffset": len(blob), "byteLength": len(data)})
        blob += data
    return blob, views


def _gltf(path, blob, views, accessors, meshes, nodes=None, uri=None):
    """Write a .gltf whose one buffer is ``blob`` as a base64 data URI (or ``uri``)."""
    doc = {
        "asset": {"version": "2.0"},
        "buffers": [{"byteLength": len(blob),
                     "uri": uri or "data:application/octet-stream;base64," + base64.b64encode(blob).decode()}],
        "bufferViews": views, "accessors": accessors, "meshes": meshes,
    }
    if nodes is not None:
        doc["nodes"] = nodes
    path.write_text(json.dumps(doc))
    return path


QUAD = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], dtype=np.float32)


def _quad_file(path, prim_extra=None, index_values=(0, 1, 2, 0, 2, 3), **kw):
    """A one-quad .gltf: POSITION (0), uint16 indices (1), one morph target (2)."""
    delta = np.tile(np.float32([0, 0, 0.5]), (4, 1))
    blob, views = _views(QUAD, np.array(index_values, dtype=np.uint16), delta)
    accessors = [
        {"bufferView": 0, "componentType": 5126, "count": 4, "type": "VEC3"},
        {"bufferView": 1, "componentType": 5123, "count": len(index_values), "type": "SCALAR"},
        {"bufferView": 2, "componentType": 5126, "count": 4, "type": "VEC3"},
    ]
    prim = {"attributes": {"POSITION": 0}, "indices": 1, "targets": [{"POSITION": 2}], **(prim_extra or {})}
    meshes = [{"name": "quad", "primitives": [prim], "extras": {"targetNames": ["smile"]}}]
    return _gltf(path, blob, views, accessors, meshes, **kw)


def test_hand_built_gltf_with_node_transform_and_morph(tmp_path):
    half = np.sqrt(0.5)
    nodes = [
        {"name": "root", "translation": [1.0, 2.0, 3.0], "children": [1]},
        {"name": "quad", "mesh": 0, "rotation": [0.0, 0.0, half, half], "scale": [2.0, 2.0, 2.0]},
    ]
    mesh = read_gltf(_quad_file(tmp_path / "q.gltf", nodes=nodes))
    rot_z90 = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(mesh.verts, 2 * QUAD @ rot_z90.T + [1, 2, 3], atol=1e-12)
    np.testing.assert_array_equal(mesh.tris, [[0, 1, 2], [0, 2, 3]])
    assert mesh.uvs is None and mesh.morph_names == ["smile"]
    np.testing.assert_allclose(mesh.morphs, np.tile([0.0, 0.0, 1.0], (1, 4, 1)), atol=1e-12)  # scaled, not moved

    # A column-major matrix on the node; morphs without targetNames are key_1, key_2, ...
    path = _quad_file(tmp_path / "m.gltf", nodes=[{"mesh": 0, "matrix": [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0,
                                                                          5, 0, 0, 1]}])
    doc = json.loads(path.read_text())
    del doc["meshes"][0]["extras"]
    path.write_text(json.dumps(doc))
    mesh = read_gltf(path)
    np.testing.assert_allclose(mesh.verts, QUAD + [5, 0, 0])
    assert mesh.morph_names == ["key_1"]


def test_a_skinned_head_reads_back_with_its_armature(tmp_path):
    """write_glb's armature and weights come back: joint names parents first, the bind-pose frames,
    the weights per vertex (file order), and tails (glTF keeps none) toward the one child."""
    verts, polys, corner_uvs = head_mesh()
    rest = np.repeat(np.eye(4)[None], 3, 0)
    rest[1, :3, 3] = [0.0, 0.0, 0.1]
    rest[2, :3, :3] = [[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]  # turned 90 degrees about z
    rest[2, :3, 3] = [0.05, 0.0, 0.15]
    arm = Armature(["root", "upper", "tip"], np.array([-1, 0, 1]), rest)
    share = np.clip(verts[:, 2] / 0.2, 0.0, 1.0)  # up the grid from "root" to "tip"
    skin = Skin(np.tile([0, 2], (len(verts), 1)), np.stack([1.0 - share, share], 1))
    path = tmp_path / "head.glb"
    write_glb(path, [MeshData("likeness_head", verts, polys, corner_uvs, skin)], arm)

    mesh = read_gltf(path)
    _, vmap, _ = split_by_uv(polys, corner_uvs)
    sk = mesh.skin
    assert sk.names == ["root", "upper", "tip"] and sk.parents.tolist() == [-1, 0, 1]
    y_up = np.eye(4)
    y_up[:3, :3] = [[1, 0, 0], [0, 0, 1], [0, -1, 0]]  # the writer's frame: (x, z, -y)
    np.testing.assert_allclose(sk.rest, y_up @ rest, atol=1e-6)
    want = np.zeros((len(verts), 3))
    want[:, 0], want[:, 2] = 1.0 - share, share
    np.testing.assert_allclose(sk.weights, want[vmap], atol=1e-6)
    np.testing.assert_allclose(sk.tails[0], sk.rest[1, :3, 3], atol=1e-9)  # the only child's head
    parent_length = np.linalg.norm(rest[2, :3, 3] - rest[1, :3, 3])
    np.testing.assert_allclose(sk.tails[2] - sk.rest[2, :3, 3], parent_length * sk.rest[2, :3, 1], atol=1e-6)
    assert read_gltf(path, mesh_name="likeness_head").skin is not None

    # An unskinned mesh has none; JOINTS naming a joint the skin lacks is refused in one line.
    assert read_gltf(_quad_file(tmp_path / "q.gltf")).skin is None
    doc_path = tmp_path / "bad.glb"
    write_glb(doc_path, [MeshData("likeness_head", verts, polys, corner_uvs, Skin(np.full((len(verts), 1), 2),
                                                                                    np.ones((len(verts), 1))))],
              Armature(["root", "upper", "tip"], np.array([-1, 0, 1]), rest))
    data = bytearray(doc_path.read_bytes())
    json_len = int.from_bytes(data[12:16], "little")
    doc = json.loads(bytes(data[20:20 + json_len]))
    doc["skins"][0]["joints"] = doc["skins"][0]["joints"][:2]
    doc["skins"][0]["inverseBindMatrices"] = None
    del doc["skins"][0]["inverseBindMatrices"]
    text = json.dumps(doc).encode()
    text += b" " * (-len(text) % 4)
    out = data[:12] + len(text).to_bytes(4, "little") + data[16:20] + text + data[20 + json_len:]
    out[8:12] = len(out).to_bytes(4, "little")
    doc_path.write_bytes(bytes(out))
    with pytest.raises(ValueError, match="JOINTS refer to joint 2, the skin has 2"):
        read_gltf(doc_path)


def test_interleaved_primitives_concatenate_in_file_order(tmp_path):
    uv = np.float32([[0.0, 0.0], [1.0, 0.0], [1.0, 0.25], [0.0, 1.0]])
    interleaved = np.concatenate([QUAD, uv], 1)  # 20-byte stride: xyz uv
    tri = QUAD[:3] + np.float32([0, 0, 1])
    blob, views = _views(interleaved, np.uint8([2, 1, 0, 3, 2, 0]), tri, np.zeros((9, 3), np.float32))
    views[0]["byteStride"] = 20
    accessors = [
        {"bufferView": 0, "componentType": 5126, "count": 4, "type": "VEC3"},
        {"bufferView": 0, "byteOffset": 12, "componentType": 5126, "count": 4, "type": "VEC2"},
        {"bufferView": 1, "componentType": 5121, "count": 6, "type": "SCALAR"},
        {"bufferView": 2, "componentType": 5126, "count": 3, "type": "VEC3"},
        {"bufferView": 3, "componentType": 5126, "count": 9, "type": "VEC3"},
    ]
    meshes = [
        {"name": "small", "primitives": [{"attributes": {"POSITION": 4}, "mode": 4}]},  # 9 vertices
        {"name": "big", "primitives": [{"attributes": {"POSITION": 0, "TEXCOORD_0": 1}, "indices": 2},
                                       {"attributes": {"POSITION": 3}}, {"attributes": {"POSITION": 4}}]},
    ]
    mesh = read_gltf(_gltf(tmp_path / "i.gltf", blob, views, accessors, meshes))
    assert mesh.name == "big" and mesh.verts.shape == (16, 3)
    np.testing.assert_allclose(mesh.verts[:7], np.concatenate([QUAD, tri]))
    np.testing.assert_array_equal(mesh.tris[:4], [[2, 1, 0], [3, 2, 0], [4, 5, 6], [7, 8, 9]])
    assert mesh.tris.max() == 15
    np.testing.assert_allclose(mesh.uvs[:4], [[0, 1], [1, 1], [1, 0.75], [0, 0]])
    assert np.isnan(mesh.uvs[4:]).all()  # primitives without TEXCOORD_0

    # A buffer in a file next to the .gltf.
    (tmp_path / "data.bin").write_bytes(blob)
    mesh2 = read_gltf(_gltf(tmp_path / "e.gltf", blob, views, accessors, meshes, uri="data.bin"), "small")
    assert mesh2.verts.shape == (9, 3) and mesh2.tris.shape == (3, 3)


def _raises(path, match, **kw):
    with pytest.raises(ValueError, match=match) as info:
        read_gltf(path, **kw)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_refusals(tmp_path, monkeypatch):
    verts, polys, corner_uvs = head_mesh(2)
    glb = tmp_path / "head.glb"
    write_glb(glb, [MeshData("likeness_head", verts, polys, corner_uvs)])
    data = glb.read_bytes()
    cut = tmp_path / "cut.glb"
    cut.write_bytes(data[:-40])
    _raises(cut, "truncated GLB")
    message = _raises(glb, "no mesh named 'nose'", mesh_name="nose")
    assert "'likeness_head'" in message

    _raises(_quad_file(tmp_path / "i.gltf", index_values=(0, 1, 9, 0, 2, 3)), "index 9 is out of range for 4")
    _raises(_quad_file(tmp_path / "l.gltf", {"mode": 1}), r"mode 1 \(LINES\)")
    _raises(_quad_file(tmp_path / "s.gltf", {"mode": 5}), "TRIANGLE_STRIP")
    for uri in ("../data.bin", "sub/../../data.bin", "%2E%2E/data.bin", "/etc/data.bin"):
        _raises(_quad_file(tmp_path / "u.gltf", uri=uri), "'..' are refused")
    _raises(_quad_file(tmp_path / "h.gltf", uri="https://example.com/data.bin"), "only data: URIs")
    _raises(_quad_file(tmp_path / "n.gltf", uri="missing.bin"), "glTF buffer file not found")

    path = _quad_file(tmp_path / "p.gltf")
    doc = json.loads(path.read_text())
    doc["accessors"][0]["sparse"] = {"count": 1}
    path.write_text(json.dumps(doc))
    _raises(path, "sparse accessors are not supported")
    doc = json.loads(_quad_file(path).read_text())
    doc["buffers"][0]["byteLength"] += 100
    path.write_text(json.dumps(doc))
    _raises(path, "buffer 0 is too short")
    doc = json.loads(_quad_file(path).read_text())
    doc["accessors"][0]["count"] = 40
    path.write_text(json.dumps(doc))
    _raises(path, "too long for its bufferView 0")
    doc["accessors"][0]["count"] = "4"
    path.write_text(json.dumps(doc))
    _raises(path, "not a non-negative integer")
    path.write_text("{not json")
    _raises(path, "not glTF JSON")

    monkeypatch.setattr(gltf_module, "MAX_GLTF_BYTES", 100)
    _raises(glb, "above the limit of 100")
