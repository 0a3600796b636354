"""Binary glTF 2.0 (.glb) writer for a rigged head: meshes (the head; eyes,
teeth and tongue), one armature, skin weights, shape keys (morph targets, all
at weight 0) and optional textured materials.

glTF is Y up; our world is Blender's (Z up, face toward -Y), so positions are
written as (x, z, -y) and Blender's importer turns them back. glTF has only
triangles and per-vertex UVs: quads are split (a, b, c), (a, c, d) and
vertices are split where a vertex has several UVs (Blender's importer keeps
the split unless asked to merge). ``vertex_map`` in the mesh extras maps every
written vertex back to its template vertex, so tools can restore topology.
"""

from __future__ import annotations

import json
import pathlib
import struct
from dataclasses import dataclass, field

import numpy as np

from core.geometry.mesh_layout import fan_triangulate, vertex_normals

_FLOAT, _USHORT, _UINT = 5126, 5123, 5125
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963
_Y_UP = np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], dtype=np.float64)  # ours -> glTF


@dataclass
class Armature:
    """A joint hierarchy in rest pose.

    names: J names; parents: (J,) int, -1 for roots, parents before children;
    rest_world: (J, 4, 4) float rest transforms in world (our frame, metres).
    """

    names: list[str]
    parents: np.ndarray
    rest_world: np.ndarray


@dataclass
class Skin:
    """Sparse skinning weights: index (N, K) int, weight (N, K) float (rows sum to 1)."""

    index: np.ndarray
    weight: np.ndarray


@dataclass
class Material:
    """PNG-encoded maps (bytes) for a simple PBR material."""

    name: str = "likeness_skin"
    base_color_png: bytes | None = None
    normal_png: bytes | None = None
    roughness: float = 0.6


@dataclass
class _Builder:
    blob: bytearray = field(default_factory=bytearray)
    views: list = field(default_factory=list)
    accessors: list = field(default_factory=list)

    def view(self, data: bytes, target: int | None = None) -> int:
        while len(self.blob) % 4:
            self.blob.append(0)
        entry = {"buffer": 0, "byteOffset": len(self.blob), "byteLength": len(data)}
        if target is not None:
            entry["target"] = target
        self.blob.extend(data)
        self.views.append(entry)
        return len(self.views) - 1

    def accessor(self, array: np.ndarray, kind: str, target: int | None = None, minmax: bool = False) -> int:
        comp = {np.float32: _FLOAT, np.uint16: _USHORT, np.uint32: _UINT}[array.dtype.type]
        entry = {
            "bufferView": self.view(np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes(), target),
            "componentType": comp,
            "count": int(array.shape[0]),
            "type": kind,
        }
        if minmax:
            flat = array.reshape(array.shape[0], -1)
            entry["min"] = flat.min(0).tolist()
            entry["max"] = flat.max(0).tolist()
        self.accessors.append(entry)
        return len(self.accessors) - 1


def split_by_uv(polys: np.ndarray, corner_uvs: np.ndarray | None):
    """Triangles over split vertices. Returns (tris (T,3), vertex_map (M,), uv (M,2) or None)."""
    polys = np.asarray(polys, dtype=np.int64)
    corner_ids = np.arange(polys.size).reshape(polys.shape)
    tri_corners, _ = fan_triangulate(np.where(polys >= 0, corner_ids, -1))
    vid = polys.reshape(-1)
    if corner_uvs is None:
        return vid[tri_corners], np.arange(vid.max() + 1), None
    uv = np.asarray(corner_uvs, dtype=np.float64).reshape(-1, 2)
    key = np.concatenate([vid[:, None].astype(np.float64), np.round(uv, 6)], axis=1)
    used = np.unique(tri_corners)
    uniq, inverse = np.unique(key[used], axis=0, return_inverse=True)
    corner_to_split = np.full(len(vid), -1, dtype=np.int64)
    corner_to_split[used] = inverse.reshape(-1)
    return corner_to_split[tri_corners], uniq[:, 0].astype(np.int64), uniq[:, 1:]


