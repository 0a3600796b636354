"""The mouth on the head mesh: the inner lip lines and the line where the lips meet (the template
builder seals the lips and places the teeth by them), and the teeth seated behind a fitted head's
lips."""

from __future__ import annotations

import numpy as np

from core.geometry.mesh_layout import face_turn_cosine, neighbour_mean, polygon_edges, triangle_edges

from .model import bone_aliases, dense_skin_weights
from .parts import first_hit_along_y, outside_flesh

# Closing the lips at rest: the move fades out over these rings of vertices from the mouth's inner
# line, and the upper and lower lip overlap this much (mm) seen from the front.
LIP_SEAL_RINGS = (3, 7)
LIP_OVERLAP = 0.25
# A fitted head's lips are sealed when a slit shows between them: at most this far (mm).
SEAL_MAX_MM = 8.0
# A seal that turns faces over is smoothed where it does, at most this many times.
UNTANGLE_STEPS = 10


def jaw_joint(template) -> str | None:
    """The joint that opens the mouth: the default head's ``jaw``, or on an imported head the
    artist's bone that stands for it (``default_joints`` of the import's confidence); None when
    the rig has none."""
    jaw = bone_aliases(template).get("jaw", "jaw")
    return jaw if jaw in list(template.joint_names) else None


def upper_lip_joints(template, jaw: str | None) -> list[str]:
    """The joints below ``jaw`` that weigh the upper inner lip line more than the lower one, and
    theirs below them, parents first: an upper lip hung under the jaw. A face rig such as Rigify's
    hangs both lips under its jaw control and opens the mouth with constraints that a GLB does not
    carry (the upper lip follows the face), so turning the jaw alone would carry the closed mouth
    along; a jaw pose holds these joints where they rest. The default head's upper lip is not under
    its jaw: none."""
    names, parents = list(template.joint_names), np.asarray(template.joint_parents)
    if jaw not in names or not {"mouth_upper_inner", "mouth_lower_inner"} <= set(template.regions):
        return []
    weight = dense_skin_weights(template)
    upper = weight[np.asarray(template.regions["mouth_upper_inner"])].sum(0)
    lower = weight[np.asarray(template.regions["mouth_lower_inner"])].sum(0)
    below, held = np.zeros(len(names), bool), np.zeros(len(names), bool)
    for i, parent in enumerate(parents):  # parents come first
        if parent >= 0:
            below[i] = names[parent] == jaw or below[parent]
            held[i] = below[i] and (upper[i] > lower[i] or held[parent])
    return [names[i] for i in np.flatnonzero(held)]


def _quad_edges(quads: np.ndarray) -> np.ndarray:
    """(4 Q, 2) the sides of quads (Q, 4), each as (smaller id, larger id), shared ones repeated."""
    quads = np.asarray(quads, np.int64)
    return polygon_edges(quads.reshape(-1), np.arange(0, quads.size + 1, 4))


