"""The rig template as it travels between the add-on and the core.

Both directions carry the same content: core → add-on for the default head
(the add-on builds the Blender mesh and armature from it), add-on → core for an
artist's own rig. It is the core template's flat-array form
(``Template.to_arrays()`` / ``from_arrays()`` in ``core.template.model``):
arrays + JSON-able metadata, metres in Blender's world frame. The receiver
checks everything it needs to build a mesh and armature safely (dtypes,
shapes, finiteness, index ranges, weight sums, polygon offsets, joint order);
the core's ``from_arrays`` adds its own deeper checks (rotations, mirror map).

N skin vertices, C corners, F polygons, T triangles, K influences, J joints,
R controllers, P part vertices, Cp/Fp part corners/polygons, L landmarks:

  verts (N,3) float32          poly_verts (C,) int64       poly_start (F+1,) int64
  uvs (C,2) float32            tris (T,3) int64            tri_poly (T,) int64
  skin_idx (N,K) int64         skin_w (N,K) float32, rows sum to 1
  joint_parents (J,) int64, -1 for the root, parents before children
  joint_rest (J,4,4) float32 rest world frames     joint_tails (J,3) float32
  ctrl_basis (R,2,N,3) float32 vertex deltas at controller +1 ([:,0]) and -1 ([:,1])
  ctrl_joint_basis (R,2,J,3) float32   ctrl_tail_basis (R,2,J,3) float32   (joint head/tail offsets)
  ctrl_bounds (R,2) float32    ctrl_default (R,) float32   ctrl_is_expression (R,) bool
  part_verts (P,3) float32     part_poly_verts (Cp,) int64  part_poly_start (Fp+1,) int64
  part_vert_part (P,) int64    part_joint (P,) int64        part_ctrl_basis (R,2,P,3) float32
  part_uvs (Cp,2) float32      optional: UV per part corner (a rig without parts leaves it out)
  mirror (N,) int64            lmk_tri (L,) int64           lmk_bary (L,3) float32   lmk_kind (L,) int8
  source_vertex_id (N,) int64  vertex id in the source mesh, -1 if none
  region.<name> (n,) int64 vertex ids      lmk_subset.<name> (n,) int64 landmark ids

meta: {"format_version", "joint_names" (J), "ctrl_names" (R), "part_names",
"regions", "lmk_subsets" (the names of the region./lmk_subset. arrays), "info"}.
Arrays not named here pass through unchecked (a newer core may add some).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import numpy as np

from .protocol import Message, ProtocolError
from .schema import TEMPLATE, ArraySpec, SchemaError, check_arrays

_I64, _F32 = ("int64",), ("float32",)

# The 52 ARKit blendshape names (Live Link Face, ARKit, retargeting tools): the
# default head's expression controllers carry exactly these, and so do the
# shape keys of every result; an artist's shape keys with these names are expressions.
ARKIT_EXPRESSIONS = tuple(
    [f"eye{k}{s}" for k in ("Blink", "LookDown", "LookIn", "LookOut", "LookUp", "Squint", "Wide")
     for s in ("Left", "Right")]
    + ["jawForward", "jawLeft", "jawRight", "jawOpen", "mouthClose", "mouthFunnel", "mouthPucker",
       "mouthLeft", "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
       "browInnerUp", "cheekPuff", "tongueOut"]
    + [f"{k}{s}" for k in ("mouthSmile", "mouthFrown", "mouthDimple", "mouthStretch", "mouthPress",
                           "mouthLowerDown", "mouthUpperUp", "browDown", "browOuterUp", "cheekSquint",
                           "noseSneer") for s in ("Left", "Right")]
)
# A shape key goes on a mesh only where it moves some vertex by more than this (metres):
# the tongue's key lives on the eyes-and-mouth mesh, not on the head it leaves still.
SHAPE_KEY_MIN_MOVE = 1e-6

ARRAYS: dict[str, ArraySpec] = {
    "verts": ArraySpec(_F32, ("N", 3)),
    "poly_verts": ArraySpec(_I64, ("C",)),
    "poly_start": ArraySpec(_I64, ("F+1",)),
    "uvs": ArraySpec(_F32, ("C", 2)),
    "tris": ArraySpec(_I64, ("T", 3)),
    "tri_poly": ArraySpec(_I64, ("T",)),
    "skin_idx": ArraySpec(_I64, ("N", "K")),
    "skin_w": ArraySpec(_F32, ("N", "K")),
    "joint_parents": ArraySpec(_I64, ("J",)),
    "joint_rest": ArraySpec(_F32, ("J", 4, 4)),
    "joint_tails": ArraySpec(_F32, ("J", 3)),
    "ctrl_basis": ArraySpec(_F32, ("R", 2, "N", 3)),
    "ctrl_joint_basis": ArraySpec(_F32, ("R", 2, "J", 3)),
    "ctrl_tail_basis": ArraySpec(_F32, ("R", 2, "J", 3)),
    "ctrl_bounds": ArraySpec(_F32, ("R", 2)),
    "ctrl_default": ArraySpec(_F32, ("R",)),
    "ctrl_is_expression": ArraySpec(("bool",), ("R",)),
    "part_verts": ArraySpec(_F32, ("P", 3)),
    "part_poly_verts": ArraySpec(_I64, ("Cp",)),
    "part_poly_start": ArraySpec(_I64, ("Fp+1",)),
    "part_vert_part": ArraySpec(_I64, ("P",)),
    "part_joint": ArraySpec(_I64, ("P",)),
    "part_ctrl_basis": ArraySpec(_F32, ("R", 2, "P", 3)),
    "mirror": ArraySpec(_I64, ("N",)),
    "lmk_tri": ArraySpec(_I64, ("L",)),
    "lmk_bary": ArraySpec(_F32, ("L", 3)),
    "lmk_kind": ArraySpec(("int8",), ("L",)),
    "source_vertex_id": ArraySpec(_I64, ("N",)),
}
# Named index sets: array prefix -> (meta key listing the names, size symbol of the ids' range)
NAMED_SETS = {"region.": ("regions", "N"), "lmk_subset.": ("lmk_subsets", "L")}
_SET_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
FORMAT_VERSION = 1
SUM_TOLERANCE = 1e-4
NUM_LMK_KINDS = 3


def _fail(problem: str):
    raise SchemaError(f"template: {problem}")


def _in_range(name: str, arr: np.ndarray, lo: int, hi: int) -> None:
    if arr.size and (arr.min() < lo or arr.max() >= hi):
        bad = int(arr[(arr < lo) | (arr >= hi)].reshape(-1)[0])
        _fail(f"{name} has index {bad} outside [{lo}, {hi})")


def _names(meta: dict, key: str, count: int | None = None) -> list:
    names = meta.get(key)
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        _fail(f"meta[{key!r}] must be a list of non-empty names")
    if count is not None and len(names) != count:
        _fail(f"meta[{key!r}] lists {len(names)} names but the arrays have {count}")
    if len(set(names)) != len(names):
        _fail(f"meta[{key!r}] has duplicate names")
    return names


def _offsets(name: str, start: np.ndarray, total: int) -> None:
    if start.size == 0 or start[0] != 0 or start[-1] != total or (np.diff(start) < 3).any():
        _fail(f"{name} must start at 0, end at the corner count {total} and give polygons of >= 3 corners")


@dataclass
class TemplateMessage:
    """A rig template in wire form: ``arrays`` and ``meta`` as in the module docstring."""

    arrays: dict[str, np.ndarray]
    meta: dict

    @property
    def num_verts(self) -> int:
        return int(self.arrays["verts"].shape[0])

    def validate(self) -> "TemplateMessage":
        """Check everything the module docstring promises; raises SchemaError naming the problem."""
        a, meta = self.arrays, self.meta
        if not isinstance(meta, dict):
            _fail("meta must be a JSON object")
        if meta.get("format_version") != FORMAT_VERSION:
            _fail(f"format_version is {meta.get('format_version')!r:.20}; this bridge reads {FORMAT_VERSION}")
        sizes = check_arrays("template", a, ARRAYS)
        n, j, r, p, L = (sizes[k] for k in ("N", "J", "R", "P", "L"))
        if n == 0 or j == 0:
            _fail("needs at least one vertex and one joint")
        for name, spec in ARRAYS.items():
            if spec.dtypes == _F32 and not np.isfinite(a[name]).all():
                _fail(f"{name} contains NaN or infinity")
        _offsets("poly_start", a["poly_start"], sizes["C"])
        _offsets("part_poly_start", a["part_poly_start"], sizes["Cp"])
        _in_range("poly_verts", a["poly_verts"], 0, n)
        _in_range("tris", a["tris"], 0, n)
        _in_range("tri_poly", a["tri_poly"], 0, sizes["F+1"] - 1)
        _in_range("skin_idx", a["skin_idx"], 0, j)
        if (a["joint_parents"] < -1).any() or (a["joint_parents"] >= np.arange(j)).any():
            _fail("joint_parents must be -1 or the index of an earlier joint")
        if (a["joint_parents"] == -1).sum() != 1:
            _fail("joint_parents must have exactly one root (-1)")
        part_names = _names(meta, "part_names")
        _in_range("part_poly_verts", a["part_poly_verts"], 0, p)
        uvs = a.get("part_uvs")
        if uvs is not None and (uvs.dtype != np.float32 or uvs.shape != (sizes["Cp"], 2) or not np.isfinite(uvs).all()):
            _fail(f"part_uvs must be finite ({sizes['Cp']}, 2) float32, got {uvs.dtype}{uvs.shape}")
        _in_range("part_vert_part", a["part_vert_part"], 0, len(part_names))
        _in_range("part_joint", a["part_joint"], 0, j)
        _in_range("mirror", a["mirror"], -1, n)  # -1: no mirror partner (imported heads)
        if a["source_vertex_id"].size and a["source_vertex_id"].min() < -1:
            _fail("source_vertex_id must be >= -1")
        _in_range("lmk_tri", a["lmk_tri"], 0, sizes["T"])
        _in_range("lmk_kind", a["lmk_kind"], 0, NUM_LMK_KINDS)
        w = a["skin_w"]
        if (w < 0).any():
            _fail("skin_w has negative weights")
        sums = w.astype(np.float64).sum(axis=1)
        bad = np.flatnonzero(np.abs(sums - 1.0) > SUM_TOLERANCE)
        if bad.size:
            _fail(f"skinning weights of vertex {int(bad[0])} sum to {sums[bad[0]]:.6f}, not 1")
        bsum = a["lmk_bary"].astype(np.float64).sum(axis=1)
        if (np.abs(bsum - 1.0) > SUM_TOLERANCE).any():
            _fail("lmk_bary rows must sum to 1")
        bounds, default = a["ctrl_bounds"], a["ctrl_default"]
        if ((bounds[:, 0] > default) | (default > bounds[:, 1])).any():
            _fail("controllers need lower bound <= default <= upper bound")
        _names(meta, "joint_names", j)
        _names(meta, "ctrl_names", r)
        for prefix, (key, symbol) in NAMED_SETS.items():
            for name in _names(meta, key):
                if not _SET_NAME.match(name):
                    _fail(f"bad {key} name {name!r:.80}")
                arr_name = prefix + name
                arr = a.get(arr_name)
                if arr is None:
                    _fail(f"missing array {arr_name!r} (listed in meta[{key!r}])")
                if arr.ndim != 1 or arr.dtype != np.int64:
                    _fail(f"{arr_name} must be (n,) int64, got {arr.dtype}{arr.shape}")
                _in_range(arr_name, arr, 0, n if symbol == "N" else L)
        if not isinstance(meta.get("info", {}), dict):
            _fail("meta['info'] must be an object")
        return self

    def to_message(self, job: str | None = None) -> Message:
        return Message(TEMPLATE, job=job, fields={"meta": self.meta}, buffers=dict(self.arrays))

    @classmethod
    def from_message(cls, msg: Message) -> "TemplateMessage":
        """The validated template carried inline by a ``template`` message."""
        meta = msg.fields.get("meta")
        if not isinstance(meta, dict):
            _fail("inline templates need fields.meta (an object)")
        return cls(dict(msg.buffers), meta).validate()

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], meta: dict) -> "TemplateMessage":
        """Wrap and validate ``Template.to_arrays()`` output (arrays converted to contiguous little-endian)."""
        try:
            conv = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
            # JSON round trip: meta must survive the wire unchanged
            meta = json.loads(json.dumps(meta))
        except (TypeError, ValueError) as exc:
            raise ProtocolError(f"template: meta is not JSON-able: {exc}") from None
        return cls(conv, meta).validate()
