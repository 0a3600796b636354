"""The mouth on the head mesh: the inner lip lines and the line where the lips meet (the template
builder seals the lips and places the teeth by them), and the teeth seated behind a fitted head's
lips."""

from __future__ import annotations

import numpy as np

from .parts import outside_flesh

# Closing the lips at rest: the upper and lower lip overlap this much (mm) seen from the front,
# the move fading out over these rings of vertices from the mouth's inner line.
LIP_SEAL_RINGS = (3, 7)


def lip_sides(quads: np.ndarray, regions: dict, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Ring distance (edges) of every vertex from the upper and from the lower inner lip line
    (corners excluded), each (n,) int64, large where far."""
    edges = np.concatenate([quads[:, [0, 1]], quads[:, [1, 2]], quads[:, [2, 3]], quads[:, [3, 0]]])
    corners = set(regions["mouth_corners"].tolist())
    out = []
    for key in ("mouth_upper_inner", "mouth_lower_inner"):
        dist = np.full(n, 1 << 20, np.int64)
        seeds = np.array([v for v in regions[key] if v not in corners])
        dist[seeds] = 0
        for k in range(1, LIP_SEAL_RINGS[1] + 1):
            a, b = edges[:, 0], edges[:, 1]
            reach = np.concatenate([b[dist[a] == k - 1], a[dist[b] == k - 1]])
            reach = reach[dist[reach] > k]
            dist[reach] = k
        out.append(dist)
    return out[0], out[1]


def lip_line(verts: np.ndarray, quads: np.ndarray, regions: dict) -> float:
    """z (metres) where the lips meet at the midline: the upper lip's lowest point there (its
    vertices within LIP_SEAL_RINGS[0] rings of the inner lip line, 2 mm either side of x = 0)."""
    du, dl = lip_sides(quads, regions, len(verts))
    ids = np.flatnonzero((du < dl) & (du <= LIP_SEAL_RINGS[0]) & (np.abs(verts[:, 0]) < 2e-3))
    return float(verts[ids, 2].min())


# The parts that sit in the mouth and move together when the teeth are seated, and the teeth.
MOUTH_PARTS = ("teeth.upper", "teeth.lower", "gums.upper", "gums.lower", "tongue")
TEETH_PARTS = ("teeth.upper", "teeth.lower")
# Seating tries moves straight back in these steps, up to this far (mm).
SEAT_STEP_MM = 0.5
SEAT_MAX_MM = 4.0


def teeth_through_lips(template, verts: np.ndarray, parts: np.ndarray) -> int:
    """How many teeth vertices a front camera sees or that sit in the lips' or cheeks' flesh.
    verts: (N, 3) head, parts: (P, 3), template frame (-y the face's front)."""
    names, part = list(template.part_names), np.asarray(template.part_vert_part)
    teeth = np.isin(part, [names.index(n) for n in TEETH_PARTS if n in names])
    points = np.asarray(parts, np.float64)[teeth]
    verts = np.asarray(verts, np.float64)
    tris = np.asarray(template.tris)
    # A ray along y meets only triangles whose x-z box overlaps the teeth's: the rest cannot change it.
    lo, hi = points[:, [0, 2]].min(0), points[:, [0, 2]].max(0)
    corners = verts[tris][..., [0, 2]]
    near = ((corners.max(1) >= lo) & (corners.min(1) <= hi)).all(1)
    return int(outside_flesh(verts, tris[near], points).sum())


def seat_teeth(template, verts: np.ndarray, parts: np.ndarray) -> tuple[np.ndarray, float]:
    """Move the mouth's parts straight back until no more teeth poke through the lips than on the
    template at rest. verts: (N, 3) head, parts: (P, 3), both at rest in the template's frame.
    Returns the new (P, 3) parts and the move in mm (0 where nothing pokes through).

    The fit reshapes the lips with the shape controllers and per-vertex offsets; the teeth are
    rigid and follow the controllers only, so a fitted mouth can close over them: 48 teeth
    vertices in the lips of one fitted head against the template's 4. Moves are SEAT_STEP_MM steps
    up to SEAT_MAX_MM, bisected: the shortest that reaches the template's count wins, else the
    tried one with the fewest."""
    names = list(template.part_names)
    mouth = np.isin(np.asarray(template.part_vert_part), [names.index(n) for n in MOUTH_PARTS if n in names])
    allowed = teeth_through_lips(template, np.asarray(template.verts), np.asarray(template.part_verts))
    parts = np.asarray(parts)
    tried: dict[int, tuple[int, np.ndarray]] = {}

    def attempt(step: int) -> bool:
        moved = parts.copy()
        moved[mouth, 1] += step * SEAT_STEP_MM * 1e-3
        tried[step] = (teeth_through_lips(template, verts, moved), moved)
        return tried[step][0] <= allowed

    # Fewer teeth poke through the further back they sit: bisect for the shortest move that is enough.
    lo, hi = 0, int(round(SEAT_MAX_MM / SEAT_STEP_MM))
    if not attempt(lo) and attempt(hi):
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if attempt(mid) else (mid, hi)
    enough = [k for k, (c, _) in tried.items() if c <= allowed]
    step = min(enough) if enough else min(tried, key=lambda k: (tried[k][0], k))
    return tried[step][1], step * SEAT_STEP_MM
