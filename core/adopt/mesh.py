"""An artist's head mesh as it comes from a file, and the checks a TD needs before anything runs.

``read_head`` reads ``.obj`` (polygons kept), ``.glb`` / ``.gltf`` (triangles,
morph targets as shape keys) and, where Blender's ``bpy`` module is installed,
``.blend`` (an object by name) and ``.fbx`` (``scripts/dump_head.py`` in a
process of its own: Blender's data in its own frame). OBJ and glTF are Y-up; they
are turned into the world frame (Z up, face toward -Y) the way Blender's
importers do. Vertex order, polygons and UVs are the file's own and never
change: what goes out of the import comes back in every export.

``check_head`` refuses what cannot be a head template, with one message each:
several separate pieces, edges shared by more than two faces, polygons of more
than four corners, no faces, a scale that is not a head's.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib

import numpy as np

from core.export.obj import obj_to_world, read_obj
from core.files import UnsafeFileError, open_regular
from core.geometry.mesh_layout import fan_triangulate, pad_polygons, polygon_edges, triangle_edges

# A head from the crown to the chin is ~0.2-0.3 m; a bust with shoulders up to ~0.8 m.
HEAD_SIZE_M = (0.12, 0.9)
MAX_HEAD_FILE_BYTES = 512 * 1024 * 1024
SUFFIXES = (".obj", ".glb", ".gltf", ".blend", ".fbx")


class HeadImportError(ValueError):
    """A head file that cannot be imported; the message is one line a TD can act on."""


@dataclasses.dataclass(frozen=True)
class HeadMesh:
    """One mesh in the world frame (metres after ``scale``; Z up, face toward -Y).

    verts (N, 3) float64; poly_verts (C,) int64 and poly_start (F+1,) int64 as in the
    template format; uvs (C, 2) float32 per corner (zeros when ``has_uvs`` is False);
    shape_keys: name -> (N, 3) float64 delta; source: file name and object.
    armature: the artist's bones where the file has them (``.blend``, ``.fbx``, a skinned ``.glb``): names (parents
    first), parents (J,), rest (J, 4, 4) world frames, tails (J, 3), weights (N, J); else None.
    """

    verts: np.ndarray
    poly_verts: np.ndarray
    poly_start: np.ndarray
    uvs: np.ndarray
    has_uvs: bool
    shape_keys: dict
    source: str
    armature: dict | None = None

    @property
    def polygons(self) -> np.ndarray:
        """(F, 4) vertex ids padded with -1 (triangles and quads)."""
        return pad_polygons(self.poly_verts, self.poly_start)

    @functools.cached_property
    def _fans(self) -> tuple[np.ndarray, np.ndarray]:
        return fan_triangulate(self.polygons)

    @property
    def tris(self) -> np.ndarray:
        """(T, 3) the fan triangles of the polygons."""
        return self._fans[0]

    @property
    def tri_poly(self) -> np.ndarray:
        """(T,) the polygon each triangle comes from."""
        return self._fans[1]


def read_head(path: str | pathlib.Path, object_name: str | None = None, scale: float = 1.0) -> HeadMesh:
    """The head mesh in ``path``; ``scale`` turns the file's units into metres (0.01 for cm)."""
    path = pathlib.Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise HeadImportError(f"cannot import {path.name!r}: use one of {', '.join(SUFFIXES)}")
    if not np.isfinite(scale) or scale <= 0:
        raise HeadImportError(f"--scale must be a positive number, got {scale}")
    try:  # a regular file within budget: no FIFO, device or folder is read
        open_regular(path, "head file", MAX_HEAD_FILE_BYTES).close()
    except UnsafeFileError as exc:
        raise HeadImportError(str(exc)) from None
    if suffix == ".obj":
        head = _read_obj(path, object_name)
    elif suffix in (".glb", ".gltf"):
        head = _read_gltf(path, object_name)
    else:
        head = _read_with_blender(path, object_name)
    if scale != 1.0:
        arm = head.armature
        if arm is not None:
            rest = arm["rest"].copy()
            rest[:, :3, 3] *= scale
            arm = {**arm, "rest": rest, "tails": arm["tails"] * scale}
        head = dataclasses.replace(head, verts=head.verts * scale, armature=arm,
                                   shape_keys={k: v * scale for k, v in head.shape_keys.items()})
    check_head(head)
    return head


