"""Mouth and eyelid checks, from a front camera with the project's rasteriser.

- ``front_teeth_visible``: the share of the front teeth's vertices (incisors
  and canines, |x| < FRONT_TEETH_HALF_WIDTH, on the surface that faces the
  front: labial faces and incisal edges, the rest normal within
  FRONT_FACING_MAX_ANGLE of the camera) that are the nearest surface at their
  pixel, the head skin, lips and the other parts occluding. The tongue-side
  faces are left out: no front camera can see them, open mouth or not.
- ``teeth_outside_lips``: how many teeth vertices a front camera sees or that
  sit inside the lips' flesh (the first surface in front of them faces away:
  they poke through); at rest there must be none.
- ``rays_between_lips``: how many front-camera rays inside the lips' outer
  ring reach deeper than where the lips meet (by more than DEPTH_TOL): the
  mouth's inside, teeth or tongue seen through a gap.
- ``eyeball_visible``: the share of an eyeball's front vertices inside its lid
  opening that a front camera sees (a blink should leave none).
- ``lid_line_dihedral``: the largest dihedral angle (degrees) across the
  edges that touch an eye's lid margin (a wavy fold shows as a large one).

Both take a posed head (N, 3) and its parts (P, 3), as ``deform`` returns
them or as a GLB's meshes hold them, in the template's frame (x left, -y the
face's front, z up), on any device.
"""

from __future__ import annotations

import numpy as np
import torch

from core.geometry.mesh_layout import fan_triangulate, vertex_normals
from core.geometry.polygon import inside_polygon
from core.geometry.primitives import triangulate
from core.geometry.camera import Cameras
from core.render.rasterize import rasterize
from core.render.render import visible_points

from .mesh_layout import padded_part_polygons
from .model import Template
from .parts import outside_flesh

FRONT_TEETH_HALF_WIDTH = 0.012  # metres either side of the midline
CAMERA_DISTANCE = 1.0  # metres in front of the mouth
PIXEL = 1e-4  # metres per pixel at the mouth (a 0.1 mm grid)
IMAGE = 640  # pixels: a 64 mm window
DEPTH_TOL = 5e-4  # metres: a point this far behind the nearest surface is hidden
FRONT_FACING_MAX_ANGLE = 75.0  # degrees between a front tooth vertex's normal and the way to the camera
TEETH_PARTS = ("teeth.upper", "teeth.lower")


def front_teeth_ids(t: Template) -> np.ndarray:
    """Part-vertex ids of the front teeth's front-facing vertices (upper and lower arch), from the
    template's rest parts."""
    names = list(t.part_names)
    p, part = np.asarray(t.part_verts), np.asarray(t.part_vert_part)
    normals = part_vertex_normals(t)
    facing = -normals[:, 1] > np.cos(np.radians(FRONT_FACING_MAX_ANGLE))  # the camera looks along +y
    out = []
    for arch in TEETH_PARTS:
        ids = np.flatnonzero(part == names.index(arch))
        out.append(ids[(np.abs(p[ids, 0]) < FRONT_TEETH_HALF_WIDTH) & facing[ids]])
    return np.concatenate(out)


def part_vertex_normals(t: Template) -> np.ndarray:
    """(P, 3) unit area-weighted vertex normals of the rest parts (polygon winding: outward)."""
    tris, _ = fan_triangulate(padded_part_polygons(t))
    return vertex_normals(np.asarray(t.part_verts, np.float64), tris)


def front_scene(t: Template, verts: torch.Tensor, parts: torch.Tensor, region: str = "lips_outer_ring"
           ) -> tuple[torch.Tensor, torch.Tensor, Cameras]:
    """Head and parts as one mesh, and a narrow front camera centred on a region (the mouth)."""
    dev, dt = verts.device, verts.dtype
    part_tris = triangulate(torch.as_tensor(padded_part_polygons(t), device=dev))
    tris = torch.cat([torch.as_tensor(np.asarray(t.tris), device=dev, dtype=torch.long), part_tris + t.num_verts])
    allv = torch.cat([verts, parts])[None]
    centre = verts[torch.as_tensor(np.asarray(t.regions[region]), device=dev)].mean(0)
    f = CAMERA_DISTANCE / PIXEL
    K = torch.tensor([[f, 0, IMAGE / 2], [0, f, IMAGE / 2], [0, 0, 1]], device=dev, dtype=dt)[None]
    R = torch.tensor([[1, 0, 0], [0, 0, -1], [0, 1, 0]], device=dev, dtype=dt)  # camera z along +y, image down = -z
    tr = torch.tensor([0, 0, CAMERA_DISTANCE], device=dev, dtype=dt) - R @ centre
    return allv, tris, Cameras(K, R[None], tr[None], IMAGE, IMAGE)


def teeth_outside_lips(t: Template, verts: torch.Tensor, parts: torch.Tensor) -> int:
    """How many teeth vertices (both arches) a front camera would see or sit in the lips' or cheeks'
    flesh (``teeth_outside_lips_mask``)."""
    return int(teeth_outside_lips_mask(t, verts, parts)[1].sum())


