"""Binary glTF 2.0 (.glb) writer for a rigged head: meshes (the head; eyes,
teeth and tongue), one armature, skin weights, shape keys (morph targets, all
at weight 0) and optional textured materials.

glTF is Y up; our world is Blender's (Z up, face toward -Y), so positions are
written as (x, z, -y) and Blender's importer turns them back. glTF has only
triangles and per-vertex UVs: quads are split (a, b, c), (a, c, d) and
vertices are split where a vertex has several UVs (Blender's importer keeps
the split unless asked to merge). ``vertex_map`` in the mesh extras maps every
written vertex back to its template vertex, so tools can restore topology.

``read_gltf`` reads one mesh of a .glb or .gltf back (positions in the file's
own Y-up scene frame, triangles, UVs, morph targets) for checks and imports.
"""

from __future__ import annotations

import base64
import binascii
import json
import pathlib
import re
import struct
import urllib.parse
from dataclasses import dataclass, field

import numpy as np

from bridge.conventions import quaternion_to_rotation
from core.files import UnsafeFileError, open_regular
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


# --- Reader -------------------------------------------------------------------------------------

MAX_GLTF_BYTES = 512 * 2**20  # the file and the buffer files it names, together
_COMPONENTS = {5120: "<i1", 5121: "<u1", 5122: "<i2", 5123: "<u2", 5125: "<u4", 5126: "<f4"}
_COMPONENT_NAMES = {5120: "int8", 5121: "uint8", 5122: "int16", 5123: "uint16", 5125: "uint32", 5126: "float32"}
_WIDTHS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}
# A skin's dense (vertices x joints) weights are bounded: 50 M entries (200 MB in float32).
MAX_SKIN_ENTRIES = 50_000_000
_MODES = {0: "POINTS", 1: "LINES", 2: "LINE_LOOP", 3: "LINE_STRIP", 4: "TRIANGLES", 5: "TRIANGLE_STRIP",
          6: "TRIANGLE_FAN"}
_URL_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")


@dataclass(frozen=True)
class GltfMesh:
    """One mesh of a glTF file in the file's own scene frame (glTF: Y up), vertices in file order.

    verts: (V, 3) float64 with the mesh node's world transform applied (none for a skinned
    node, whose transform glTF ignores: its positions are the bind pose); tris: (T, 3) int64;
    uvs: (V, 2) float64 Blender-style (v' = 1 - v), NaN on primitives without TEXCOORD_0,
    None when no primitive has them; morphs: (M, V, 3) float64 POSITION deltas (same frame)
    named by ``morph_names`` (``extras.targetNames``, else key_1, key_2, ...).
    """

    name: str
    verts: np.ndarray
    tris: np.ndarray
    uvs: np.ndarray | None
    morph_names: list[str]
    morphs: np.ndarray
    skin: "GltfSkin | None" = None


