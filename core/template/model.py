"""The rigged head template as plain numpy data, its flat-array form and file format.

A :class:`Template` is T = (V̄, F, R, J, θ̄, W, Δ): neutral vertices, polygon
faces with per-corner UVs, controllers (vertex deltas Δ and joint offsets Φ),
joints (parents + rest frames), sparse skinning weights, plus separate rigid
parts (eyeballs, teeth, tongue), the mirror map, regions and the landmark
embedding. Units are metres in Blender's world frame (Z up, face toward −Y,
subject's left at +X).

Flat-array form (``to_arrays()`` / ``from_arrays()``; also the ``.npz`` file
content and what the bridge puts on the wire). N skin vertices, C polygon
corners, F polygons, T triangles, K influences, J joints, R controllers,
P part vertices, Cp/Fp part corners/polygons, L landmarks:

===================== ============ ==========================================
name                  shape/dtype  meaning
===================== ============ ==========================================
verts                 (N,3) f32    neutral rest vertices V̄
poly_verts            (C,) i64     polygon corners (vertex ids), polygon by polygon
poly_start            (F+1,) i64   polygon f uses corners poly_start[f]:poly_start[f+1]
uvs                   (C,2) f32    UV per corner
tris                  (T,3) i64    fan triangulation (a,b,c),(a,c,d) of each polygon
tri_poly              (T,) i64     polygon each triangle comes from
skin_idx              (N,K) i64    joint ids of the influences (unused slots: 0 with weight 0)
skin_w                (N,K) f32    influence weights, each row sums to 1
joint_parents         (J,) i64     parent joint id, -1 for the root; parents come first
joint_rest            (J,4,4) f32  rest world frame: columns = bone X, Y (head→tail), Z; translation = head
joint_tails           (J,3) f32    rest tail positions (for building an armature)
ctrl_basis            (R,2,N,3) f32  Δ_k: vertex delta at controller value +1 ([:,0]) and −1 ([:,1])
ctrl_joint_basis      (R,2,J,3) f32  Φ_k: joint head offset at +1 / −1
ctrl_tail_basis       (R,2,J,3) f32  joint tail offset at +1 / −1
ctrl_bounds           (R,2) f32    [lower, upper] bound of each controller
ctrl_default          (R,) f32     neutral value (inside the bounds)
ctrl_is_expression    (R,) bool    expression (True) or identity shape (False)
part_verts            (P,3) f32    rest vertices of the rigid parts
part_poly_verts       (Cp,) i64    part polygon corners (part vertex ids)
part_poly_start       (Fp+1,) i64  part polygon offsets
part_uvs              (Cp,2) f32   UV per part corner (eyes: the iris a disc about (0.5, 0.5)); zeros
                                   where a template's parts have none (files without the array)
part_vert_part        (P,) i64     which part (index into meta part_names) each vertex is in
part_joint            (P,) i64     the joint each part vertex follows rigidly
part_ctrl_basis       (R,2,P,3) f32  part vertex delta at +1 / −1
mirror                (N,) i64     mirrored vertex of each vertex (an involution; -1: none)
source_vertex_id      (N,) i64     vertex id in the source mesh (base.obj), -1 if none
lmk_tri               (L,) i64     triangle (row of tris) of each landmark
lmk_bary              (L,3) f32    barycentrics in that triangle, summing to 1
lmk_kind              (L,) i8      0 unused, 1 surface, 2 contour (silhouette)
region.<name>         (n,) i64     vertex ids; ordered where the name says so
lmk_subset.<name>     (n,) i64     landmark ids (ordered contours, corners)
===================== ============ ==========================================

Controllers act piecewise linearly, as MakeHuman's decr/incr target pairs do:
Δ(r) = Σ_k max(r_k, 0) Δ_k⁺ + max(−r_k, 0) Δ_k⁻ (same for Φ and the parts).
A plain linear controller (a Blender shape key) has Δ_k⁻ = −Δ_k⁺.

Metadata (JSON-able dict): ``format_version``, ``joint_names`` (J),
``ctrl_names`` (R), ``part_names``, ``regions`` and ``lmk_subsets`` (names
in a fixed order), and free-form ``info`` (source, builder version, ...).
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import pathlib
import zipfile
import zlib

import numpy as np

FORMAT_VERSION = 1
META_KEY = "meta.json"
WEIGHT_SUM_TOL = 1e-4
BARY_SUM_TOL = 1e-4
ROTATION_TOL = 1e-5

LMK_UNUSED, LMK_SURFACE, LMK_CONTOUR = 0, 1, 2
LMK_KINDS = {"unused": LMK_UNUSED, "surface": LMK_SURFACE, "contour": LMK_CONTOUR}


# The default head unpacks to ~25 MB; these leave room for denser heads and
# refuse a zip bomb before it is inflated.
MAX_TEMPLATE_BYTES = 128 * 1024 * 1024
MAX_TEMPLATE_FILE_BYTES = MAX_TEMPLATE_BYTES


class TemplateError(ValueError):
    """A template (file or arrays) is malformed; the message names the problem."""


@dataclasses.dataclass(eq=False)
class Template:
    """The rigged head template. Array shapes are in the module docstring."""

    verts: np.ndarray
    poly_verts: np.ndarray
    poly_start: np.ndarray
    uvs: np.ndarray
    tris: np.ndarray
    tri_poly: np.ndarray
    skin_idx: np.ndarray
    skin_w: np.ndarray
    joint_names: list[str]
    joint_parents: np.ndarray
    joint_rest: np.ndarray
    joint_tails: np.ndarray
    ctrl_names: list[str]
    ctrl_basis: np.ndarray
    ctrl_joint_basis: np.ndarray
    ctrl_tail_basis: np.ndarray
    ctrl_bounds: np.ndarray
    ctrl_default: np.ndarray
    ctrl_is_expression: np.ndarray
    part_names: list[str]
    part_verts: np.ndarray
    part_poly_verts: np.ndarray
    part_poly_start: np.ndarray
    part_uvs: np.ndarray
    part_vert_part: np.ndarray
    part_joint: np.ndarray
    part_ctrl_basis: np.ndarray
    mirror: np.ndarray
    source_vertex_id: np.ndarray
    regions: dict[str, np.ndarray]
    lmk_tri: np.ndarray
    lmk_bary: np.ndarray
    lmk_kind: np.ndarray
    lmk_subsets: dict[str, np.ndarray]
    info: dict = dataclasses.field(default_factory=dict)

    # -- sizes -------------------------------------------------------------
    @property
    def num_verts(self) -> int:
        return int(self.verts.shape[0])

    @property
    def num_joints(self) -> int:
        return int(self.joint_parents.shape[0])

    @property
    def num_controllers(self) -> int:
        return int(self.ctrl_bounds.shape[0])

    @property
    def num_landmarks(self) -> int:
        return int(self.lmk_tri.shape[0])

    @property
    def num_polys(self) -> int:
        return int(self.poly_start.shape[0] - 1)

    @property
    def num_quads(self) -> int:
        return int((np.diff(self.poly_start) == 4).sum())

    @property
    def joint_heads(self) -> np.ndarray:
        """(J, 3) float32 rest joint head positions."""
        return self.joint_rest[:, :3, 3]

    @property
    def has_uvs(self) -> bool:
        """Whether the skin has a UV layout (some polygon spans UV area): texture maps need one."""
        spread = self.uvs.max(0) - self.uvs.min(0) if len(self.uvs) else np.zeros(2)
        return bool((spread > 1e-6).all())

    def joint_index(self, name: str) -> int:
        try:
            return self.joint_names.index(name)
        except ValueError:
            raise KeyError(f"no joint named {name!r}") from None

    def ctrl_index(self, name: str) -> int:
        try:
            return self.ctrl_names.index(name)
        except ValueError:
            raise KeyError(f"no controller named {name!r}") from None

    def summary(self) -> str:
        """A one-screen human-readable summary."""
        n_expr = int(self.ctrl_is_expression.sum())
        lines = [
            f"vertices     {self.num_verts}",
            f"polygons     {self.num_polys} ({self.num_quads} quads), {len(self.tris)} triangles",
            f"joints       {self.num_joints} (root {self.joint_names[0] if self.joint_names else '-'})",
            f"controllers  {self.num_controllers} ({self.num_controllers - n_expr} shape, {n_expr} expression)",
            f"parts        {', '.join(f'{n} ({int((self.part_vert_part == i).sum())} verts)' for i, n in enumerate(self.part_names)) or 'none'}",
            f"regions      {', '.join(f'{k} ({len(v)})' for k, v in self.regions.items()) or 'none'}",
            f"landmarks    {self.num_landmarks}"
            + (" (no embedding file)" if self.num_landmarks == 0 else
               f" ({int((self.lmk_kind == LMK_SURFACE).sum())} surface, {int((self.lmk_kind == LMK_CONTOUR).sum())} contour)"),
        ]
        lo, hi = self.verts.min(0), self.verts.max(0)
        lines.append("extent (m)   " + " ".join(f"{a}:[{l:+.3f},{h:+.3f}]" for a, l, h in zip("xyz", lo, hi)))
        return "\n".join(lines)

    # -- flat arrays -------------------------------------------------------
    def to_arrays(self) -> tuple[dict[str, np.ndarray], dict]:
        """The template as (flat dict of numpy arrays, JSON-able metadata)."""
        arrays = {name: np.ascontiguousarray(getattr(self, name)) for name, _, _ in _ARRAY_SPECS}
        for name, ids in self.regions.items():
            arrays[f"region.{name}"] = np.ascontiguousarray(ids, dtype=np.int64)
        for name, ids in self.lmk_subsets.items():
            arrays[f"lmk_subset.{name}"] = np.ascontiguousarray(ids, dtype=np.int64)
        meta = {
            "format_version": FORMAT_VERSION,
            "joint_names": list(self.joint_names),
            "ctrl_names": list(self.ctrl_names),
            "part_names": list(self.part_names),
            "regions": list(self.regions),
            "lmk_subsets": list(self.lmk_subsets),
            "info": self.info,
        }
        return arrays, meta

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], meta: dict) -> "Template":
        """Build and validate a template from ``to_arrays()`` output; raises TemplateError."""
        if not isinstance(meta, dict):
            raise TemplateError("template metadata must be a JSON object")
        version = meta.get("format_version")
        if version != FORMAT_VERSION:
            raise TemplateError(f"template format_version is {version!r}; this build reads version {FORMAT_VERSION}")
        for key in ("joint_names", "ctrl_names", "part_names", "regions", "lmk_subsets"):
            if not isinstance(meta.get(key), list) or not all(isinstance(s, str) for s in meta[key]):
                raise TemplateError(f"template metadata {key!r} must be a list of strings")
        fields = {}
        if "part_uvs" not in arrays and "part_poly_verts" in arrays:  # older files; rigs without part UVs
            arrays = {**arrays, "part_uvs": np.zeros((len(arrays["part_poly_verts"]), 2), np.float32)}
        for name, dtype, _ in _ARRAY_SPECS:
            if name not in arrays:
                raise TemplateError(f"template is missing array {name!r}")
            arr = np.asarray(arrays[name])
            if arr.dtype != dtype and not (np.issubdtype(arr.dtype, np.integer) and np.issubdtype(dtype, np.integer)) \
                    and not (np.issubdtype(arr.dtype, np.floating) and np.issubdtype(dtype, np.floating)):
                raise TemplateError(f"template array {name!r} has dtype {arr.dtype}, expected {np.dtype(dtype)}")
            fields[name] = arr.astype(dtype, copy=False)
        regions = {}
        for name in meta["regions"]:
            key = f"region.{name}"
            if key not in arrays:
                raise TemplateError(f"template is missing array {key!r} (listed in metadata 'regions')")
            regions[name] = np.asarray(arrays[key]).astype(np.int64, copy=False)
        subsets = {}
        for name in meta["lmk_subsets"]:
            key = f"lmk_subset.{name}"
            if key not in arrays:
                raise TemplateError(f"template is missing array {key!r} (listed in metadata 'lmk_subsets')")
            subsets[name] = np.asarray(arrays[key]).astype(np.int64, copy=False)
        tpl = cls(
            joint_names=list(meta["joint_names"]),
            ctrl_names=list(meta["ctrl_names"]),
            part_names=list(meta["part_names"]),
            regions=regions,
            lmk_subsets=subsets,
            info=dict(meta.get("info") or {}),
            **fields,
        )
        validate(tpl)
        return tpl

    # -- files -------------------------------------------------------------
    def save(self, path: str | pathlib.Path) -> None:
        """Write the template as ``.npz`` (deterministic bytes: fixed order, fixed timestamps)."""
        path = pathlib.Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.to_bytes())

    def to_bytes(self) -> bytes:
        arrays, meta = self.to_arrays()
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            _write_member(zf, META_KEY, json.dumps(meta, sort_keys=True, indent=1).encode())
            for name in sorted(arrays):
                body = io.BytesIO()
                np.lib.format.write_array(body, arrays[name], allow_pickle=False)
                _write_member(zf, name + ".npy", body.getvalue())
        return buf.getvalue()


def _write_member(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    zf.writestr(info, data)


def load(path: str | pathlib.Path) -> Template:
    """Read and validate a template ``.npz``; raises TemplateError naming the problem.

    Only a regular file of at most MAX_TEMPLATE_FILE_BYTES is opened; the
    members' declared sizes must add up to at most MAX_TEMPLATE_BYTES before
    any is decompressed (zipfile never inflates a member past its declared
    size), so a zip bomb or a device is refused without being read.
    """
    from core.files import UnsafeFileError, open_regular

    path = pathlib.Path(path)
    try:
        fh = open_regular(path, "template", MAX_TEMPLATE_FILE_BYTES)
    except UnsafeFileError as exc:
        raise TemplateError(str(exc)) from None
    try:
        with fh, zipfile.ZipFile(fh) as zf:
            infos = zf.infolist()
            declared = sum(i.file_size for i in infos)
            if declared > MAX_TEMPLATE_BYTES:
                raise TemplateError(f"{path}: its members unpack to {declared} bytes, above the template limit "
                                    f"of {MAX_TEMPLATE_BYTES}")
            packed = sorted({i.compress_type for i in infos} - {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED})
            if packed:
                raise TemplateError(f"{path}: members are compressed with zip method {packed[0]}; a template "
                                    "stores them plain or deflated (numpy.savez / savez_compressed)")
            names = {i.filename for i in infos}
            if META_KEY not in names:
                raise TemplateError(f"{path}: template file has no {META_KEY}")
            try:
                meta = json.loads(_read_member(zf, META_KEY))
            except ValueError as exc:
                raise TemplateError(f"{path}: {META_KEY} is not valid JSON ({exc})") from None
            arrays = {}
            for member in sorted(names - {META_KEY}):
                if member.endswith(".npy"):
                    arrays[member[:-4]] = _read_npy(zf, member)
    except (OSError, EOFError, zlib.error, zipfile.BadZipFile, zipfile.LargeZipFile, ValueError) as exc:
        if isinstance(exc, TemplateError):
            raise
        raise TemplateError(f"{path}: not a template file ({str(exc)[:200]})") from None
    try:
        return Template.from_arrays(arrays, meta)
    except TemplateError as exc:
        raise TemplateError(f"{path}: {exc}") from None


def _read_member(zf: zipfile.ZipFile, name: str) -> bytearray:
    """A member's bytes, inflated a MiB at a time: never more than its declared size.

    (``ZipFile.read`` asks zlib for up to 2 GiB at once before cutting to the
    declared size, so a member that lies about its size would inflate in full.)
    """
    data = bytearray()
    with zf.open(name) as fh:
        while chunk := fh.read(1 << 20):
            data += chunk
    return data


def _read_npy(zf: zipfile.ZipFile, name: str) -> np.ndarray:
    """An ``.npy`` member as an array over its own bytes; the header's shape must match them."""
    data = _read_member(zf, name)
    stream = io.BytesIO(data)
    version = np.lib.format.read_magic(stream)
    header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}.get(version)
    if header is None:
        raise ValueError(f"{name}: .npy format {version} is not supported")
    shape, fortran, dtype = header(stream)
    if dtype.hasobject:
        raise ValueError(f"{name}: holds Python objects")
    count = math.prod(shape)
    if count * dtype.itemsize != len(data) - stream.tell():
        raise ValueError(f"{name}: {len(data) - stream.tell()} bytes of data for shape {shape} {dtype}")
    return np.frombuffer(data, dtype, count, stream.tell()).reshape(shape, order="F" if fortran else "C")