def _flat(polygons: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    counts = (polygons >= 0).sum(1)
    return polygons[polygons >= 0].astype(np.int64), np.r_[0, np.cumsum(counts)].astype(np.int64)


def _read_obj(path: pathlib.Path, object_name: str | None) -> HeadMesh:
    try:
        mesh = read_obj(path)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise HeadImportError(f"cannot read {path.name!r} as OBJ: {exc}") from None
    polygons, polygon_uvs = mesh.polygons, mesh.polygon_uvs
    if object_name is not None:
        if object_name not in mesh.groups:
            raise HeadImportError(f"{path.name!r} has no object or group {object_name!r}; it has "
                                  f"{', '.join(mesh.groups)}")
        keep = mesh.group_mask(object_name)
        polygons, polygon_uvs = polygons[keep], polygon_uvs[keep]
    poly_verts, poly_start = _flat(polygons)
    # Keep the file's vertex order; drop only vertices no face of this object uses, by
    # renumbering in order (an OBJ of one head uses all of them and keeps every id).
    used = np.zeros(len(mesh.verts), bool)
    used[poly_verts] = True
    remap = np.cumsum(used) - 1
    poly_verts = remap[poly_verts]
    uv_ids = polygon_uvs[polygons >= 0]
    has_uvs = bool(len(mesh.uvs)) and bool((uv_ids >= 0).all())
    uvs = mesh.uvs[uv_ids].astype(np.float32) if has_uvs else np.zeros((len(poly_verts), 2), np.float32)
    return HeadMesh(obj_to_world(mesh.verts[used]), poly_verts, poly_start, uvs, has_uvs, {},
                    f"{path.name}" + (f" ({object_name})" if object_name else ""))


def _read_gltf(path: pathlib.Path, object_name: str | None) -> HeadMesh:
    from core.export.gltf import read_gltf

    try:
        mesh = read_gltf(path, object_name)
    except (ValueError, OSError) as exc:
        raise HeadImportError(str(exc).splitlines()[0] if str(exc) else f"cannot read {path.name!r}") from None
    # glTF splits a vertex wherever its UVs do (a seam): vertices at exactly one position are
    # welded back into one, in the order each first appears, so the head is one piece again.
    verts = np.asarray(mesh.verts, np.float64)
    _, first, inverse = np.unique(verts, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(first, kind="stable")
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    keep = first[order]  # the file's vertex kept for each welded one, in file order
    welded = rank[inverse]  # file vertex -> welded vertex
    tris = np.asarray(mesh.tris, np.int64)
    corners = tris.reshape(-1)
    poly_verts = welded[corners]
    poly_start = np.arange(0, len(poly_verts) + 1, 3, dtype=np.int64)
    has_uvs = mesh.uvs is not None
    uvs = (mesh.uvs[corners].astype(np.float32) if has_uvs else np.zeros((len(poly_verts), 2), np.float32))
    keys = {name: obj_to_world(np.asarray(d, np.float64)[keep]) for name, d in zip(mesh.morph_names, mesh.morphs)}
    armature = None
    if mesh.skin is not None:
        # glTF's Y-up frames into ours (Z up), as the vertices: the bones keep their own axes.
        to_world = np.eye(4)
        to_world[:3, :3] = obj_to_world(np.eye(3)).T
        armature = {"names": list(mesh.skin.names), "parents": mesh.skin.parents,
                    "rest": to_world @ mesh.skin.rest, "tails": obj_to_world(mesh.skin.tails),
                    "weights": mesh.skin.weights[keep].astype(np.float64)}
    return HeadMesh(obj_to_world(verts[keep]), poly_verts, poly_start, uvs, has_uvs,
                    keys, f"{path.name} ({mesh.name})", armature)


def _read_with_blender(path: pathlib.Path, object_name: str | None) -> HeadMesh:
    """Blender reads the file in a process of its own (``scripts/dump_head.py``; the core never imports bpy)."""
    import importlib.util
    import json
    import subprocess
    import sys
    import tempfile

    if importlib.util.find_spec("bpy") is None:
        raise HeadImportError(f"reading {path.suffix} files needs Blender's bpy module (pip install "
                              f"'likeness[blender]'), or import {path.name!r} from the add-on's Template panel, "
                              "or export the head as .obj or .glb")
    with tempfile.TemporaryDirectory(prefix="likeness-head-") as tmp:
        dump = pathlib.Path(tmp) / "head.npz"
        script = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "dump_head.py"
        if not script.is_file():
            raise HeadImportError(f"reading {path.suffix} files needs the Likeness checkout's scripts/dump_head.py; "
                                  "export the head as .obj or .glb")
        cmd = [sys.executable, str(script), str(path), str(dump)]
        if object_name is not None:
            cmd += ["--object", object_name]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not dump.is_file():
            lines = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()]
            raise HeadImportError(f"Blender could not read {path.name!r}: {lines[-1] if lines else 'no output'}")
        with np.load(dump, allow_pickle=False) as d:
            meta = json.loads(str(d["meta"]))
            keys = {name: d["keys"][i] for i, name in enumerate(meta["keys"])}
            armature = None
            if meta.get("bones"):
                armature = {"names": list(meta["bones"]), **{k: d[f"bone_{k}"] for k in
                                                             ("parents", "rest", "tails", "weights")}}
            return HeadMesh(d["verts"], d["poly_verts"], d["poly_start"], d["uvs"], bool(d["has_uvs"]), keys,
                            f"{path.name} ({meta['object']})", armature)


def pieces(tris: np.ndarray, n: int) -> np.ndarray:
    """(N,) int label of the connected piece (by shared vertices) each vertex is in; unused vertices -1."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    a, b = triangle_edges(tris).T
    graph = sp.coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    used = np.zeros(n, bool)
    used[tris.reshape(-1)] = True
    return np.where(used, labels, -1)


def check_head(head: HeadMesh) -> None:
    """Raise HeadImportError when ``head`` cannot be a head template."""
    n = len(head.verts)
    counts = np.diff(head.poly_start)
    if n == 0 or len(counts) == 0:
        raise HeadImportError(f"{head.source}: the mesh has no faces")
    if not np.isfinite(head.verts).all():
        raise HeadImportError(f"{head.source}: the mesh has NaN or infinite vertex positions")
    if (counts > 4).any():
        raise HeadImportError(f"{head.source}: {int((counts > 4).sum())} polygons have more than 4 corners; "
                              "triangulate or quadrangulate them (Blender: Face > Triangulate Faces)")
    tris = head.tris
    labels = pieces(tris, n)
    sizes = np.bincount(labels[labels >= 0])
    if len(sizes) > 1:
        raise HeadImportError(f"{head.source}: the mesh has {len(sizes)} separate pieces (largest "
                              f"{int(sizes.max())} of {int((labels >= 0).sum())} vertices); import the skin alone "
                              "(eyes and teeth are added) or join the pieces")
    _, edge_use = np.unique(polygon_edges(head.poly_verts, head.poly_start), axis=0, return_counts=True)
    if (edge_use > 2).any():
        raise HeadImportError(f"{head.source}: {int((edge_use > 2).sum())} edges are shared by more than two "
                              "faces (non-manifold); clean them up (Blender: Select > Select All by Trait > "
                              "Non Manifold)")
    size = float(np.linalg.norm(head.verts.max(0) - head.verts.min(0)))
    lo, hi = HEAD_SIZE_M
    if not lo <= size <= hi:
        hint = next((f"; if it is in {u} pass --scale {s}" for u, s, k in
                     (("millimetres", 0.001, 1000), ("centimetres", 0.01, 100), ("decimetres", 0.1, 10))
                     if lo <= size / k <= hi), "")
        raise HeadImportError(f"{head.source}: the mesh is {size:.4g} units across, not a head's "
                              f"{lo}-{hi} m{hint}")