@dataclass
class GltfSkin:
    """The armature a skinned glTF mesh is bound to, in the file's frame (glTF: Y up).

    names: J joint node names, parents before children; parents: (J,) int64, -1 for a root
    (the nearest ancestor node that is a joint of the skin); rest: (J, 4, 4) float64 bind-pose
    world frames (the inverse bind matrices inverted; the nodes' own world transforms where the
    skin has none); tails: (J, 3) float64, where glTF keeps no tails: the only child joint's
    head, else the head plus the frame's Y axis times the parent's length (a root: a tenth of
    the skeleton's size); weights: (V, J) float32, each vertex's JOINTS_k / WEIGHTS_k summed.
    """

    names: list[str]
    parents: np.ndarray
    rest: np.ndarray
    tails: np.ndarray
    weights: np.ndarray


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _GltfReader:
    """A glTF document and its buffers (each read on first use); every error names the file."""

    def __init__(self, path: pathlib.Path):
        self.path = path
        self.budget = MAX_GLTF_BYTES
        self.bin: memoryview | None = None
        self.buffers: dict[int, memoryview] = {}
        data = self._read_file(path, "glTF file")
        text = self._glb_json(data) if data[:4] == b"glTF" else data
        try:
            self.doc = json.loads(text)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise self.error(f"not glTF JSON ({type(exc).__name__}: {exc})") from None
        if not isinstance(self.doc, dict):
            raise self.error("the glTF JSON is not an object")
        version = self.doc.get("asset", {}).get("version") if isinstance(self.doc.get("asset"), dict) else None
        if not (isinstance(version, str) and version.startswith("2.")):
            raise self.error(f"asset.version is {_short(version)}; only glTF 2.x is read")

    def error(self, message: str) -> ValueError:
        return ValueError(f"{self.path}: {message}")

    def _read_file(self, path: pathlib.Path, what: str) -> bytes:
        """The bytes of a regular file, counted against the reader's byte budget."""
        try:
            fh = open_regular(path, what, self.budget)
        except UnsafeFileError as exc:
            raise ValueError(str(exc) if path == self.path else f"{self.path}: {exc}") from None
        with fh:
            data = fh.read(self.budget + 1)
        if len(data) > self.budget:
            raise self.error(f"{path} grew past the limit of {MAX_GLTF_BYTES} bytes while it was read")
        self.budget -= len(data)
        return data

    def _glb_json(self, data: bytes) -> bytes:
        """The JSON chunk of a GLB container (the BIN chunk, if any, goes to ``self.bin``)."""
        if len(data) < 20:
            raise self.error(f"truncated GLB: {len(data)} bytes, shorter than its headers")
        _, version, length = struct.unpack_from("<III", data)
        if version != 2:
            raise self.error(f"GLB container version {version}; only version 2 is read")
        if length > len(data):
            raise self.error(f"truncated GLB: the header says {length} bytes, the file has {len(data)}")
        view, pos, chunks = memoryview(data), 12, []
        while pos + 8 <= length:
            size, kind = struct.unpack_from("<II", data, pos)
            if pos + 8 + size > length:
                raise self.error(f"truncated GLB: chunk {len(chunks)} ends at byte {pos + 8 + size}, "
                                 f"the file has {length}")
            chunks.append((kind, view[pos + 8: pos + 8 + size]))
            pos += 8 + size
        if not chunks or chunks[0][0] != 0x4E4F534A:
            raise self.error("GLB without a JSON chunk first")
        if len(chunks) > 1 and chunks[1][0] == 0x004E4942:
            self.bin = chunks[1][1]
        return bytes(chunks[0][1])

    def item(self, kind: str, index) -> dict:
        """``doc[kind][index]``, checked."""
        seq = self.doc.get(kind, [])
        if not isinstance(seq, list):
            raise self.error(f"'{kind}' is not a list")
        if not _is_int(index) or not 0 <= index < len(seq):
            raise self.error(f"{kind} index {_short(index)} is out of range (the file has {len(seq)})")
        if not isinstance(seq[index], dict):
            raise self.error(f"{kind}[{index}] is not an object")
        return seq[index]

    def size(self, obj: dict, key: str, where: str, default: int | None = None) -> int:
        """A non-negative integer field."""
        value = obj.get(key, default)
        if not _is_int(value) or value < 0:
            raise self.error(f"{where} has {key} {_short(value)}, not a non-negative integer")
        return value

    def floats(self, value, n: int, where: str) -> np.ndarray:
        """A list of ``n`` finite numbers."""
        ok = isinstance(value, list) and len(value) == n and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        if not ok or not np.isfinite(np.asarray(value, dtype=np.float64)).all():
            raise self.error(f"{where} is {_short(value)}, not {n} finite numbers")
        return np.asarray(value, dtype=np.float64)

    def buffer(self, index) -> memoryview:
        """Buffer ``index`` (GLB binary chunk, base64 data URI or a file next to the glTF), checked for length."""
        if _is_int(index) and index in self.buffers:
            return self.buffers[index]
        buf = self.item("buffers", index)
        where = f"buffer {index}"
        length = self.size(buf, "byteLength", where)
        uri = buf.get("uri")
        if uri is None:
            if self.bin is None or index != 0:
                raise self.error(f"{where} has no uri and is not the GLB binary chunk")
            data = self.bin
        elif not isinstance(uri, str):
            raise self.error(f"{where} has uri {_short(uri)}, not a string")
        elif uri.startswith("data:"):
            header, _, payload = uri.partition(",")
            if not header.endswith(";base64"):
                raise self.error(f"{where} is a data URI without ';base64'; only base64 data URIs are read")
            try:
                data = memoryview(base64.b64decode(payload, validate=True))
            except binascii.Error as exc:
                raise self.error(f"{where} has a bad base64 data URI ({exc})") from None
        else:
            data = memoryview(self._read_file(self._buffer_path(uri, where), "glTF buffer file"))
        if len(data) < length:
            raise self.error(f"{where} is too short: {len(data)} bytes, its byteLength is {length}")
        self.buffers[index] = data[:length]
        return self.buffers[index]

    def _buffer_path(self, uri: str, where: str) -> pathlib.Path:
        """The file a relative buffer URI names; absolute paths, '..' and URL schemes are refused."""
        if _URL_SCHEME.match(uri):
            raise self.error(f"{where} has uri {_short(uri)}: only data: URIs and relative file paths are read")
        rel = urllib.parse.unquote(uri)
        if not rel or "\x00" in rel or rel.startswith(("/", "\\")) or ".." in re.split(r"[/\\]", rel):
            raise self.error(f"{where} has uri {_short(uri)}: absolute paths and '..' are refused; "
                             "buffer files must lie in the glTF file's folder")
        return self.path.parent / rel

    def accessor(self, index, kind: str, components: tuple[int, ...], what: str) -> np.ndarray:
        """(count, width) array of accessor ``index`` (its own dtype) after checking type, component and bounds."""
        where = f"accessor {_short(index)} ({what})"
        acc = self.item("accessors", index)
        if "sparse" in acc:
            raise self.error(f"{where}: sparse accessors are not supported")
        if acc.get("type") != kind:
            raise self.error(f"{where} has type {_short(acc.get('type'))}, expected {kind}")
        comp = acc.get("componentType")
        if comp not in components:
            allowed = "/".join(_COMPONENT_NAMES[c] for c in components)
            raise self.error(f"{where} has componentType {_short(comp)} "
                             f"({_COMPONENT_NAMES.get(comp, 'unknown') if _is_int(comp) else 'unknown'}); "
                             f"{what} must be {allowed}")
        count = self.size(acc, "count", where)
        if "bufferView" not in acc:
            raise self.error(f"{where} has no bufferView (all-zero accessors are not supported)")
        view_where = f"bufferView {_short(acc['bufferView'])}"
        view = self.item("bufferViews", acc["bufferView"])
        data = self.buffer(view.get("buffer"))
        view_offset = self.size(view, "byteOffset", view_where, 0)
        view_length = self.size(view, "byteLength", view_where)
        if view_offset + view_length > len(data):
            raise self.error(f"{view_where} runs past its buffer: it ends at byte {view_offset + view_length}, "
                             f"the buffer has {len(data)}")
        dtype = np.dtype(_COMPONENTS[comp])
        width = _WIDTHS[kind]
        element = dtype.itemsize * width
        stride = self.size(view, "byteStride", view_where, element)
        if stride < element:
            raise self.error(f"{view_where} has byteStride {stride}, less than one {kind} ({element} bytes)")
        offset = self.size(acc, "byteOffset", where, 0)
        if count == 0:
            return np.zeros((0, width), dtype=dtype)
        end = offset + stride * (count - 1) + element
        if end > view_length:
            raise self.error(f"{where} is too long for its {view_where}: it needs {end} bytes, the view has "
                             f"{view_length}")
        return np.ndarray((count, width), dtype=dtype, buffer=data, offset=view_offset + offset,
                          strides=(stride, dtype.itemsize)).copy()

    def vertex_count(self, mesh: dict) -> int:
        """Vertices of a mesh as its POSITION accessors declare them (nothing is read)."""
        total = 0
        for prim in mesh.get("primitives", []) if isinstance(mesh.get("primitives"), list) else []:
            attrs = prim.get("attributes") if isinstance(prim, dict) else None
            if isinstance(attrs, dict) and "POSITION" in attrs:
                total += self.size(self.item("accessors", attrs["POSITION"]), "count", "a POSITION accessor")
        return total

    def node_matrix(self, index: int) -> np.ndarray:
        """A node's local 4x4: its ``matrix`` (column-major) or translation @ rotation @ scale."""
        node = self.item("nodes", index)
        where = f"node {index}"
        out = np.eye(4)
        if "matrix" in node:
            return self.floats(node["matrix"], 16, f"{where} matrix").reshape(4, 4).T
        q = self.floats(node.get("rotation", [0.0, 0.0, 0.0, 1.0]), 4, f"{where} rotation")
        if np.linalg.norm(q) < 1e-12:
            raise self.error(f"{where} has a zero rotation quaternion")
        s = self.floats(node.get("scale", [1.0, 1.0, 1.0]), 3, f"{where} scale")
        out[:3, :3] = quaternion_to_rotation(np.r_[q[3], q[:3]]) * s  # glTF stores (x, y, z, w)
        out[:3, 3] = self.floats(node.get("translation", [0.0, 0.0, 0.0]), 3, f"{where} translation")
        return out

    def owner(self, mesh_index: int) -> int | None:
        """The first node (lowest index) showing the mesh, or None."""
        for n in range(len(self.doc.get("nodes", []))):
            node = self.item("nodes", n)
            if _is_int(node.get("mesh")) and node["mesh"] == mesh_index:
                return n
        return None

    def world_matrix(self, owner: int | None, parent: dict[int, int]) -> np.ndarray:
        """World 4x4 of the mesh's first node ``owner`` (see ``owner``); identity when no node shows
        the mesh, or when that node is skinned (glTF ignores a skinned mesh node's transform)."""
        if owner is None or "skin" in self.doc["nodes"][owner]:
            return np.eye(4)
        return self.node_world(owner, parent)

    def primitive(self, prim, where: str):
        """(verts (V,3), tris (T,3), uvs (V,2) or None, morphs (M,V,3)) of one primitive."""
        if not isinstance(prim, dict):
            raise self.error(f"{where} is not an object")
        mode = prim.get("mode", 4)
        if mode != 4:
            mode_name = _MODES.get(mode, "unknown") if _is_int(mode) else "unknown"
            raise self.error(f"{where} has mode {_short(mode)} ({mode_name}); only TRIANGLES (4) is read")
        attrs = prim.get("attributes")
        if not isinstance(attrs, dict) or "POSITION" not in attrs:
            raise self.error(f"{where} has no POSITION attribute")
        verts = self.accessor(attrs["POSITION"], "VEC3", (5126,), "POSITION").astype(np.float64)
        if not np.isfinite(verts).all():
            raise self.error(f"{where} has NaN or infinite positions")
        n = len(verts)
        uvs = None
        if "TEXCOORD_0" in attrs:
            uv = self.accessor(attrs["TEXCOORD_0"], "VEC2", (5126,), "TEXCOORD_0").astype(np.float64)
            if len(uv) != n:
                raise self.error(f"{where} has {len(uv)} TEXCOORD_0 values for {n} vertices")
            uvs = np.stack([uv[:, 0], 1.0 - uv[:, 1]], axis=1)
        if "indices" in prim:
            idx = self.accessor(prim["indices"], "SCALAR", (5121, 5123, 5125), "indices").astype(np.int64)
            idx = idx.reshape(-1)
        else:
            idx = np.arange(n, dtype=np.int64)
        if len(idx) % 3:
            raise self.error(f"{where} has {len(idx)} indices, not a multiple of 3")
        if len(idx) and idx.max() >= n:
            raise self.error(f"{where}: index {idx.max()} is out of range for {n} vertices")
        targets = prim.get("targets", [])
        if not isinstance(targets, list):
            raise self.error(f"{where} has targets {_short(targets)}, not a list")
        morphs = np.zeros((len(targets), n, 3))
        for k, target in enumerate(targets):
            if not isinstance(target, dict):
                raise self.error(f"{where} target {k} is not an object")
            if "POSITION" in target:
                d = self.accessor(target["POSITION"], "VEC3", (5126,), f"target {k} POSITION")
                if len(d) != n:
                    raise self.error(f"{where} target {k} has {len(d)} POSITION deltas for {n} vertices")
                morphs[k] = d
        return verts, idx.reshape(-1, 3), uvs, morphs, self.influences(attrs, n, where)

    def influences(self, attrs: dict, n: int, where: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(joints (V, 4K) int64, weights (V, 4K) float64) from JOINTS_k / WEIGHTS_k, or None."""
        joints, weights = [], []
        k = 0
        while f"JOINTS_{k}" in attrs or f"WEIGHTS_{k}" in attrs:
            if f"JOINTS_{k}" not in attrs or f"WEIGHTS_{k}" not in attrs:
                raise self.error(f"{where} has only one of JOINTS_{k} and WEIGHTS_{k}")
            j = self.accessor(attrs[f"JOINTS_{k}"], "VEC4", (5121, 5123), f"JOINTS_{k}").astype(np.int64)
            w = self.accessor(attrs[f"WEIGHTS_{k}"], "VEC4", (5121, 5123, 5126), f"WEIGHTS_{k}")
            # Integer weights are normalised (glTF 2.0, 3.7.2.1): 255 or 65535 is one.
            w = w.astype(np.float64) / (np.iinfo(w.dtype).max if w.dtype.kind == "u" else 1.0)
            if len(j) != n or len(w) != n:
                raise self.error(f"{where}: JOINTS_{k} / WEIGHTS_{k} have {len(j)} / {len(w)} values for {n} vertices")
            if not np.isfinite(w).all() or (w < 0).any():
                raise self.error(f"{where}: WEIGHTS_{k} holds negative or non-finite weights")
            joints.append(j)
            weights.append(w)
            k += 1
        return (np.concatenate(joints, 1), np.concatenate(weights, 1)) if joints else None

    def parents(self) -> dict[int, int]:
        """child node -> parent node, checked: children in range, no node under two parents."""
        nodes = self.doc.get("nodes", [])
        if not isinstance(nodes, list):
            raise self.error("'nodes' is not a list")
        parent: dict[int, int] = {}
        for n in range(len(nodes)):
            children = self.item("nodes", n).get("children", [])
            if not isinstance(children, list):
                raise self.error(f"node {n} has children {_short(children)}, not a list")
            for c in children:
                if not _is_int(c) or not 0 <= c < len(nodes) or c in parent or c == n:
                    raise self.error(f"node {n} has a bad child {_short(c)} (out of range, itself, or shared)")
                parent[c] = n
        return parent

    def node_world(self, node: int, parent: dict[int, int]) -> np.ndarray:
        """World 4x4 of a node: its ancestors' transforms and its own."""
        chain = [node]
        while chain[-1] in parent:
            chain.append(parent[chain[-1]])
            if len(chain) > len(parent) + 1:
                raise self.error(f"the parents of node {node} form a cycle")
        world = np.eye(4)
        for n in reversed(chain):
            world = world @ self.node_matrix(n)
        return world

    def skin(self, index, influences: tuple[np.ndarray, np.ndarray] | None, n: int,
             parent: dict[int, int]) -> GltfSkin:
        """Skin ``index`` read with the mesh's per-vertex influences and the node tree ``parent``
        (child -> parent, see ``parents``); see GltfSkin."""
        where = f"skin {_short(index)}"
        skin = self.item("skins", index)
        joints = skin.get("joints")
        nodes = self.doc.get("nodes", [])
        if (not isinstance(joints, list) or not joints or not all(_is_int(j) and 0 <= j < len(nodes) for j in joints)
                or len(set(joints)) != len(joints)):
            raise self.error(f"{where} has no joints, or joints that are not distinct node indices")
        if influences is None:
            raise self.error(f"{where} binds a mesh without JOINTS_0 / WEIGHTS_0")
        n_joints = len(joints)
        if n * n_joints > MAX_SKIN_ENTRIES:
            raise self.error(f"{where}: {n_joints} joints over {n} vertices is more than the "
                             f"{MAX_SKIN_ENTRIES} weights a head may have")
        if "inverseBindMatrices" in skin:
            ibm = self.accessor(skin["inverseBindMatrices"], "MAT4", (5126,), "inverseBindMatrices")
            if len(ibm) != n_joints:
                raise self.error(f"{where} has {len(ibm)} inverse bind matrices for {n_joints} joints")
            ibm = ibm.astype(np.float64).reshape(-1, 4, 4).transpose(0, 2, 1)  # column-major
            if not np.isfinite(ibm).all() or (np.abs(np.linalg.det(ibm[:, :3, :3])) < 1e-12).any():
                raise self.error(f"{where} has a singular or non-finite inverse bind matrix")
            rest = np.linalg.inv(ibm)
        else:  # glTF: without them the joints' bind pose is where their nodes are
            rest = np.stack([self.node_world(j, parent) for j in joints])
        slot = {node: i for i, node in enumerate(joints)}

        def joint_parent(node: int) -> int:
            p = parent.get(node)
            while p is not None and p not in slot:
                p = parent.get(p)
            return -1 if p is None else slot[p]

        up = np.array([joint_parent(j) for j in joints], np.int64)
        depth = np.zeros(n_joints, np.int64)
        for i in range(n_joints):
            p, d = up[i], 0
            while p >= 0:
                p, d = up[p], d + 1
            depth[i] = d
        order = np.argsort(depth, kind="stable")  # parents first, the file's order within a depth
        new = np.empty(n_joints, np.int64)
        new[order] = np.arange(n_joints)
        parents = np.where(up[order] >= 0, new[np.maximum(up[order], 0)], -1)
        rest = rest[order]
        names = [self.item("nodes", joints[i]).get("name") for i in order]
        names = [nm if isinstance(nm, str) and nm else f"joint_{joints[i]}" for nm, i in zip(names, order)]
        if len(set(names)) != len(names):
            raise self.error(f"{where}: its joints' names are not distinct; rename them in the source file")
        ids, wts = influences
        if ids.max(initial=0) >= n_joints:
            raise self.error(f"{where}: JOINTS refer to joint {int(ids.max())}, the skin has {n_joints}")
        weights = np.zeros((n, n_joints), np.float32)
        np.add.at(weights, (np.repeat(np.arange(n), ids.shape[1]), new[ids.reshape(-1)]), wts.reshape(-1))
        return GltfSkin(names, parents, rest, _bone_tails(parents, rest), weights)

    def mesh(self, mesh_name: str | None) -> GltfMesh:
        """The named mesh, else the one with most vertices (the first on a tie)."""
        meshes = self.doc.get("meshes", [])
        if not isinstance(meshes, list) or not meshes:
            raise self.error("the file has no meshes")
        all_meshes = [self.item("meshes", i) for i in range(len(meshes))]
        names = [m["name"] if isinstance(m.get("name"), str) else f"mesh_{i}" for i, m in enumerate(all_meshes)]
        if mesh_name is not None:
            if mesh_name not in names:
                listed = ", ".join(_short(n) for n in names[:20]) + (", ..." if len(names) > 20 else "")
                raise self.error(f"no mesh named {_short(mesh_name)}; meshes: {listed}")
            index = names.index(mesh_name)
        else:
            counts = [self.vertex_count(m) for m in all_meshes]
            index = counts.index(max(counts))
        mesh = all_meshes[index]
        prims = mesh.get("primitives")
        if not isinstance(prims, list) or not prims:
            raise self.error(f"mesh {_short(names[index])} has no primitives")
        parts = [self.primitive(p, f"mesh {_short(names[index])} primitive {i}") for i, p in enumerate(prims)]
        n_targets = sorted({len(p[3]) for p in parts})
        if len(n_targets) > 1:
            raise self.error(f"mesh {_short(names[index])}: its primitives have different numbers of morph "
                             f"targets {n_targets}")
        offsets = np.cumsum([0] + [len(p[0]) for p in parts])
        verts = np.concatenate([p[0] for p in parts])
        tris = np.concatenate([p[1] + off for p, off in zip(parts, offsets)])
        uvs = None
        if any(p[2] is not None for p in parts):
            uvs = np.concatenate([p[2] if p[2] is not None else np.full((len(p[0]), 2), np.nan) for p in parts])
        morphs = np.concatenate([p[3] for p in parts], axis=1)
        skin = None
        parent, owner = self.parents(), self.owner(index)  # parents() also checks the node tree
        if owner is not None and "skin" in self.doc["nodes"][owner]:
            if any(p[4] is None for p in parts):
                raise self.error(f"mesh {_short(names[index])} is skinned but a primitive has no JOINTS_0 / WEIGHTS_0")
            width = max(p[4][0].shape[1] for p in parts)
            pad = [(np.pad(p[4][0], ((0, 0), (0, width - p[4][0].shape[1]))),
                    np.pad(p[4][1], ((0, 0), (0, width - p[4][1].shape[1])))) for p in parts]
            skin = self.skin(self.doc["nodes"][owner]["skin"],
                             (np.concatenate([q[0] for q in pad]), np.concatenate([q[1] for q in pad])), len(verts),
                             parent)
        world = self.world_matrix(owner, parent)
        verts = verts @ world[:3, :3].T + world[:3, 3]
        morphs = morphs @ world[:3, :3].T
        extras = mesh.get("extras")
        given = extras.get("targetNames") if isinstance(extras, dict) else None
        given = given if isinstance(given, list) else []
        morph_names = [given[k] if k < len(given) and isinstance(given[k], str) else f"key_{k + 1}"
                       for k in range(n_targets[0])]
        return GltfMesh(names[index], verts, tris, uvs, morph_names, morphs, skin)


def _bone_tails(parents: np.ndarray, rest: np.ndarray) -> np.ndarray:
    """(J, 3) tails for joints given as frames (see GltfSkin)."""
    heads = rest[:, :3, 3]
    children = [np.flatnonzero(parents == j) for j in range(len(parents))]
    size = float(np.linalg.norm(heads.max(0) - heads.min(0))) if len(heads) > 1 else 0.0
    tails = np.empty_like(heads)
    length = np.zeros(len(parents))
    for j in range(len(parents)):  # parents first: a parent's length is known before its children's
        if len(children[j]) == 1 and np.linalg.norm(heads[children[j][0]] - heads[j]) > 1e-9:
            tails[j] = heads[children[j][0]]
        else:
            axis = rest[j, :3, 1] / max(np.linalg.norm(rest[j, :3, 1]), 1e-12)
            reach = length[parents[j]] if parents[j] >= 0 else 0.1 * size
            tails[j] = heads[j] + axis * (reach if reach > 1e-9 else max(0.1 * size, 0.01))
        length[j] = np.linalg.norm(tails[j] - heads[j])
    return tails


def read_gltf(path, mesh_name: str | None = None) -> GltfMesh:
    """Read one triangle mesh of a .glb or .gltf file (at most MAX_GLTF_BYTES with its buffers).

    ``mesh_name`` picks the mesh; without it, the mesh with most vertices. Its primitives are
    concatenated in order, vertices exactly in accessor order. Positions stay in the file's
    Y-up frame with the node transforms applied (see GltfMesh). Raises a one-line ValueError
    naming the file for anything it cannot read (sparse accessors, non-triangle modes, ...).
    """
    path = pathlib.Path(path)
    try:
        return _GltfReader(path).mesh(mesh_name)
    except (KeyError, TypeError, AttributeError, IndexError) as exc:  # a document shaped unlike glTF
        raise ValueError(f"{path}: malformed glTF ({type(exc).__name__}: {_short(str(exc))})") from None