# name, dtype, shape (symbols resolved by validate; ints are fixed sizes)
_ARRAY_SPECS: tuple[tuple[str, type, tuple], ...] = (
    ("verts", np.float32, ("N", 3)),
    ("poly_verts", np.int64, ("C",)),
    ("poly_start", np.int64, ("F+1",)),
    ("uvs", np.float32, ("C", 2)),
    ("tris", np.int64, ("T", 3)),
    ("tri_poly", np.int64, ("T",)),
    ("skin_idx", np.int64, ("N", "K")),
    ("skin_w", np.float32, ("N", "K")),
    ("joint_parents", np.int64, ("J",)),
    ("joint_rest", np.float32, ("J", 4, 4)),
    ("joint_tails", np.float32, ("J", 3)),
    ("ctrl_basis", np.float32, ("R", 2, "N", 3)),
    ("ctrl_joint_basis", np.float32, ("R", 2, "J", 3)),
    ("ctrl_tail_basis", np.float32, ("R", 2, "J", 3)),
    ("ctrl_bounds", np.float32, ("R", 2)),
    ("ctrl_default", np.float32, ("R",)),
    ("ctrl_is_expression", np.bool_, ("R",)),
    ("part_verts", np.float32, ("P", 3)),
    ("part_poly_verts", np.int64, ("Cp",)),
    ("part_poly_start", np.int64, ("Fp+1",)),
    ("part_uvs", np.float32, ("Cp", 2)),
    ("part_vert_part", np.int64, ("P",)),
    ("part_joint", np.int64, ("P",)),
    ("part_ctrl_basis", np.float32, ("R", 2, "P", 3)),
    ("mirror", np.int64, ("N",)),
    ("source_vertex_id", np.int64, ("N",)),
    ("lmk_tri", np.int64, ("L",)),
    ("lmk_bary", np.float32, ("L", 3)),
    ("lmk_kind", np.int8, ("L",)),
)


