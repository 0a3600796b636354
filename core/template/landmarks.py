"""The MediaPipe landmark embedding: from base.obj triangles to template triangles.

The embedding file (``core/data/landmarks_mpfb2.json``) names each landmark's
triangle by a base.obj vertex triple, from splitting each base.obj quad
(a, b, c, d) into (a, b, c) and (a, c, d). The template keeps base.obj's quad
vertex order and splits the same way, so each triple maps to exactly one
template triangle.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np

from .model import LMK_KINDS, TemplateError

EMBEDDING_PATH = pathlib.Path(__file__).resolve().parent.parent / "data" / "landmarks_mpfb2.json"
CONTOUR_NAMES = ("left_eye", "right_eye", "lips_outer", "lips_inner", "face_oval")


def read_embedding(path: str | pathlib.Path) -> dict:
    """Read and check an embedding file; raises TemplateError naming the problem."""
    path = pathlib.Path(path)
    try:
        emb = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise TemplateError(f"{path}: cannot read landmark embedding ({exc})") from None
    if emb.get("format_version") != 1:
        raise TemplateError(f"{path}: embedding format_version is {emb.get('format_version')!r}, expected 1")
    lmks = emb.get("landmarks")
    if not isinstance(lmks, list) or not lmks:
        raise TemplateError(f"{path}: embedding has no 'landmarks' list")
    ids = [lm.get("id") for lm in lmks]
    if sorted(ids) != list(range(len(lmks))):
        raise TemplateError(f"{path}: landmark ids must be 0..{len(lmks) - 1}, each once")
    for lm in lmks:
        if lm.get("kind") not in LMK_KINDS:
            raise TemplateError(f"{path}: landmark {lm['id']} has kind {lm.get('kind')!r}; expected one of {sorted(LMK_KINDS)}")
        if lm["kind"] != "unused" and (len(lm.get("tri", [])) != 3 or len(lm.get("bary", [])) != 3):
            raise TemplateError(f"{path}: landmark {lm['id']} needs 'tri' and 'bary' of 3 numbers each")
    return emb


def embed_landmarks(emb: dict, base_ids: np.ndarray, tris: np.ndarray):
    """Map an embedding onto template triangles.

    emb: a read_embedding() dict; base_ids: (N,) int64 base.obj id of each template vertex;
    tris: (T, 3) int64 template triangles. Returns (lmk_tri (L,) int64, lmk_bary (L,3) float32,
    lmk_kind (L,) int8, subsets {name: (n,) int64}); unused landmarks get triangle 0 and kind 0.
    Raises TemplateError if a used landmark's triangle is not a template triangle.
    """
    lmks = sorted(emb["landmarks"], key=lambda lm: lm["id"])
    n_l = len(lmks)
    kind = np.array([LMK_KINDS[lm["kind"]] for lm in lmks], dtype=np.int8)
    tri_base = np.array([lm.get("tri", [0, 0, 0]) if lm["kind"] != "unused" else [0, 0, 0] for lm in lmks], dtype=np.int64)
    bary = np.array([lm.get("bary", [1, 0, 0]) if lm["kind"] != "unused" else [1, 0, 0] for lm in lmks], dtype=np.float64)
    # template triangles as base.obj triples, looked up by exact (ordered) triple
    tri_as_base = base_ids[tris]
    span = int(max(base_ids.max(), tri_base.max())) + 1
    key = lambda t: (t[:, 0] * span + t[:, 1]) * span + t[:, 2]  # noqa: E731
    tkeys = key(tri_as_base)
    order = np.argsort(tkeys)
    lkeys = key(tri_base)
    pos = np.clip(np.searchsorted(tkeys[order], lkeys), 0, len(order) - 1)
    found = tkeys[order][pos] == lkeys
    used = kind != LMK_KINDS["unused"]
    missing = np.flatnonzero(used & ~found)
    if missing.size:
        i = int(missing[0])
        raise TemplateError(f"landmark {i}: base.obj triangle {tri_base[i].tolist()} is not a template triangle "
                            f"({missing.size} landmarks affected; the embedding must split quads (a,b,c),(a,c,d))")
    lmk_tri = np.where(used, order[pos], 0).astype(np.int64)
    bary = np.where(used[:, None], bary / bary.sum(1, keepdims=True), [1.0, 0.0, 0.0]).astype(np.float32)
    subsets = {}
    raw = emb.get("subsets", {})
    if "corners" in raw:
        subsets["corners"] = np.asarray(raw["corners"], dtype=np.int64)
    for name in CONTOUR_NAMES:
        if name in raw.get("contours", {}):
            subsets[name] = np.asarray(raw["contours"][name], dtype=np.int64)
    for name, ids in subsets.items():
        if ids.size and (ids.min() < 0 or ids.max() >= n_l):
            raise TemplateError(f"landmark subset {name!r} has an id outside 0..{n_l - 1}")
    return lmk_tri, bary, kind, subsets
