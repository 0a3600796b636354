"""Binary glTF 2.0 (.glb) writer for a rigged head: mesh, armature, skin
weights, shape keys (morph targets) and an optional textured material.

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


def _split_by_uv(polys: np.ndarray, corner_uvs: np.ndarray | None):
    """Triangles over split vertices. Returns (tris (T,3), vertex_map (M,), uv (M,2) or None)."""
    polys = np.asarray(polys, dtype=np.int64)
    corner_ids = np.arange(polys.size).reshape(polys.shape)
    tri_corners = np.concatenate([corner_ids[:, [0, 1, 2]], corner_ids[polys[:, 3] >= 0][:, [0, 2, 3]]])
    order = np.concatenate([np.arange(len(polys)), np.nonzero(polys[:, 3] >= 0)[0]])
    tri_corners = tri_corners[np.argsort(order, kind="stable")]  # keep each polygon's triangles together
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


def _vertex_normals(verts: np.ndarray, tris: np.ndarray) -> np.ndarray:
    fn = np.cross(verts[tris[:, 1]] - verts[tris[:, 0]], verts[tris[:, 2]] - verts[tris[:, 0]])
    vn = np.zeros_like(verts)
    for k in range(3):
        np.add.at(vn, tris[:, k], fn)
    norm = np.linalg.norm(vn, axis=1, keepdims=True)
    return vn / np.maximum(norm, 1e-12)


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


def write_glb(
    path,
    verts: np.ndarray,
    polys: np.ndarray,
    corner_uvs: np.ndarray | None = None,
    armature: Armature | None = None,
    skin: Skin | None = None,
    shape_keys: dict[str, np.ndarray] | None = None,
    material: Material | None = None,
    name: str = "likeness_head",
) -> dict:
    """Write a .glb and return its JSON document (for tests and logs).

    verts: (N, 3) rest/neutral positions (our world frame, metres).
    polys: (P, 4) int, -1 padding for triangles. corner_uvs: (P, 4, 2).
    shape_keys: name -> (N, 3) deltas from ``verts`` (e.g. the 52 expressions).
    The armature's rest pose must match ``verts`` (bind pose).
    """
    verts = np.asarray(verts, dtype=np.float64)
    if not np.isfinite(verts).all():
        raise ValueError("verts contain NaN or infinity")
    tris, vmap, uv = _split_by_uv(polys, corner_uvs)
    pos = verts[vmap] @ _Y_UP.T
    b = _Builder()
    attributes = {
        "POSITION": b.accessor(pos.astype(np.float32), "VEC3", _ARRAY_BUFFER, minmax=True),
        "NORMAL": b.accessor(_vertex_normals(pos, tris).astype(np.float32), "VEC3", _ARRAY_BUFFER),
    }
    if uv is not None:
        attributes["TEXCOORD_0"] = b.accessor(
            np.stack([uv[:, 0], 1.0 - uv[:, 1]], 1).astype(np.float32), "VEC2", _ARRAY_BUFFER
        )
    nodes: list[dict] = []
    doc: dict = {"asset": {"version": "2.0", "generator": "Likeness"}, "scene": 0}
    skin_index = None
    if armature is not None:
        if skin is None:
            raise ValueError("an armature needs skin weights")
        parents = np.asarray(armature.parents, dtype=np.int64)
        rest = np.asarray(armature.rest_world, dtype=np.float64)
        conv = np.eye(4)
        conv[:3, :3] = _Y_UP
        rest_y = conv @ rest  # joint frames expressed in glTF world
        for j, jname in enumerate(armature.names):
            local = rest_y[j] if parents[j] < 0 else np.linalg.inv(rest_y[parents[j]]) @ rest_y[j]
            t, q, s = _trs(local)
            nodes.append({"name": jname, "translation": t, "rotation": q, "scale": s})
        for j, p in enumerate(parents):
            if p >= 0:
                nodes[p].setdefault("children", []).append(j)
        ibm = np.linalg.inv(rest_y).transpose(0, 2, 1).reshape(-1, 16).astype(np.float32)
        doc["skins"] = [{
            "name": "likeness_rig",
            "joints": list(range(len(nodes))),
            "inverseBindMatrices": b.accessor(ibm, "MAT4"),
            "skeleton": int(np.nonzero(parents < 0)[0][0]),
        }]
        skin_index = 0
        idx = np.asarray(skin.index, dtype=np.int64)[vmap]
        wts = np.asarray(skin.weight, dtype=np.float64)[vmap]
        wts = np.where(idx >= 0, wts, 0.0)
        idx = np.where(idx >= 0, idx, 0)
        pad = (-idx.shape[1]) % 4
        idx = np.pad(idx, ((0, 0), (0, pad)))
        wts = np.pad(wts, ((0, 0), (0, pad)))
        wts /= np.maximum(wts.sum(1, keepdims=True), 1e-12)
        for set_i in range(idx.shape[1] // 4):
            cols = slice(4 * set_i, 4 * set_i + 4)
            attributes[f"JOINTS_{set_i}"] = b.accessor(idx[:, cols].astype(np.uint16), "VEC4", _ARRAY_BUFFER)
            attributes[f"WEIGHTS_{set_i}"] = b.accessor(wts[:, cols].astype(np.float32), "VEC4", _ARRAY_BUFFER)
    primitive = {
        "attributes": attributes,
        "indices": b.accessor(tris.reshape(-1).astype(np.uint32), "SCALAR", _ELEMENT_ARRAY_BUFFER),
        "mode": 4,
    }
    mesh = {"name": name, "primitives": [primitive], "extras": {"vertex_map": vmap.tolist()}}
    if shape_keys:
        names = list(shape_keys)
        targets = []
        for key in names:
            delta = np.asarray(shape_keys[key], dtype=np.float64)
            if delta.shape != verts.shape:
                raise ValueError(f"shape key {key!r} has shape {delta.shape}, expected {verts.shape}")
            d = (delta[vmap] @ _Y_UP.T).astype(np.float32)
            targets.append({"POSITION": b.accessor(d, "VEC3", _ARRAY_BUFFER, minmax=True)})
        primitive["targets"] = targets
        mesh["weights"] = [0.0] * len(names)
        mesh["extras"]["targetNames"] = names
    if material is not None:
        mat: dict = {"name": material.name, "pbrMetallicRoughness": {"metallicFactor": 0.0, "roughnessFactor": material.roughness}}
        images, textures = [], []
        for slot, data in (("base", material.base_color_png), ("normal", material.normal_png)):
            if data is None:
                continue
            images.append({"bufferView": b.view(data), "mimeType": "image/png", "name": f"{name}_{slot}"})
            textures.append({"source": len(images) - 1})
            if slot == "base":
                mat["pbrMetallicRoughness"]["baseColorTexture"] = {"index": len(textures) - 1}
            else:
                mat["normalTexture"] = {"index": len(textures) - 1}
        if images:
            doc["images"], doc["textures"] = images, textures
        doc["materials"] = [mat]
        primitive["material"] = 0
    mesh_node = {"name": name, "mesh": 0}
    if skin_index is not None:
        mesh_node["skin"] = skin_index
    nodes.append(mesh_node)
    roots = [i for i, n in enumerate(nodes[:-1]) if armature is not None and armature.parents[i] < 0]
    doc.update({
        "scenes": [{"nodes": roots + [len(nodes) - 1]}],
        "nodes": nodes,
        "meshes": [mesh],
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