def validate(t: Template) -> None:
    """Check shapes, finiteness, index ranges, weights and the joint tree; raise TemplateError."""
    sizes: dict[str, int] = {
        "N": t.verts.shape[0] if t.verts.ndim else -1,
        "C": t.poly_verts.shape[0] if t.poly_verts.ndim else -1,
        "F+1": t.poly_start.shape[0] if t.poly_start.ndim else -1,
        "T": t.tris.shape[0] if t.tris.ndim else -1,
        "K": t.skin_idx.shape[1] if t.skin_idx.ndim == 2 else -1,
        "J": len(t.joint_names),
        "R": len(t.ctrl_names),
        "P": t.part_verts.shape[0] if t.part_verts.ndim else -1,
        "Cp": t.part_poly_verts.shape[0] if t.part_poly_verts.ndim else -1,
        "Fp+1": t.part_poly_start.shape[0] if t.part_poly_start.ndim else -1,
        "L": t.lmk_tri.shape[0] if t.lmk_tri.ndim else -1,
    }
    for name, _, shape in _ARRAY_SPECS:
        arr = getattr(t, name)
        want = tuple(sizes[s] if isinstance(s, str) else s for s in shape)
        if arr.shape != want:
            sym = "(" + ", ".join(str(s) for s in shape) + ")"
            raise TemplateError(f"array {name!r} has shape {arr.shape}, expected {sym} = {want}")
        if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
            bad = np.argwhere(~np.isfinite(arr))[0]
            raise TemplateError(f"array {name!r} has a non-finite value (NaN or inf) at index {tuple(int(i) for i in bad)}")
    n, j, p = sizes["N"], sizes["J"], sizes["P"]
    if n == 0 or j == 0:
        raise TemplateError("template needs at least one vertex and one joint")
    if len(set(t.joint_names)) != j:
        raise TemplateError("joint names are not unique")
    if len(set(t.ctrl_names)) != sizes["R"]:
        raise TemplateError("controller names are not unique")

    def check_range(name: str, arr: np.ndarray, lo: int, hi: int) -> None:
        if arr.size and (arr.min() < lo or arr.max() >= hi):
            bad = int(arr[(arr < lo) | (arr >= hi)][0])
            raise TemplateError(f"array {name!r} has index {bad} out of range [{lo}, {hi})")

    check_range("poly_verts", t.poly_verts, 0, n)
    check_range("tris", t.tris, 0, n)
    check_range("tri_poly", t.tri_poly, 0, max(sizes["F+1"] - 1, 0))
    check_range("skin_idx", t.skin_idx, 0, j)
    check_range("joint_parents", t.joint_parents, -1, j)
    check_range("part_poly_verts", t.part_poly_verts, 0, p)
    check_range("part_vert_part", t.part_vert_part, 0, len(t.part_names))
    check_range("part_joint", t.part_joint, 0, j)
    check_range("mirror", t.mirror, -1, n)
    check_range("source_vertex_id", t.source_vertex_id, -1, np.iinfo(np.int64).max)
    check_range("lmk_tri", t.lmk_tri, 0, sizes["T"])
    check_range("lmk_kind", t.lmk_kind.astype(np.int64), 0, len(LMK_KINDS))
    for kind, ranges in (("region", t.regions), ("lmk_subset", t.lmk_subsets)):
        hi = n if kind == "region" else sizes["L"]
        for name, ids in ranges.items():
            if ids.ndim != 1:
                raise TemplateError(f"array '{kind}.{name}' must be 1-D, got shape {ids.shape}")
            check_range(f"{kind}.{name}", ids, 0, hi)
    for name, start, total in (("poly_start", t.poly_start, sizes["C"]), ("part_poly_start", t.part_poly_start, sizes["Cp"])):
        if start.size == 0 or start[0] != 0 or start[-1] != total or (np.diff(start) < 3).any():
            raise TemplateError(f"array {name!r} must start at 0, end at the corner count {total} and give polygons of >= 3 corners")
    if (t.skin_w < 0).any():
        raise TemplateError("array 'skin_w' has negative weights")
    sums = t.skin_w.astype(np.float64).sum(1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > WEIGHT_SUM_TOL)
    if bad.size:
        raise TemplateError(f"skinning weights of vertex {int(bad[0])} sum to {sums[bad[0]]:.6f}, not 1 ({bad.size} vertices affected)")
    if t.lmk_bary.size:
        bsum = t.lmk_bary.astype(np.float64).sum(1)
        bad = np.flatnonzero(np.abs(bsum - 1.0) > BARY_SUM_TOL)
        if bad.size:
            raise TemplateError(f"barycentrics of landmark {int(bad[0])} sum to {bsum[bad[0]]:.6f}, not 1")
    if (t.ctrl_bounds[:, 0] > t.ctrl_bounds[:, 1]).any():
        k = int(np.flatnonzero(t.ctrl_bounds[:, 0] > t.ctrl_bounds[:, 1])[0])
        raise TemplateError(f"controller {t.ctrl_names[k]!r} has lower bound above upper bound")
    out = (t.ctrl_default < t.ctrl_bounds[:, 0]) | (t.ctrl_default > t.ctrl_bounds[:, 1])
    if out.any():
        raise TemplateError(f"controller {t.ctrl_names[int(np.flatnonzero(out)[0])]!r} default lies outside its bounds")
    paired = t.mirror >= 0
    if not np.array_equal(t.mirror[t.mirror[paired]], np.flatnonzero(paired)):
        raise TemplateError("array 'mirror' is not an involution (mirror[mirror[i]] != i where mirror[i] >= 0)")
    rot = t.joint_rest[:, :3, :3].astype(np.float64)
    ortho_err = np.abs(rot @ rot.transpose(0, 2, 1) - np.eye(3)).max((1, 2))
    bad = np.flatnonzero((ortho_err > ROTATION_TOL) | (np.linalg.det(rot) < 0))
    if bad.size:
        raise TemplateError(f"rest frame of joint {t.joint_names[int(bad[0])]!r} is not a rotation (orthonormal, det +1)")
    if not np.array_equal(t.joint_rest[:, 3], np.tile(np.array([0, 0, 0, 1], np.float32), (j, 1))):
        raise TemplateError("array 'joint_rest' must have last rows [0, 0, 0, 1]")
    check_joint_tree(t.joint_parents, t.joint_names)