def _trs(matrix: np.ndarray) -> tuple[list, list, list]:
    """Translation, rotation quaternion (x, y, z, w), scale of an affine 4x4."""
    t = matrix[:3, 3]
    m = matrix[:3, :3]
    s = np.linalg.norm(m, axis=0)
    r = m / np.where(s > 0, s, 1.0)
    w = np.sqrt(max(0.0, 1.0 + r[0, 0] + r[1, 1] + r[2, 2])) / 2
    x = np.copysign(np.sqrt(max(0.0, 1.0 + r[0, 0] - r[1, 1] - r[2, 2])) / 2, r[2, 1] - r[1, 2])
    y = np.copysign(np.sqrt(max(0.0, 1.0 - r[0, 0] + r[1, 1] - r[2, 2])) / 2, r[0, 2] - r[2, 0])
    z = np.copysign(np.sqrt(max(0.0, 1.0 - r[0, 0] - r[1, 1] + r[2, 2])) / 2, r[1, 0] - r[0, 1])
    q = np.array([x, y, z, w])
    q /= np.linalg.norm(q)
    return t.tolist(), q.tolist(), s.tolist()


@dataclass
class MeshData:
    """One mesh of a GLB.

    verts: (N, 3) rest/neutral positions (our world frame, metres);
    polys: (P, 4) int, -1 padding for triangles; corner_uvs: (P, 4, 2) or None;
    skin: weights on the file's armature (None: not skinned);
    shape_keys: name -> (N, 3) deltas from ``verts`` (written at weight 0);
    material: None for an untextured mesh.
    """

    name: str
    verts: np.ndarray
    polys: np.ndarray
    corner_uvs: np.ndarray | None = None
    skin: Skin | None = None
    shape_keys: dict[str, np.ndarray] | None = None
    material: Material | None = None


def _joint_nodes(b: _Builder, armature: Armature) -> tuple[list[dict], dict]:
    """Joint nodes (one per joint, parents first) and the skin that binds to them."""
    parents = np.asarray(armature.parents, dtype=np.int64)
    conv = np.eye(4)
    conv[:3, :3] = _Y_UP
    rest_y = conv @ np.asarray(armature.rest_world, dtype=np.float64)  # joint frames expressed in glTF world
    nodes = []
    for j, jname in enumerate(armature.names):
        local = rest_y[j] if parents[j] < 0 else np.linalg.inv(rest_y[parents[j]]) @ rest_y[j]
        t, q, s = _trs(local)
        nodes.append({"name": jname, "translation": t, "rotation": q, "scale": s})
    for j, p in enumerate(parents):
        if p >= 0:
            nodes[p].setdefault("children", []).append(j)
    ibm = np.linalg.inv(rest_y).transpose(0, 2, 1).reshape(-1, 16).astype(np.float32)
    skin = {"name": "likeness_rig", "joints": list(range(len(nodes))),
            "inverseBindMatrices": b.accessor(ibm, "MAT4"), "skeleton": int(np.nonzero(parents < 0)[0][0])}
    return nodes, skin