def teeth_outside_lips_mask(t: Template, verts: torch.Tensor, parts: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Teeth vertices outside the mouth: along the ray to the camera (-y) the first head surface is
    missing or faces away from the tooth (the ray leaves flesh there). verts: (N, 3), parts: (P, 3)
    posed, template frame. Returns (part-vertex ids of the teeth (M,), outside (M,) bool)."""
    names, part = list(t.part_names), np.asarray(t.part_vert_part)
    ids = np.flatnonzero(np.isin(part, [names.index(n) for n in TEETH_PARTS]))
    v = verts.detach().double().cpu().numpy()
    p = parts.detach().double().cpu().numpy()[ids]
    return ids, outside_flesh(v, np.asarray(t.tris), p)


def front_teeth_visible(t: Template, verts: torch.Tensor, parts: torch.Tensor) -> float:
    """Share (0..1) of the front teeth's vertices a front camera sees."""
    allv, tris, cam = front_scene(t, verts, parts)
    with torch.no_grad():
        frags = rasterize(allv, tris, cam)
        ids = torch.as_tensor(front_teeth_ids(t), device=verts.device)
        seen = visible_points(parts[ids][None], cam, frags, rel_tol=DEPTH_TOL / CAMERA_DISTANCE)
    return float(seen.float().mean())


def rays_between_lips(t: Template, verts: torch.Tensor, parts: torch.Tensor) -> int:
    """Front-camera rays inside the lips' outer ring that pass deeper than where the lips meet."""
    allv, tris, cam = front_scene(t, verts, parts)
    with torch.no_grad():
        frags = rasterize(allv, tris, cam)
        ring = torch.as_tensor(np.asarray(t.regions["lips_outer_ring"]), device=verts.device)
        inner = torch.cat([torch.as_tensor(np.asarray(t.regions[k]), device=verts.device)
                           for k in ("mouth_upper_inner", "mouth_lower_inner")])
        uv, _ = cam.project(verts[ring][None])
        _, inner_depth = cam.project(verts[inner][None])
        inside = _inside_polygon(uv[0], cam.height, cam.width)
        deep = (frags.face_id[0] < 0) | (frags.depth[0] > inner_depth.max() + DEPTH_TOL)
    return int((inside & deep).sum())


def _inside_polygon(poly: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(H, W) bool: pixel centres inside the polygon ``poly`` (K, 2), ordered around its centre (even-odd rule)."""
    c = poly.mean(0)
    poly = poly[torch.argsort(torch.atan2(poly[:, 1] - c[1], poly[:, 0] - c[0]))].detach().cpu().numpy()
    out = np.zeros((height, width), bool)
    x0, y0 = np.clip(np.floor(poly.min(0)).astype(int), 0, [width, height])
    x1, y1 = np.clip(np.ceil(poly.max(0)).astype(int) + 1, 0, [width, height])
    if x1 > x0 and y1 > y0:  # only the pixels of the polygon's box are tested
        ys, xs = np.meshgrid(np.arange(y0, y1) + 0.5, np.arange(x0, x1) + 0.5, indexing="ij")
        out[y0:y1, x0:x1] = inside_polygon(np.stack([xs.ravel(), ys.ravel()], 1), poly).reshape(xs.shape)
    return torch.as_tensor(out, device=c.device)


def eyeball_front_ids(t: Template, side: str) -> np.ndarray:
    """Part-vertex ids of the eyeball's (side "l" or "r") front vertices inside its lid ring, as
    placed at rest on the template."""
    ring = np.asarray(t.regions[f"eye_{side}_ring"])
    names, p, part = list(t.part_names), np.asarray(t.part_verts), np.asarray(t.part_vert_part)
    ids = np.flatnonzero(part == names.index("eyeball.L" if side == "l" else "eyeball.R"))
    v = np.asarray(t.verts)
    lo, hi = v[ring].min(0), v[ring].max(0)
    return ids[(p[ids, 1] < p[ids, 1].mean()) & (p[ids, 0] > lo[0]) & (p[ids, 0] < hi[0])
               & (p[ids, 2] > lo[2]) & (p[ids, 2] < hi[2])]


def eyeball_visible(t: Template, verts: torch.Tensor, parts: torch.Tensor, side: str) -> float:
    """Share (0..1) of the eyeball's (side "l" or "r") front vertices inside the lid ring, as placed
    at rest, that a front camera sees."""
    ids = eyeball_front_ids(t, side)
    allv, tris, cam = front_scene(t, verts, parts, f"eye_{side}_ring")
    with torch.no_grad():
        frags = rasterize(allv, tris, cam)
        seen = visible_points(parts[torch.as_tensor(ids, device=verts.device)][None], cam, frags,
                              rel_tol=DEPTH_TOL / CAMERA_DISTANCE)
    return float(seen.float().mean())


def lid_line_dihedral(t: Template, verts: torch.Tensor, side: str) -> float:
    """Largest dihedral angle (degrees) between the two faces of any head edge touching the lid ring."""
    tris = torch.as_tensor(np.asarray(t.tris), device=verts.device, dtype=torch.long)
    e = torch.cat([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]]).sort(1).values
    face = torch.arange(len(tris), device=verts.device).repeat(3)
    key = e[:, 0] * t.num_verts + e[:, 1]
    order = torch.argsort(key)
    key, e, face = key[order], e[order], face[order]
    pair = torch.nonzero(key[1:] == key[:-1])[:, 0]  # interior edges: two faces, adjacent after sorting
    ring = torch.zeros(t.num_verts, dtype=torch.bool, device=verts.device)
    ring[torch.as_tensor(np.asarray(t.regions[f"eye_{side}_ring"]), device=verts.device)] = True
    pair = pair[ring[e[pair, 0]] | ring[e[pair, 1]]]
    a = verts[tris]
    n = torch.nn.functional.normalize(torch.cross(a[:, 1] - a[:, 0], a[:, 2] - a[:, 0], dim=1), dim=1)
    cos = (n[face[pair]] * n[face[pair + 1]]).sum(1).clamp(-1, 1)
    return float(torch.rad2deg(torch.arccos(cos)).max())
