"""The default head's eyes and mouth parts, modelled here (MakeHuman's helpers are low-poly placeholders).

- Eyeballs: a UV sphere on each eye helper's sphere (centre = the eye bone's
  head), pole looking down the gaze (−Y). Its UVs are an azimuthal map about
  the front pole: the iris (out to IRIS_ANGLE) fills the disc of radius
  UV_IRIS_RADIUS around (0.5, 0.5), the rest of the ball the ring out to 0.5.
  A cornea cap over the iris bulges up to CORNEA_BULGE and carries the same
  UV map, so a texture-only view shows the iris through it.
- Teeth: one strip of crowns per arch along the helper's arch (its incisal
  row), tooth by tooth (widths and crown heights from dental charts, scaled to
  the arch), with grooves between teeth and support rows near the incisal
  edge; gums as a second strip over the crowns' necks.

All lengths are metres in the template's world frame; a helper (MakeHuman's
vertices, metres) guides size and place. Each function returns vertices, quad
(or triangle, padded with -1) polygons and per-corner UVs.
"""

from __future__ import annotations

import numpy as np

# -- eyes ------------------------------------------------------------------------
EYE_SEGMENTS = 32  # around the gaze axis
# Ring angles from the front pole (degrees): pupil, iris, limbus, then the sclera to the back.
EYE_RINGS = (3.0, 7.0, 11.0, 16.0, 21.0, 24.0, 27.0, 35.0, 50.0, 70.0, 90.0, 115.0, 140.0, 165.0)
IRIS_ANGLE = 24.0  # degrees: the limbus (an iris ~12 mm across on a 15 mm ball)
UV_IRIS_RADIUS = 0.25
CORNEA_RINGS = (3.0, 7.0, 11.0, 16.0, 21.0, 24.0, 27.0)  # the cap ends just past the limbus
CORNEA_BULGE = 6e-4  # metres in front of the ball at the apex (the lids close over a plain sphere)
CORNEA_LIFT = 1e-4  # metres above the ball at the cap's rim