def bone_aliases(template) -> dict:
    """default joint name -> the rig's bone that stands for it (an imported head's
    ``default_joints``, from its import's confidence); empty for the default head."""
    armature = (template.info.get("confidence") or {}).get("armature") or {}
    return dict(armature.get("default_joints") or {})


def dense_skin_weights(template) -> np.ndarray:
    """(N, J) float64 skin weight of every vertex on every joint (zero where it has none), from the
    template's strongest-K ``skin_idx`` / ``skin_w``."""
    idx = np.asarray(template.skin_idx)
    dense = np.zeros((template.num_verts, len(template.joint_names)))
    np.add.at(dense, (np.repeat(np.arange(template.num_verts), idx.shape[1]), idx.reshape(-1)),
              np.asarray(template.skin_w, np.float64).reshape(-1))
    return dense


def check_joint_tree(parents: np.ndarray, names: list[str] | None = None) -> None:
    """Raise TemplateError on a cycle, no/several roots, or a parent listed after its child."""
    names = names or [str(i) for i in range(len(parents))]
    for start in range(len(parents)):
        seen, j = [], start
        while j != -1:
            if j in seen:
                cyc = seen[seen.index(j):] + [j]
                raise TemplateError("joint parents are cyclic: " + " -> ".join(names[i] for i in cyc))
            seen.append(j)
            j = int(parents[j])
    roots = np.flatnonzero(parents == -1)
    if roots.size != 1:
        raise TemplateError(f"joint tree must have exactly one root, found {roots.size}")
    later = np.flatnonzero(parents >= np.arange(len(parents)))
    if later.size:
        k = int(later[0])
        raise TemplateError(f"joint {names[k]!r} is listed before its parent {names[int(parents[k])]!r}; joints must be topologically sorted")