def _skin_attributes(b: _Builder, skin: Skin, vmap: np.ndarray) -> dict:
    """JOINTS_k / WEIGHTS_k in sets of four: every influence is kept, rows renormalised."""
    idx = np.asarray(skin.index, dtype=np.int64)[vmap]
    wts = np.asarray(skin.weight, dtype=np.float64)[vmap]
    wts = np.where(idx >= 0, wts, 0.0)
    idx = np.where(idx >= 0, idx, 0)
    pad = (-idx.shape[1]) % 4
    idx = np.pad(idx, ((0, 0), (0, pad)))
    wts = np.pad(wts, ((0, 0), (0, pad)))
    wts /= np.maximum(wts.sum(1, keepdims=True), 1e-12)
    out = {}
    for set_i in range(idx.shape[1] // 4):
        cols = slice(4 * set_i, 4 * set_i + 4)
        out[f"JOINTS_{set_i}"] = b.accessor(idx[:, cols].astype(np.uint16), "VEC4", _ARRAY_BUFFER)
        out[f"WEIGHTS_{set_i}"] = b.accessor(wts[:, cols].astype(np.float32), "VEC4", _ARRAY_BUFFER)
    return out


def _material(b: _Builder, doc: dict, material: Material) -> int:
    """Append a material (and its PNG images) to the document; returns its index."""
    mat: dict = {"name": material.name,
                 "pbrMetallicRoughness": {"metallicFactor": 0.0, "roughnessFactor": material.roughness}}
    images, textures = doc.setdefault("images", []), doc.setdefault("textures", [])
    for slot, data in (("base", material.base_color_png), ("normal", material.normal_png)):
        if data is None:
            continue
        images.append({"bufferView": b.view(data), "mimeType": "image/png", "name": f"{material.name}_{slot}"})
        textures.append({"source": len(images) - 1})
        if slot == "base":
            mat["pbrMetallicRoughness"]["baseColorTexture"] = {"index": len(textures) - 1}
        else:
            mat["normalTexture"] = {"index": len(textures) - 1}
    if not images:
        del doc["images"], doc["textures"]
    doc.setdefault("materials", []).append(mat)
    return len(doc["materials"]) - 1


def _mesh(b: _Builder, doc: dict, m: MeshData) -> dict:
    """The glTF mesh of one MeshData (appended to the document's materials as needed)."""
    verts = np.asarray(m.verts, dtype=np.float64)
    if not np.isfinite(verts).all():
        raise ValueError(f"{m.name}: verts contain NaN or infinity")
    tris, vmap, uv = split_by_uv(m.polys, m.corner_uvs)
    pos = verts[vmap] @ _Y_UP.T
    attributes = {
        "POSITION": b.accessor(pos.astype(np.float32), "VEC3", _ARRAY_BUFFER, minmax=True),
        "NORMAL": b.accessor(vertex_normals(pos, tris).astype(np.float32), "VEC3", _ARRAY_BUFFER),
    }
    if uv is not None:
        attributes["TEXCOORD_0"] = b.accessor(
            np.stack([uv[:, 0], 1.0 - uv[:, 1]], 1).astype(np.float32), "VEC2", _ARRAY_BUFFER
        )
    if m.skin is not None:
        attributes.update(_skin_attributes(b, m.skin, vmap))
    primitive = {
        "attributes": attributes,
        "indices": b.accessor(tris.reshape(-1).astype(np.uint32), "SCALAR", _ELEMENT_ARRAY_BUFFER),
        "mode": 4,
    }
    mesh = {"name": m.name, "primitives": [primitive], "extras": {"vertex_map": vmap.tolist()}}
    if m.shape_keys:
        names = list(m.shape_keys)
        targets = []
        for key in names:
            delta = np.asarray(m.shape_keys[key], dtype=np.float64)
            if delta.shape != verts.shape:
                raise ValueError(f"{m.name}: shape key {key!r} has shape {delta.shape}, expected {verts.shape}")
            d = (delta[vmap] @ _Y_UP.T).astype(np.float32)
            targets.append({"POSITION": b.accessor(d, "VEC3", _ARRAY_BUFFER, minmax=True)})
        primitive["targets"] = targets
        mesh["weights"] = [0.0] * len(names)  # every key at rest: the file opens as the neutral head
        mesh["extras"]["targetNames"] = names
    if m.material is not None:
        primitive["material"] = _material(b, doc, m.material)
    return mesh


def write_glb(path, meshes: list[MeshData], armature: Armature | None = None) -> dict:
    """Write a .glb of one or more meshes on one optional armature; returns its JSON document.

    Meshes with a ``skin`` bind to the armature, whose rest pose must match
    their ``verts`` (bind pose); every shape key is written at weight 0.
    """
    b = _Builder()
    doc: dict = {"asset": {"version": "2.0", "generator": "Likeness"}, "scene": 0}
    nodes: list[dict] = []
    roots: list[int] = []
    if armature is not None:
        nodes, skin = _joint_nodes(b, armature)
        doc["skins"] = [skin]
        roots = [int(j) for j in np.flatnonzero(np.asarray(armature.parents) < 0)]
    gl_meshes = []
    for m in meshes:
        if m.skin is not None and armature is None:
            raise ValueError(f"{m.name}: skin weights need an armature")
        gl_meshes.append(_mesh(b, doc, m))
        node = {"name": m.name, "mesh": len(gl_meshes) - 1}
        if m.skin is not None:
            node["skin"] = 0
        nodes.append(node)
        roots.append(len(nodes) - 1)
    doc.update({
        "scenes": [{"nodes": roots}],
        "nodes": nodes,
        "meshes": gl_meshes,
        "accessors": b.accessors,
        "bufferViews": b.views,
        "buffers": [{"byteLength": len(b.blob)}],
    })
    json_bytes = json.dumps(doc, separators=(",", ":")).encode()
    json_bytes += b" " * ((-len(json_bytes)) % 4)
    while len(b.blob) % 4:
        b.blob.append(0)
    total = 12 + 8 + len(json_bytes) + 8 + len(b.blob)
    with open(pathlib.Path(path), "wb") as fh:
        fh.write(struct.pack("<III", 0x46546C67, 2, total))
        fh.write(struct.pack("<II", len(json_bytes), 0x4E4F534A) + json_bytes)
        fh.write(struct.pack("<II", len(b.blob), 0x004E4942) + bytes(b.blob))
    return doc
