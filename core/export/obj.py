"""Wavefront OBJ with polygons (quads kept) and per-corner UVs: the writer and the one reader."""

from __future__ import annotations

import dataclasses
import io
import pathlib

import numpy as np


def world_to_obj(verts: np.ndarray) -> np.ndarray:
    """(N, 3) world (Z up, face toward -Y) -> the Y-up frame Likeness OBJ files use: (x, z, -y)."""
    return np.stack([verts[:, 0], verts[:, 2], -verts[:, 1]], axis=1)


def obj_to_world(verts: np.ndarray) -> np.ndarray:
    """(N, 3) a Likeness OBJ file's Y-up coordinates -> world (Z up): the inverse of ``world_to_obj``."""
    return np.stack([verts[:, 0], -verts[:, 2], verts[:, 1]], axis=1)


def write_obj(path, verts: np.ndarray, polys: np.ndarray, corner_uvs: np.ndarray | None = None,
              name: str = "likeness_head") -> None:
    """Write a polygon mesh.

    verts: (N, 3) float, world metres (Blender frame: Z up). OBJ files are
    read as Y up by most tools, so we write (x, z, -y); Blender's importer
    (forward -Z, up Y) turns that back into our frame.
    polys: (P, 4) int, -1 padding for triangles. corner_uvs: (P, 4, 2) float.
    """
    verts = np.asarray(verts, dtype=np.float64)
    polys = np.asarray(polys, dtype=np.int64)
    if verts.ndim != 2 or verts.shape[1] != 3:
        raise ValueError(f"verts must be (N, 3), got {verts.shape}")
    if not np.isfinite(verts).all():
        raise ValueError("verts contain NaN or infinity")
    yup = world_to_obj(verts)
    buf = io.StringIO()
    buf.write(f"# Likeness head: {len(verts)} vertices, {len(polys)} faces\no {name}\n")
    np.savetxt(buf, yup, fmt="v %.6f %.6f %.6f")
    valid = polys >= 0
    counts = valid.sum(1)
    if corner_uvs is not None:
        uv = np.asarray(corner_uvs, dtype=np.float64)[valid]
        uniq, uv_index = np.unique(np.round(uv, 6), axis=0, return_inverse=True)
        np.savetxt(buf, uniq, fmt="vt %.6f %.6f")
        uv_ids = np.full(polys.shape, -1, dtype=np.int64)
        uv_ids[valid] = uv_index.reshape(-1)
    # One line per polygon in template order, so face indices survive a round trip.
    vid = (polys + 1).astype(str)
    if corner_uvs is not None:
        vid = np.char.add(np.char.add(vid, "/"), (uv_ids + 1).astype(str))
    lines = ["f " + " ".join(row[:n]) for row, n in zip(vid.tolist(), counts.tolist())]
    buf.write("\n".join(lines) + "\n")
    pathlib.Path(path).write_text(buf.getvalue())


@dataclasses.dataclass(frozen=True)
class ObjMesh:
    """Polygons of a Wavefront OBJ file in its own frame and units.

    verts: (V, 3) float64. uvs: (U, 2) float64. polygons: (P, N) int64 vertex ids
    (0-based, -1 padded). polygon_uvs: (P, N) int64 uv ids (-1 where absent).
    polygon_group: (P,) int64 index into ``groups`` (the ``g`` statement in force).
    """

    verts: np.ndarray
    uvs: np.ndarray
    polygons: np.ndarray
    polygon_uvs: np.ndarray
    polygon_group: np.ndarray
    groups: tuple[str, ...]

    def group_mask(self, name: str) -> np.ndarray:
        """(P,) bool: polygons in group ``name``."""
        if name not in self.groups:
            raise KeyError(f"OBJ has no group {name!r}; groups: {', '.join(self.groups[:10])}...")
        return self.polygon_group == self.groups.index(name)


def read_obj(path: str | pathlib.Path) -> ObjMesh:
    """Read vertices, UVs, polygons and groups from an OBJ file (file order preserved)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"OBJ file not found: {path}")
    verts, uvs, faces, face_uvs, face_groups = [], [], [], [], []
    groups: list[str] = ["default"]
    current = 0
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        head, _, rest = line.partition(" ")
        if head == "v":
            verts.append(rest.split()[:3])
        elif head == "vt":
            uvs.append(rest.split()[:2])
        elif head == "g":
            name = rest.strip() or "default"
            if name not in groups:
                groups.append(name)
            current = groups.index(name)
        elif head == "f":
            corners = [c.split("/") for c in rest.split()]
            if len(corners) < 3:
                raise ValueError(f"{path}:{lineno}: face with fewer than 3 corners")
            faces.append([int(c[0]) for c in corners])
            face_uvs.append([int(c[1]) if len(c) > 1 and c[1] else 0 for c in corners])
            face_groups.append(current)
    if not faces:
        raise ValueError(f"{path}: no faces")
    width = max(len(f) for f in faces)
    polygons = np.full((len(faces), width), -1, dtype=np.int64)
    polygon_uvs = np.full((len(faces), width), -1, dtype=np.int64)
    for i, (f, fu) in enumerate(zip(faces, face_uvs)):
        polygons[i, : len(f)] = f
        polygon_uvs[i, : len(fu)] = fu
    # OBJ ids are 1-based (negative ones are relative, which this data never uses).
    if polygons.min(initial=1) == 0 or np.any(polygons < -1):
        raise ValueError(f"{path}: relative or zero vertex ids are not supported")
    polygons = np.where(polygons > 0, polygons - 1, -1)
    polygon_uvs = np.where(polygon_uvs > 0, polygon_uvs - 1, -1)
    verts_arr = np.asarray(verts, dtype=np.float64).reshape(-1, 3)
    if polygons.max() >= len(verts_arr):
        raise ValueError(f"{path}: face refers to vertex {polygons.max() + 1} of {len(verts_arr)}")
    return ObjMesh(
        verts_arr,
        np.asarray(uvs, dtype=np.float64).reshape(-1, 2),
        polygons,
        polygon_uvs,
        np.asarray(face_groups, dtype=np.int64),
        tuple(groups),
    )