def eye_uv(theta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Azimuthal UVs about the front pole. theta: polar angle (degrees, 0 = pupil centre); phi: angle
    about the gaze (radians, 0 = +X, pi/2 = +Z). Returns (..., 2) float: the iris fills radius
    UV_IRIS_RADIUS, the ball out to 180 degrees the ring to 0.5."""
    theta = np.asarray(theta, np.float64)
    rho = np.where(theta <= IRIS_ANGLE, theta / IRIS_ANGLE * UV_IRIS_RADIUS,
                   UV_IRIS_RADIUS + (theta - IRIS_ANGLE) / (180.0 - IRIS_ANGLE) * (0.5 - UV_IRIS_RADIUS))
    return np.stack([0.5 + rho * np.cos(phi), 0.5 + rho * np.sin(phi)], -1)


def _gaze_frame(gaze: np.ndarray) -> np.ndarray:
    """(3, 3) rows: gaze, then the horizontal and vertical axes across it (X and Z for a gaze along −Y)."""
    g = gaze / np.linalg.norm(gaze)
    side = np.cross(g, [0.0, 0.0, 1.0])
    side = -side / np.linalg.norm(side)  # +X for g = −Y
    up = np.cross(side, g)
    up = -up / np.linalg.norm(up) if up[2] < 0 else up / np.linalg.norm(up)
    return np.stack([g, side, up])


def _rings_mesh(rings: int, segments: int, pole_first: bool, pole_last: bool):
    """Quads between consecutive rings (vertex id = 1 + ring * segments + k, pole 0 first) and
    triangle fans to the poles, padded to 4 with -1. Returns (F, 4) int64."""
    base = 1 if pole_first else 0
    polys = []
    k = np.arange(segments)
    if pole_first:
        polys.append(np.stack([np.zeros(segments, np.int64), base + (k + 1) % segments, base + k,
                               np.full(segments, -1)], 1))
    for r in range(rings - 1):
        a, b = base + r * segments, base + (r + 1) * segments
        polys.append(np.stack([a + k, a + (k + 1) % segments, b + (k + 1) % segments, b + k], 1))
    if pole_last:
        last = base + (rings - 1) * segments
        pole = base + rings * segments
        polys.append(np.stack([last + k, last + (k + 1) % segments, np.full(segments, pole), np.full(segments, -1)], 1))
    return np.concatenate(polys).astype(np.int64)


def eyeball(centre: np.ndarray, radius: float, gaze: np.ndarray):
    """The sclera and iris ball. Returns verts (V, 3), polys (F, 4) -1 padded, corner UVs (F, 4, 2)."""
    frame = _gaze_frame(gaze)
    phi = 2 * np.pi * np.arange(EYE_SEGMENTS) / EYE_SEGMENTS
    theta = np.radians(np.array(EYE_RINGS))
    ring_dirs = (np.cos(theta)[:, None, None] * frame[0]
                 + np.sin(theta)[:, None, None] * (np.cos(phi)[None, :, None] * frame[1]
                                                   + np.sin(phi)[None, :, None] * frame[2]))
    dirs = np.concatenate([frame[0][None], ring_dirs.reshape(-1, 3), -frame[0][None]])
    verts = centre + radius * dirs
    polys = _rings_mesh(len(EYE_RINGS), EYE_SEGMENTS, True, True)
    th = np.concatenate([[0.0], np.repeat(EYE_RINGS, EYE_SEGMENTS), [180.0]])
    ph = np.concatenate([[0.0], np.tile(phi, len(EYE_RINGS)), [0.0]])
    uv = eye_uv(th, ph)
    corner = uv[np.maximum(polys, 0)]
    _fan_pole_uvs(polys, corner, th, ph, pole_theta={0: 0.0, len(verts) - 1: 180.0})
    corner[polys < 0] = 0.0
    return verts, polys, corner.astype(np.float32)


def _fan_pole_uvs(polys, corner, th, ph, pole_theta: dict) -> None:
    """A pole has one UV per triangle: the map at the pole's angle, in the direction of the
    triangle's other two corners (in place). The front pole maps to the centre either way."""
    for pole, angle in pole_theta.items():
        rows, cols = np.nonzero(polys == pole)
        for r, c in zip(rows, cols):
            others = [v for v in polys[r] if v >= 0 and v != pole]
            mid = np.angle(np.exp(1j * ph[others]).sum())
            corner[r, c] = eye_uv(angle, mid)


def cornea(centre: np.ndarray, radius: float, gaze: np.ndarray):
    """The clear cap over the iris (front pole + CORNEA_RINGS), same UV map as ``eyeball``."""
    frame = _gaze_frame(gaze)
    phi = 2 * np.pi * np.arange(EYE_SEGMENTS) / EYE_SEGMENTS
    rings = np.array(CORNEA_RINGS)
    t = rings / rings[-1]
    lift = CORNEA_LIFT + (CORNEA_BULGE - CORNEA_LIFT) * np.cos(0.5 * np.pi * t) ** 2
    theta = np.radians(rings)
    dirs = (np.cos(theta)[:, None, None] * frame[0]
            + np.sin(theta)[:, None, None] * (np.cos(phi)[None, :, None] * frame[1]
                                              + np.sin(phi)[None, :, None] * frame[2]))
    verts = np.concatenate([centre + (radius + CORNEA_BULGE) * frame[0][None],
                            (centre + (radius + lift)[:, None, None] * dirs).reshape(-1, 3)])
    polys = _rings_mesh(len(rings), EYE_SEGMENTS, True, False)
    th = np.concatenate([[0.0], np.repeat(rings, EYE_SEGMENTS)])
    ph = np.concatenate([[0.0], np.tile(phi, len(rings))])
    corner = eye_uv(th, ph)[np.maximum(polys, 0)]
    _fan_pole_uvs(polys, corner, th, ph, pole_theta={0: 0.0})
    corner[polys < 0] = 0.0
    return verts, polys, corner.astype(np.float32)


# -- teeth -------------------------------------------------------------------------
# Per tooth from the midline back (central incisor .. second molar), millimetres:
# crown width along the arch, labial crown height, labio-lingual thickness.
UPPER_TEETH = {"width": (8.5, 6.5, 7.5, 7.0, 6.5, 10.0, 9.0),
               "height": (10.5, 9.0, 10.0, 8.5, 7.5, 7.0, 6.5),
               "thickness": (7.0, 6.0, 8.0, 9.0, 9.0, 11.0, 10.0)}
LOWER_TEETH = {"width": (5.0, 5.5, 7.0, 7.0, 7.0, 11.0, 10.5),
               "height": (9.0, 9.5, 9.5, 8.0, 7.5, 7.0, 6.5),
               "thickness": (6.0, 6.0, 7.5, 8.0, 8.0, 10.5, 10.0)}
# Columns inside each tooth (fractions of its width); the boundaries are shared with the neighbours.
TOOTH_COLUMNS = (0.0, 0.2, 0.5, 0.8)
# Crown profile rows, labial gum line round the incisal edge to the lingual gum line: (height
# fraction from the edge, outward offset in mm or, as a string, a fraction of the thickness).
# The rows crowd at the incisal edge, as support loops keep an edge crisp under subdivision.
CROWN_ROWS = ((1.0, -0.9), (0.6, 0.2), (0.32, 0.35), (0.16, 0.25), (0.06, 0.1), (0.0, -0.25),
              (0.0, "-edge"), (0.45, "-0.8"), (1.0, "-1.0"))
EDGE_THICKNESS = (1.0, 1.0, 1.6, 0.55, 0.55, 0.6, 0.6)  # incisal edge / occlusal table: mm or fraction
EMBRASURE_RISE = 0.9  # mm: the edge between two teeth sits this much nearer the gum
EMBRASURE_SINK = 0.5  # mm: and the labial face this much further in
# Gum strip rows over the crowns' necks: (height from the gum line in mm, outward offset: mm or
# fraction of the thickness as a string); the margin scallops toward the edge between the teeth.
GUM_ROWS = ((-0.6, 0.35), (2.0, 1.0), (5.0, 0.6), (7.0, "-0.5"), (5.0, "-1.1"), (-0.6, "-1.05"))
PAPILLA_DROP = 2.2  # mm: the gum margin between two teeth reaches this much nearer the edge


def resample_arch(guide: np.ndarray, length_per_side: float | None = None):
    """A symmetric arch from a half guide polyline (K, 3) in mm, from the midline (x = 0) back.
    Returns a function s (mm along the arch, signed: + to +X) -> (point (.., 3), outward unit
    normal in the horizontal plane (.., 3)), and the arch's half length in mm."""
    g = guide
    seg = np.linalg.norm(np.diff(g, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    half = s[-1] if length_per_side is None else length_per_side

    def at(sv):
        sv = np.asarray(sv, np.float64)
        a = np.abs(sv)
        p = np.stack([np.interp(a, s, g[:, i]) for i in range(3)], -1)
        p[..., 0] *= np.sign(sv) + (sv == 0)
        eps = 0.25
        a1, a2 = np.maximum(a - eps, 0), a + eps
        t = np.stack([np.interp(a2, s, g[:, i]) - np.interp(a1, s, g[:, i]) for i in range(2)], -1)
        n = np.stack([t[..., 1], -t[..., 0]], -1)  # right of the way back: outward (−Y at the front)
        n = n / np.linalg.norm(n, axis=-1, keepdims=True)
        n[..., 0] *= np.where(sv < 0, -1.0, 1.0)
        return p, np.concatenate([n, np.zeros(n.shape[:-1] + (1,))], -1)

    return at, half


def _tooth_table(spec: dict, half: float):
    """Per column along one side: (s in mm, tooth index, position inside the tooth 0..1), widths scaled
    to fill ``half``; plus the scale used."""
    w = np.array(spec["width"], np.float64)
    scale = half / w.sum()
    starts = np.concatenate([[0.0], np.cumsum(w * scale)])
    cols = [(starts[i] + f * w[i] * scale, i, f) for i in range(len(w)) for f in TOOTH_COLUMNS]
    cols.append((starts[-1], len(w) - 1, 1.0))
    return cols, scale


def _offset(value, thickness: float, edge: float) -> float:
    if isinstance(value, str):
        if value == "-edge":
            return -edge
        return float(value) * thickness
    return float(value)


def teeth_arch(guide: np.ndarray, spec: dict, up: float, shift: np.ndarray):
    """One arch of crowns and its gums.

    guide: (K, 3) metres, the labial incisal line from the midline back (one side); ``up``: +1 for
    the upper arch (gum above the edge), -1 for the lower; shift: (3,) metres added to the guide.
    Returns (crown verts, crown polys, crown UVs), (gum verts, gum polys, gum UVs), UVs in the
    v range [0, 0.5] for the crowns and [0.5, 1] for the gums (callers place the arches apart).
    """
    at, half = resample_arch(guide * 1000.0 + shift * 1000.0)
    cols, _ = _tooth_table(spec, half)
    side = [c for c in cols]
    full = [(-s, i, f) for s, i, f in reversed(side[1:])] + side
    s = np.array([c[0] for c in full])
    tooth = np.array([c[1] for c in full])
    frac = np.array([c[2] for c in full])
    p, n = at(s)
    height = np.array(spec["height"])[tooth]
    thick = np.array(spec["thickness"])[tooth]
    edge_t = np.array(EDGE_THICKNESS)[tooth]
    edge = np.where(edge_t < 1.0 - 1e-9, edge_t * thick, edge_t)
    # 0 at a tooth's middle, 1 at its boundary (an embrasure)
    boundary = np.abs(np.cos(np.pi * frac)) ** 3
    bulge = 1.0 - boundary
    zaxis = np.array([0.0, 0.0, up])

    crown = np.zeros((len(CROWN_ROWS), len(s), 3))
    for r, (hf, off) in enumerate(CROWN_ROWS):
        u = hf * height + EMBRASURE_RISE * boundary * (1.0 - hf)
        o = np.array([_offset(off, t, e) for t, e in zip(thick, edge)])
        if not isinstance(off, str):
            o = o * (0.4 + 0.6 * bulge) - EMBRASURE_SINK * boundary
        crown[r] = p + o[:, None] * n + u[:, None] * zaxis
    gum = np.zeros((len(GUM_ROWS), len(s), 3))
    for r, (h, off) in enumerate(GUM_ROWS):
        u = height + h - (PAPILLA_DROP * boundary if h < 0 else 0.0)
        o = np.array([_offset(off, t, e) for t, e in zip(thick, edge)])
        gum[r] = p + o[:, None] * n + u[:, None] * zaxis

    def strip(rows: np.ndarray, v0: float, v1: float, flip: bool):
        nr, nc = rows.shape[:2]
        ids = np.arange(nr * nc).reshape(nr, nc)
        a, b, c, d = ids[:-1, :-1], ids[:-1, 1:], ids[1:, 1:], ids[1:, :-1]
        quads = np.stack([a, d, c, b] if flip else [a, b, c, d], -1).reshape(-1, 4)
        uv_u = 0.5 + 0.5 * s / (half * 1.02)
        uv_v = np.linspace(v0, v1, nr)
        uv = np.stack(np.broadcast_arrays(uv_u[None, :], uv_v[:, None]), -1).reshape(-1, 2)
        return rows.reshape(-1, 3) / 1000.0, quads.astype(np.int64), uv[quads].astype(np.float32)

    # Faces wind so that normals point out of the tooth (toward the lips on the labial side).
    flip = up > 0
    return strip(crown, 0.0, 0.5, flip), strip(gum, 0.5, 1.0, flip)


def first_hit_along_y(verts: np.ndarray, tris: np.ndarray, points: np.ndarray, sign: float):
    """Where rays from ``points`` along ``sign`` * y (-1: toward a front camera) first meet a mesh.

    verts: (N, 3); tris: (T, 3) int; points: (M, 3). Returns (hit (M,) bool, y of the hit (M,),
    y component of the hit triangle's (unnormalised, outward for a head) normal (M,)).

    A ray along y meets a triangle where the point lies inside the triangle's x-z projection, so
    only the (point, triangle) pairs that share a cell of an x-z grid are tested
    (``_pairs_sharing_cells``): a few per point instead of every triangle near the points. Ties
    between triangles at the same distance go to the lower triangle index."""
    a, b, c = verts[tris[:, 0]], verts[tris[:, 1]], verts[tris[:, 2]]
    lo, hi = points.min(0) - 1e-3, points.max(0) + 1e-3
    box_lo = np.minimum(np.minimum(a, b), c)[:, [0, 2]]
    box_hi = np.maximum(np.maximum(a, b), c)[:, [0, 2]]
    near = ((box_hi >= lo[[0, 2]]) & (box_lo <= hi[[0, 2]])).all(1)
    a, b, c, box_lo, box_hi = a[near], b[near], c[near], box_lo[near], box_hi[near]
    e1, e2 = (b - a)[:, [0, 2]], (c - a)[:, [0, 2]]
    det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    ok = np.abs(det) > 1e-14
    a, b, c, e1, e2, det = a[ok], b[ok], c[ok], e1[ok], e2[ok], det[ok]
    normal_y = np.cross(b - a, c - a)[:, 1]
    p, t = _pairs_sharing_cells(points[:, [0, 2]], box_lo[ok], box_hi[ok])
    d = points[p][:, [0, 2]] - a[t][:, [0, 2]]
    u = (d[:, 0] * e2[t, 1] - d[:, 1] * e2[t, 0]) / det[t]
    w = (e1[t, 0] * d[:, 1] - e1[t, 1] * d[:, 0]) / det[t]
    y = a[t, 1] + u * (b[t, 1] - a[t, 1]) + w * (c[t, 1] - a[t, 1])
    dist = (y - points[p, 1]) * sign
    ahead = (u >= 0) & (w >= 0) & (u + w <= 1) & (dist > 0)
    p, t, y, dist = p[ahead], t[ahead], y[ahead], dist[ahead]
    order = np.lexsort((t, dist, p))  # per point: nearest first, then the lower triangle index
    first = order[np.r_[True, p[order][1:] != p[order][:-1]]] if len(order) else order
    hit = np.zeros(len(points), bool)
    hit[p[first]] = True
    hit_y = np.full(len(points), np.nan)
    hit_y[p[first]] = y[first]
    hit_normal = np.full(len(points), np.nan)
    hit_normal[p[first]] = normal_y[t[first]]
    return hit, hit_y, hit_normal


def _pairs_sharing_cells(points: np.ndarray, box_lo: np.ndarray, box_hi: np.ndarray):
    """(point index, box index) pairs whose point may lie in the box: both touch a common cell of
    a 2-D grid sized by the boxes (points (M, 2); boxes (T, 2) corners). Every pair of a point
    inside a box is among them (the grid is padded against rounding); others may be too."""
    empty = np.zeros(0, np.int64)
    if not len(points) or not len(box_lo):
        return empty, empty
    size = max(float(np.median((box_hi - box_lo).max(1))), 1e-9)
    origin = points.min(0) - size
    cells = np.floor((points - origin) / size).astype(np.int64)
    n = cells.max(0) + 2
    pad = 1e-9 + 1e-12 * np.abs(box_hi).max()
    first = np.clip(np.floor((box_lo - pad - origin) / size), 0, n - 1).astype(np.int64)
    last = np.clip(np.floor((box_hi + pad - origin) / size), 0, n - 1).astype(np.int64)
    span = last - first + 1
    count = span.prod(1)
    box = np.repeat(np.arange(len(box_lo)), count)
    local = np.arange(len(box)) - np.repeat(np.cumsum(count) - count, count)
    cx = first[box, 0] + local % span[box, 0]
    cz = first[box, 1] + local // span[box, 0]
    key = cx * n[1] + cz
    order = np.argsort(key, kind="stable")
    key, box = key[order], box[order]
    point_key = cells[:, 0] * n[1] + cells[:, 1]
    start = np.searchsorted(key, point_key, "left")
    many = np.searchsorted(key, point_key, "right") - start
    point = np.repeat(np.arange(len(points)), many)
    at = np.repeat(start, many) + np.arange(len(point)) - np.repeat(np.cumsum(many) - many, many)
    return point, box[at]


def outside_flesh(verts: np.ndarray, tris: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(M,) bool: a point a front camera would see, or inside the head's flesh (the first surface
    toward the camera faces away from it). verts: (N, 3) head with outward winding; tris: (T, 3)."""
    hit, _, normal_y = first_hit_along_y(verts, tris, points, -1.0)
    return ~hit | (normal_y < 0)