def lip_sides(quads: np.ndarray, regions: dict, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Ring distance (edges) of every vertex from the upper and from the lower inner lip line
    (corners excluded), each (n,) int64, large where far."""
    edges = _quad_edges(quads)
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


def seal_lips(verts: np.ndarray, quads: np.ndarray, regions: dict, mirror: np.ndarray) -> np.ndarray:
    """The head with its lips meeting at rest (MakeHuman's leave a slit of up to ~0.8 mm).

    Seen from the front, per x the upper lip's lowest point (on the edges within the first
    LIP_SEAL_RINGS[0] rings of its inner line) must sit LIP_OVERLAP below the lower lip's highest;
    each lip moves half the shortfall vertically, fully up to LIP_SEAL_RINGS[0] rings from its
    inner line and fading to nothing at LIP_SEAL_RINGS[1]; the move is made mirror-symmetric.
    verts: (N, 3); mirror: (N,) the mirror map. Returns a new (N, 3).
    """
    du, dl = lip_sides(quads, regions, len(verts))
    lo, hi = LIP_SEAL_RINGS
    upper, lower = (du < dl) & (du <= hi), (dl < du) & (dl <= hi)
    fade_u = np.clip((hi - du) / (hi - lo), 0.0, 1.0) * upper
    fade_l = np.clip((hi - dl) / (hi - lo), 0.0, 1.0) * lower
    edges = _quad_edges(quads)
    out = verts.astype(np.float64).copy()
    for _ in range(3):  # the lips' front outline moves with them: measure again after each move
        grid, bottom_upper, top_lower = _lip_columns(out, edges, upper & (du <= lo), lower & (dl <= lo),
                                                     upper | lower)
        seen = np.isfinite(bottom_upper) & np.isfinite(top_lower)
        need = np.zeros(len(grid))
        need[seen] = np.clip(bottom_upper[seen] - top_lower[seen] + LIP_OVERLAP * 1e-3, 0.0, None)
        if not need.any():
            break
        move = 0.5 * np.interp(out[:, 0], grid[seen], need[seen]) * (fade_l - fade_u)
        out[:, 2] += 0.5 * (move + move[mirror])
    return out


def _lip_columns(verts: np.ndarray, edges: np.ndarray, upper: np.ndarray, lower: np.ndarray, span: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seen from the front, per column of x (161 across the ``span`` vertices): the lowest z of the
    ``upper`` lip's edges and the highest of the ``lower`` lip's (inf / -inf where a lip has none).
    upper, lower, span: (N,) bool vertex masks; an edge counts when both its ends are in. Returns
    (grid, bottom_upper, top_lower), each (161,)."""
    x = verts[:, 0]
    grid = np.linspace(x[span].min(), x[span].max(), 161)
    sides = []
    for near in (upper, lower):
        e = edges[near[edges].all(1)]
        t = np.linspace(0.0, 1.0, 9)[:, None, None]
        pts = (verts[e[:, 0]][None] * (1 - t) + verts[e[:, 1]][None] * t).reshape(-1, 3)
        cell = np.clip(np.searchsorted(grid, pts[:, 0]), 0, len(grid) - 1)
        sides.append((cell, pts[:, 2]))
    (cu, zu), (cl, zl) = sides
    bottom_upper = np.full(len(grid), np.inf)
    np.minimum.at(bottom_upper, cu, zu)
    top_lower = np.full(len(grid), -np.inf)
    np.maximum.at(top_lower, cl, zl)
    return grid, bottom_upper, top_lower


# Rays cast per column where the lips' inner lines stand apart, and how much deeper than the
# deepest point of those lines (metres) a ray must reach to pass (face_checks.DEPTH_TOL).
GAP_RAYS = 5
GAP_DEPTH_TOL = 5e-4


def light_between_lips(template, verts: np.ndarray) -> int:
    """How many front rays pass between the lips of a head of ``template``'s layout (all-quad, with
    the mouth's inner lines) at rest: rays are cast straight in (+y) at GAP_RAYS heights between the
    two inner lines in every column where they stand apart (``_lip_columns``), and pass when they
    meet no skin or meet it deeper than the lines' deepest point. A cheap stand-in for
    ``face_checks.rays_between_lips`` (which rasterises 0.4 M pixels, ~1 s): it sees the slits that
    one finds (46-375 rays on fitted heads) and none where that finds none."""
    quads = np.asarray(template.poly_verts).reshape(-1, 4)
    regions = template.regions
    edges = _quad_edges(quads)
    du, dl = lip_sides(quads, regions, len(verts))
    lo, hi = LIP_SEAL_RINGS
    verts = np.asarray(verts, np.float64)
    grid, bottom_upper, top_lower = _lip_columns(verts, edges, (du < dl) & (du <= lo), (dl < du) & (dl <= lo),
                                                 ((du < dl) & (du <= hi)) | ((dl < du) & (dl <= hi)))
    apart = np.flatnonzero(np.isfinite(bottom_upper) & np.isfinite(top_lower) & (bottom_upper > top_lower))
    if not len(apart):
        return 0
    s = (np.arange(GAP_RAYS) + 0.5) / GAP_RAYS
    z = top_lower[apart, None] + s[None] * (bottom_upper - top_lower)[apart, None]
    points = np.stack([np.repeat(grid[apart], GAP_RAYS), np.full(z.size, verts[:, 1].min() - 0.01), z.ravel()], 1)
    inner = np.concatenate([np.asarray(regions[k]) for k in ("mouth_upper_inner", "mouth_lower_inner")])
    hit, y, _ = first_hit_along_y(verts, np.asarray(template.tris), points, 1.0)
    return int((~hit | (y > verts[inner, 1].max() + GAP_DEPTH_TOL)).sum())


def seal_neutral_lips(template, verts: np.ndarray) -> np.ndarray:
    """A head of ``template``'s layout at rest (N, 3), its lips sealed (``seal_lips``) if light passes
    between them (``light_between_lips``), else as it is. A head without quads or the mouth's inner
    lines comes back as it is.

    Only where light passes: a fitted mouth whose lips already hide the mouth's inside keeps its
    shape (the seal would move lips that overlap in depth but not in height, by up to 3.5 mm); and
    only a slit: lips further apart than SEAL_MAX_MM, or a seal that turns a face over, stay."""
    start, regions = np.asarray(template.poly_start), template.regions
    if not (np.diff(start) == 4).all() or not {"mouth_upper_inner", "mouth_lower_inner", "mouth_corners"} <= set(regions):
        return np.asarray(verts).copy()
    if light_between_lips(template, verts) == 0:
        return np.asarray(verts).copy()
    quads = np.asarray(template.poly_verts).reshape(-1, 4)
    sealed = seal_lips(np.asarray(verts), quads, regions, np.asarray(template.mirror))
    tris = np.asarray(template.tris)
    turned = (face_turn_cosine(verts, sealed, tris) < 0).any()
    if turned:
        # Thin faces where the lips' moves meet can turn over: their corners take the mean move of
        # their neighbours, as long as the lips stay sealed.
        smoothed = untangle_move(np.asarray(verts, np.float64), sealed, tris)
        if light_between_lips(template, smoothed) == 0:
            sealed = smoothed
            turned = (face_turn_cosine(verts, sealed, tris) < 0).any()
    # A slit closes; lips that stand apart (a mouth that rests open) or a seal that would turn
    # faces over stay as fitted.
    if turned or np.abs(sealed - verts).max() > SEAL_MAX_MM * 1e-3:
        return np.asarray(verts).copy()
    return sealed.astype(np.asarray(verts).dtype)


def untangle_move(verts: np.ndarray, moved: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """``moved`` (N, 3) with the move from ``verts`` averaged, at the corners of each triangle it
    turns over, with the moves of their neighbours (half and half), up to UNTANGLE_STEPS times or
    until none is turned over. Returns the new (N, 3)."""
    edges = triangle_edges(tris)
    move = np.asarray(moved, np.float64) - verts
    for _ in range(UNTANGLE_STEPS):
        turned = face_turn_cosine(verts, verts + move, tris) < 0
        if not turned.any():
            break
        corners = np.unique(tris[turned])
        move[corners] = 0.5 * move[corners] + 0.5 * neighbour_mean(move, edges)[corners]
    return verts + move


# The parts that sit in the mouth and move together when the teeth are seated, and the teeth.
MOUTH_PARTS = ("teeth.upper", "teeth.lower", "gums.upper", "gums.lower", "tongue")
TEETH_PARTS = ("teeth.upper", "teeth.lower")
# Seating tries moves straight back in these steps, up to this far (mm).
SEAT_STEP_MM = 0.5
SEAT_MAX_MM = 4.0


# Teeth vertices in the lips' flesh are tucked in: steps (mm), the pull's Gaussian radius (mm), at
# most this many steps.
TUCK_STEP_MM = 0.25
TUCK_RADIUS_MM = 3.0
TUCK_MAX_STEPS = 24


def tuck_teeth(verts: np.ndarray, tris: np.ndarray, points: np.ndarray, teeth: np.ndarray) -> np.ndarray:
    """``points`` (M, 3) (an arch's crowns and gums) with the ``teeth`` among them (indices) that
    sit in the head's flesh at rest (``outside_flesh``: seen from the front or under skin that faces
    away) tucked in: each pulls the points around it inward (toward x = 0) and back (+y),
    TUCK_STEP_MM a step fading as a Gaussian of TUCK_RADIUS_MM, until none is left or after
    TUCK_MAX_STEPS. verts: (N, 3) head, tris: (T, 3). Returns the new (M, 3)."""
    head = np.asarray(verts, np.float64)
    out = np.asarray(points, np.float64).copy()
    for _ in range(TUCK_MAX_STEPS):
        bad = out[teeth][outside_flesh(head, tris, out[teeth])]
        if not len(bad):
            break
        way = np.stack([-np.sign(bad[:, 0]), np.ones(len(bad)), np.zeros(len(bad))], 1) / np.sqrt(2.0)
        fall = np.exp(-0.5 * ((out[:, None] - bad[None]) ** 2).sum(-1) / (TUCK_RADIUS_MM * 1e-3) ** 2)
        pull = fall @ way
        out += TUCK_STEP_MM * 1e-3 * pull / np.maximum(np.linalg.norm(pull, axis=1, keepdims=True), 1.0)
    return out


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


def front_teeth_seen(template, verts: np.ndarray, parts: np.ndarray) -> float:
    """Share (0..1) of the front teeth's front-facing vertices (``face_checks.front_teeth_ids``) from
    which a ray toward a front camera (-y) leaves the mouth without meeting the head or a part,
    starting ``face_checks.DEPTH_TOL`` in front of the tooth: the rasterised check's
    ``front_teeth_visible`` with an orthographic camera, ~30x cheaper, for searches.
    verts: (N, 3) head, parts: (P, 3), template frame."""
    from core.geometry.mesh_layout import fan_triangulate

    from .face_checks import DEPTH_TOL, front_teeth_ids
    from .mesh_layout import padded_part_polygons

    part_tris, _ = fan_triangulate(padded_part_polygons(template))
    allv = np.concatenate([np.asarray(verts, np.float64), np.asarray(parts, np.float64)])
    tris = np.concatenate([np.asarray(template.tris), part_tris + template.num_verts])
    points = np.asarray(parts, np.float64)[front_teeth_ids(template)] - [0.0, DEPTH_TOL, 0.0]
    hit, _, _ = first_hit_along_y(allv, tris, points, -1.0)
    return float((~hit).mean())


# Placing the teeth for an open mouth: each arch closes in on the lip line (the upper one down, the
# lower one up) in TEETH_CLOSE_STEP_MM steps, the upper at most TEETH_CLOSE_MAX_MM and the lower at
# most LOWER_CLOSE_MAX_MM, until a front camera sees TEETH_SEEN_TARGET of the front teeth in every
# open pose; each try is seated (``seat_teeth``). The lower lip hides more of its arch than the upper
# lip of its own: on the Rigify head's fit of Grace Hopper a front camera sees 76-81 % of the upper
# front teeth and 27-40 % of the lower ones with both arches 2 mm closed in, and the lower arch
# holds 112 of the 180 front-teeth points. Closed 3 mm there, the lower incisors' tips still sit
# about 3 mm behind the upper ones at rest in the section through the midline: a deeper overbite,
# hidden by the closed lips.
TEETH_CLOSE_STEP_MM = 0.5
TEETH_CLOSE_MAX_MM = 2.0
LOWER_CLOSE_MAX_MM = 3.0
TEETH_SEEN_TARGET = 0.6
UPPER_ARCH = ("teeth.upper", "gums.upper")
LOWER_ARCH = ("teeth.lower", "gums.lower", "tongue")


def _tuck_arches(template, verts: np.ndarray, parts: np.ndarray) -> np.ndarray:
    """``parts`` with each arch's teeth that still sit in the lips' flesh at rest tucked in, the
    arch's crowns and gums with them (``tuck_teeth``)."""
    names, part = list(template.part_names), np.asarray(template.part_vert_part)
    out = np.asarray(parts).copy()
    tris = np.asarray(template.tris)
    for crown, gum in (("teeth.upper", "gums.upper"), ("teeth.lower", "gums.lower")):
        if crown not in names:
            continue
        ids = np.flatnonzero(np.isin(part, [names.index(n) for n in (crown, gum) if n in names]))
        teeth = np.flatnonzero(part[ids] == names.index(crown))
        out[ids] = tuck_teeth(verts, tris, out[ids], teeth)
    return out


def place_teeth(template, verts: np.ndarray, parts: np.ndarray,
                opened: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, dict]:
    """Seat the mouth's parts behind a fitted head's lips at rest and show the teeth with it open.

    verts: (N, 3) head and parts: (P, 3) at rest, template frame; opened: per open-mouth pose the
    head (N, 3) and what that pose adds to the parts (P, 3). The fitted lips are fuller or part
    less than the template's: with the teeth where the controllers put them, a front camera sees
    39-45 % of the front teeth with the jaw open on fitted heads against the template's 57-62 %.
    The arches close in on the lip line (the lower one up to LOWER_CLOSE_MAX_MM, the upper up to
    TEETH_CLOSE_MAX_MM) until TEETH_SEEN_TARGET of them is seen in every open pose (the smallest
    move that does, else the one that shows the most), each try seated so that no more teeth poke
    through the closed lips than on the template, and what still does tucked in.
    Returns the new (P, 3) parts and {"seated_mm", "closed_in_mm": {"upper", "lower"},
    "front_teeth_seen"}."""
    names, part = list(template.part_names), np.asarray(template.part_vert_part)
    upper = np.isin(part, [names.index(n) for n in UPPER_ARCH if n in names])
    lower = np.isin(part, [names.index(n) for n in LOWER_ARCH if n in names])
    parts = np.asarray(parts)
    best = None
    steps = int(round(max(TEETH_CLOSE_MAX_MM, LOWER_CLOSE_MAX_MM) / TEETH_CLOSE_STEP_MM))
    for k in range(steps + 1):
        up = min(k * TEETH_CLOSE_STEP_MM, TEETH_CLOSE_MAX_MM)
        down = min(k * TEETH_CLOSE_STEP_MM, LOWER_CLOSE_MAX_MM)
        moved = parts.copy()
        moved[upper, 2] -= up * 1e-3
        moved[lower, 2] += down * 1e-3
        seated, back = seat_teeth(template, verts, moved)
        seated = _tuck_arches(template, verts, seated)
        seen = min((front_teeth_seen(template, head, seated + delta) for head, delta in opened), default=1.0)
        if best is None or seen > best[1]["front_teeth_seen"] + 1e-9:
            best = (seated, {"seated_mm": back, "closed_in_mm": {"upper": up, "lower": down},
                             "front_teeth_seen": seen})
        if seen >= TEETH_SEEN_TARGET:
            break
    return best[0], best[1]
