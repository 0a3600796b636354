"""A fitted head's lids and lips kept close enough to the template's that its bones and keys
pose them as they pose the template's.

Along the lid margins and the lips' inner lines the template's skin folds sharply over edges of
0.3-1 mm, and across them the skin weights step (the eye bones' by up to 0.1, the jaw's more).
The shape controllers and the per-vertex offsets reshape those folds freely:

- they may squeeze the fine edges to half their length (a narrow or small eye, thin lips in the
  photo), so the same weight step acts over half the distance and the edge stretches twice as
  far when the eyes look up or down (0.44-0.56 against the template's 0.26-0.29) or the jaw
  opens (2.23 against 1.47): ``relax_fine_edges`` lengthens the edges shorter than
  FINE_EDGE on the template within FINE_RINGS rings of the lid rings and the lips' inner lines
  back to FINE_EDGE_MIN of the template's (after the head's scale), least squares with a pull
  toward where the fit put each vertex (Gauss-Newton): 0.6-0.8 mm at most on fitted heads;
- they may open the fold by 15 degrees, and a blink carried onto it as the template's
  deformation bends it 15 degrees further, folding the lid line over (172-178 degrees against
  the template's 158): ``blink_like_template`` draws a blink key's lid region toward the
  template's closed lid, turned and scaled onto the fitted eye, faded into the carried key over
  BLINK_FADE_RINGS rings, as far as the lid line and the faces turned over need.

Deformation transfer itself can stretch a fine edge at a fitted mouth corner 9 times as far as the
template's key stretches the same edge (jawOpen: 2.2 against 0.25; the template's worst is 1.47):
``soften_key`` averages a key's deltas around such edges until none stretches more than
KEY_STRETCH_MAX times the template's worst.

The eyeballs ride the shape controllers, the skin also the per-vertex offsets: where the fit draws
the skin back at an eye corner the eyeball stands through it, in front of any lid a blink closes
(``seat_eyeballs``).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from core.geometry.mesh_layout import face_turn_cosine, neighbour_mean, triangle_edges
from core.geometry.polygon import distance_to_outline, inside_polygon
from core.geometry.similarity import similarity_transform
from core.geometry.sparse_solve import spd_solve

from .face_checks import DEPTH_TOL

# Edges shorter than FINE_EDGE (metres) on the template within FINE_RINGS rings of these areas'
# regions are the fine ones; on a fitted head each is kept at least FINE_EDGE_MIN of its template
# length (after the head's scale), moving only vertices within those rings, at most RELAX_STEPS
# Gauss-Newton steps, a move of 1 mm costing PULL. Each area: its regions and how far (degrees) a
# relax step may turn one of its faces: a lid's slivers until they would flip, the mouth's 45.
FINE_AREAS = ((("eye_l_ring",), 90.0), (("eye_r_ring",), 90.0), (("mouth_upper_inner", "mouth_lower_inner"), 45.0))
FINE_EDGE = 2e-3
FINE_EDGE_MIN = 1.0
FINE_RINGS = 5
RELAX_STEPS = 30
PULL = 1e-3
# A blink key is drawn toward the template's closed lid fully within BLINK_RINGS rings of the lid
# ring, fading over the next BLINK_FADE_RINGS; a key closes a lid when its template delta moves
# that lid's ring BLINK_MOVES metres (the template's blink moves its own lid 12.5 mm, the other
# one 1.1 mm).
BLINK_RINGS = 2
BLINK_FADE_RINGS = 6
BLINK_MOVES = 5e-3
# Shares of the way toward the template's closed lid tried, least first (none: the carried key as
# it is); how far (degrees) past the template's blink the lid line may bend (the rig checks allow 10).
BLINK_SHARES = (0.0, 0.25, 0.5, 0.75, 1.0)
BLINK_DIHEDRAL_SLACK = 5.0
# Among the shares that leave none of the eyeball seen, or where none does, the search prefers
# the lid that lies further in front of the eyeball, up to BLINK_CLEARANCE (twice the rasterised
# check's depth tolerance): its perspective rays and pixel-sampled depths differ from the
# orthographic stand-in by a few hundredths of a millimetre (the astronaut's seated right eye: a
# lid 0.51 mm in front passed the stand-in and failed the check).
BLINK_CLEARANCE = 2 * DEPTH_TOL
SIDES = ("l", "r")
# The template's lid margins rest on its eyeballs: seen from the front an eyeball stands through
# the skin up to 0.39 mm outside its lid ring's outline. A fit that draws the skin back at an eye
# corner leaves the eyeball standing through it further out (the astronaut's right eye through the
# Rigify test head: 8.6 mm outside the ring, up to 3 mm in front of the skin), and no blink covers
# it. ``seat_eyeballs`` moves such an eye (eyeball, cornea and the bone they turn about) back along
# +y by the least multiple of EYE_SEAT_STEP, up to EYE_SEAT_MAX, that leaves no front eyeball
# vertex more than EYE_SEAT_MARGIN outside the ring's outline with less than EYE_SEAT_CLEARANCE of
# skin in front of it (the face checks' depth tolerance: the template's have 1 mm and more).
EYE_SEAT_MARGIN = 5e-4
EYE_SEAT_CLEARANCE = DEPTH_TOL
EYE_SEAT_STEP = 1e-4
EYE_SEAT_MAX = 4e-3
EYE_PARTS = ("eyeball", "cornea")


def ring_distance(template, seeds: np.ndarray, rings: int, edges: np.ndarray | None = None) -> np.ndarray:
    """(N,) int64: edge rings from ``seeds`` (0 there), -1 beyond ``rings``; edges: the template's
    ``triangle_edges`` when the caller has them."""
    edges = triangle_edges(np.asarray(template.tris)) if edges is None else edges
    dist = np.full(template.num_verts, -1, np.int64)
    dist[np.asarray(seeds)] = 0
    for k in range(1, rings + 1):
        for a, b in ((edges[:, 0], edges[:, 1]), (edges[:, 1], edges[:, 0])):
            dist[b[(dist[a] == k - 1) & (dist[b] < 0)]] = k
    return dist


def lid_distance(template, side: str, rings: int) -> np.ndarray:
    """ring_distance from the lid ring of eye ``side`` ("l" or "r")."""
    return ring_distance(template, np.asarray(template.regions[f"eye_{side}_ring"]), rings)


def relax_fine_edges(template, verts: np.ndarray) -> tuple[np.ndarray, float]:
    """verts: (N, 3) a fitted head at rest in the template's frame. Returns the head with the fine
    edges around its lids and lips lengthened to FINE_EDGE_MIN of the template's (module doc), and
    the largest move (mm). Each of FINE_AREAS is relaxed on its own; a template without their
    regions: the head as it is."""
    tv = np.asarray(template.verts, np.float64)
    v0 = np.asarray(verts, np.float64)
    edges = triangle_edges(np.asarray(template.tris))
    lt = np.linalg.norm(tv[edges[:, 0]] - tv[edges[:, 1]], axis=1)
    scale = float(np.median(np.linalg.norm(v0[edges[:, 0]] - v0[edges[:, 1]], axis=1) / np.maximum(lt, 1e-12)))
    out = v0.copy()
    for area, turn_max in FINE_AREAS:
        if not all(k in template.regions for k in area):
            continue
        region = ring_distance(template, np.concatenate([np.asarray(template.regions[k]) for k in area]),
                               FINE_RINGS, edges) >= 0
        pick = (region[edges[:, 0]] | region[edges[:, 1]]) & (lt < FINE_EDGE)
        out = _relax_area(template, out, region, edges[pick], FINE_EDGE_MIN * scale * lt[pick], turn_max)
    return out.astype(np.asarray(verts).dtype), float(np.linalg.norm(out - v0, axis=1).max() * 1e3)


def _relax_area(template, v0: np.ndarray, region: np.ndarray, e: np.ndarray, target: np.ndarray,
                turn_max: float) -> np.ndarray:
    """v0 (N, 3) with the vertices of ``region`` moved so that the edges ``e`` (M, 2) reach their
    ``target`` lengths (M,): Gauss-Newton on f = sum(((target - length) / target)^2 over the short
    edges) + PULL * sum(|move in mm|^2), each step halved until f falls without turning a face of
    the area further than ``turn_max`` degrees (below 90: nor over): each squeezed edge is
    lengthened, its neighbours following smoothly."""
    length = np.linalg.norm(v0[e[:, 0]] - v0[e[:, 1]], axis=1)
    if not (length < target).any():
        return v0
    free = np.flatnonzero(region)
    col = np.full(len(v0), -1)
    col[free] = np.arange(len(free))
    tris = np.asarray(template.tris)
    tris = tris[region[tris].any(1)]
    pull = PULL / 1e-6
    min_cos = max(np.cos(np.radians(turn_max)), 1e-9)

    def cost(x):
        if (face_turn_cosine(v0, x, tris) < min_cos).any():
            return np.inf
        length = np.linalg.norm(x[e[:, 0]] - x[e[:, 1]], axis=1)
        return float((np.clip(target - length, 0, None) ** 2 / target ** 2).sum() + pull * ((x - v0) ** 2).sum())

    out = v0.copy()
    f = cost(out)
    for _ in range(RELAX_STEPS):
        vec = out[e[:, 0]] - out[e[:, 1]]
        length = np.linalg.norm(vec, axis=1)
        short = length < target
        pair, tg = e[short], target[short]
        unit = vec[short] / np.maximum(length[short], 1e-12)[:, None]
        r = (tg - length[short]) / tg
        rows = np.repeat(np.arange(len(tg)), 6)
        cols = np.stack([3 * col[pair[:, 0]][:, None] + np.arange(3), 3 * col[pair[:, 1]][:, None] + np.arange(3)], 1)
        vals = np.stack([-unit / tg[:, None], unit / tg[:, None]], 1)
        keep = (cols >= 0).reshape(-1)
        jac = sp.csr_matrix((vals.reshape(-1)[keep], (rows[keep], cols.reshape(-1)[keep])),
                            shape=(len(tg), 3 * len(free)))
        moved = (out[free] - v0[free]).reshape(-1)
        lhs = (jac.T @ jac + pull * sp.identity(3 * len(free))).tocsc()
        step = spd_solve(lhs, -(jac.T @ r + pull * moved)).reshape(-1, 3)
        for alpha in 0.5 ** np.arange(8):
            trial = out.copy()
            trial[free] += alpha * step
            f_trial = cost(trial)
            if f_trial < f:
                break
        if f_trial >= f * (1 - 1e-4):
            break
        out, f = trial, f_trial
    return out


def blink_like_template(template, source: np.ndarray, source_delta: np.ndarray, rest: np.ndarray,
                        delta: np.ndarray, parts: np.ndarray | None = None) -> np.ndarray:
    """One blink key's deltas on a fitted head, its lids closed as the template's are.

    source, source_delta: (N, 3) the template's rest head and the key's deltas on it; rest,
    delta: (N, 3) the fitted head at rest and the key carried onto it. For each eye whose lid the
    key moves, the lid region is drawn toward the template's closed lid, mapped by the similarity
    that best takes the template's lid region onto the fitted one at rest: by the least of
    BLINK_SHARES that bends the lid line no more than BLINK_DIHEDRAL_SLACK degrees past the
    template's blink and turns over no more faces than it, and, given ``parts`` (P, 3: the parts
    with the key applied), leaves none of the eyeball's front seen (``eyeball_seen``). Returns
    the new (N, 3) deltas."""
    from .face_checks import lid_line_dihedral

    source, source_delta = np.asarray(source, np.float64), np.asarray(source_delta, np.float64)
    rest = np.asarray(rest, np.float64)
    closed = rest + np.asarray(delta, np.float64)
    tris = np.asarray(template.tris)
    for side in SIDES:
        dist = lid_distance(template, side, BLINK_RINGS + BLINK_FADE_RINGS)
        region = np.flatnonzero(dist >= 0)
        if np.linalg.norm(source_delta[dist == 0], axis=1).max() < BLINK_MOVES:
            continue
        s, R, t = similarity_transform(source[region], rest[region])
        theirs = s * (source[region] + source_delta[region]) @ R.T + t
        fade = np.clip((BLINK_RINGS + BLINK_FADE_RINGS + 1 - dist[region]) / (BLINK_FADE_RINGS + 1), 0, 1)
        near = np.isin(tris, region).any(1)
        want_dihedral = lid_line_dihedral(template, torch.as_tensor(source + source_delta), side) + BLINK_DIHEDRAL_SLACK
        want_flips = int(_turned(source, source + source_delta, tris[near]).sum())
        tries = []
        for share in BLINK_SHARES:
            moved = closed.copy()
            moved[region] += share * fade[:, None] * (theirs - closed[region])
            bend = lid_line_dihedral(template, torch.as_tensor(moved), side)
            flips = int(_turned(rest, moved, tris[near]).sum())
            cover = None if parts is None else _lid_cover(template, moved, parts, side)
            seen = 0.0 if cover is None else _seen(cover)  # eyeball_seen
            thin = 0.0 if cover is None else _shortfall(cover, BLINK_CLEARANCE)  # lid_shortfall
            tries.append((max(bend - want_dihedral, 0.0) + max(flips - want_flips, 0) + 100.0 * seen + thin,
                          share, moved))
            if tries[-1][0] == 0:
                break
        closed = min(tries, key=lambda x: (x[0], x[1]))[2]
    return (closed - rest).astype(np.asarray(delta).dtype)


def eyeball_seen(template, verts: np.ndarray, parts: np.ndarray, side: str) -> float:
    """Share (0..1) of an eyeball's front vertices inside its lid ring (``face_checks.eyeball_visible``'s
    choice) from which a ray toward a front camera (-y) meets no head more than DEPTH_TOL in front:
    that check with an orthographic camera, for searches. verts: (N, 3) head, parts: (P, 3)."""
    return _seen(_lid_cover(template, verts, parts, side))


def _seen(cover: np.ndarray) -> float:
    return float((cover <= DEPTH_TOL).mean())


def lid_shortfall(template, verts: np.ndarray, parts: np.ndarray, side: str, clearance: float) -> float:
    """Mean (0..1) over the front vertices of ``eyeball_seen`` of how much of ``clearance`` (metres)
    the head in front of each vertex falls short of: 0 where it covers every one that far."""
    return _shortfall(_lid_cover(template, verts, parts, side), clearance)


def _shortfall(cover: np.ndarray, clearance: float) -> float:
    return float(np.clip(1.0 - cover / clearance, 0.0, 1.0).mean())


def _lid_cover(template, verts: np.ndarray, parts: np.ndarray, side: str) -> np.ndarray:
    """How far (metres) the front-most head surface lies in front of (-y) each of an eye's front
    vertices (``eyeball_front_ids``), as a front camera's depth test sees it; 0 where none does."""
    from .face_checks import eyeball_front_ids
    from .parts import first_hit_along_y

    points = np.asarray(parts, np.float64)[eyeball_front_ids(template, side)]
    verts = np.asarray(verts, np.float64)
    start = points.copy()
    start[:, 1] = verts[:, 1].min() - 1.0  # in front of the whole head, looking back along +y
    hit, y, _ = first_hit_along_y(verts, np.asarray(template.tris), start, 1.0)
    return np.where(hit, np.maximum(points[:, 1] - y, 0.0), 0.0)


def eye_part_ids(template, side: str) -> np.ndarray:
    """Part-vertex ids of one eye's (side "l" or "r") eyeball and cornea."""
    names = list(template.part_names)
    want = [names.index(f"{part}.{side.upper()}") for part in EYE_PARTS if f"{part}.{side.upper()}" in names]
    return np.flatnonzero(np.isin(np.asarray(template.part_vert_part), want))


def eyeball_poke(template, verts: np.ndarray, parts: np.ndarray, side: str, shifts=(0.0,)) -> np.ndarray:
    """For each of ``shifts`` (metres the eye moves back, along +y): how far (metres, in the front
    view's x-z plane) outside its lid ring's outline the farthest front eyeball vertex lies from
    which a ray toward a front camera (-y) meets no head more than EYE_SEAT_CLEARANCE in front
    of it; 0 where none does. verts: (N, 3) head; parts: (P, 3)."""
    from .parts import first_hit_along_y

    names = list(template.part_names)
    ball = np.flatnonzero(np.asarray(template.part_vert_part) == names.index(f"eyeball.{side.upper()}"))
    p = np.asarray(parts, np.float64)[ball]
    p = p[p[:, 1] < p[:, 1].mean()]
    verts = np.asarray(verts, np.float64)
    ring = verts[np.asarray(template.regions[f"eye_{side}_ring"])][:, [0, 2]]
    out = np.where(inside_polygon(p[:, [0, 2]], ring), 0.0, distance_to_outline(p[:, [0, 2]], ring))
    p, out = p[out > 0], out[out > 0]  # a move along y keeps a vertex's place in the front view
    shifts = np.asarray(shifts, np.float64)
    if not len(p):
        return np.zeros(len(shifts))
    moved = (p[None] + (shifts[:, None, None] - EYE_SEAT_CLEARANCE) * np.array([0.0, 1.0, 0.0])).reshape(-1, 3)
    hit, _, _ = first_hit_along_y(verts, np.asarray(template.tris), moved, -1.0)
    return np.where(hit.reshape(len(shifts), -1), 0.0, out[None]).max(1)


def seat_eyeballs(template, verts: np.ndarray, parts: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
    """Each eye moved back (+y) as far as ``eyeball_poke`` needs to come within EYE_SEAT_MARGIN
    (the least EYE_SEAT_STEP multiple up to EYE_SEAT_MAX; where none does, the least that leaves
    the least poke). verts: (N, 3) head at rest, parts: (P, 3). Returns the parts moved, (J, 3) moves of the joints' heads and
    {side: millimetres moved}. An eye's bone moves with its eye, so the eye turns about its own
    centre, where nothing else hangs from it (no other part, no child bone): a Rigify eye bone
    carries the lids' bones, which would turn about the moved head and pose the lids otherwise
    (one face turned over looking left on the astronaut's fit), so it stays, and that eye turns
    about a point the move's length in front of its centre."""
    parts = np.array(parts, dtype=np.float64)
    part_joint = np.asarray(template.part_joint)
    parents = np.asarray(template.joint_parents)
    joint_moves = np.zeros((template.num_joints, 3))
    seated = {}
    shifts = np.arange(0, round(EYE_SEAT_MAX / EYE_SEAT_STEP) + 1) * EYE_SEAT_STEP
    for side in SIDES:
        if f"eyeball.{side.upper()}" not in template.part_names:
            continue
        poke = eyeball_poke(template, verts, parts, side, shifts)
        ok = np.flatnonzero(poke <= EYE_SEAT_MARGIN)
        shift = float(shifts[ok[0]] if len(ok) else shifts[np.argmin(poke)])
        seated[side] = round(shift * 1e3, 3)
        if shift == 0.0:
            continue
        ids = eye_part_ids(template, side)
        parts[ids, 1] += shift
        for bone in np.unique(part_joint[ids]):
            if np.isin(np.flatnonzero(part_joint == bone), ids).all() and not (parents == bone).any():
                joint_moves[bone, 1] += shift
    return parts, joint_moves, seated


def _turned(rest: np.ndarray, moved: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """(T,) bool: triangles whose normal turns by more than 90 degrees from ``rest`` to ``moved``."""
    return face_turn_cosine(rest, moved, tris) < 0


# A key may stretch no edge of a fitted head further than KEY_STRETCH_MAX times the most it
# stretches any of the template's (the rig checks allow 1.5); softening averages the key's deltas
# over the offending edges' vertices and the SOFTEN_RINGS rings around them (fewer where that turns
# faces over), at most SOFTEN_STEPS times.
KEY_STRETCH_MAX = 1.25
SOFTEN_RINGS = 2
SOFTEN_STEPS = 50
# A key that turns over more faces than the template's is averaged around the extra ones over at
# most TURN_RINGS rings, at most TURN_STEPS times.
TURN_RINGS = 1
TURN_STEPS = 10


def edge_stretch(rest: np.ndarray, delta: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """(E,) |l_moved / l_rest - 1| of each edge when ``delta`` is added to ``rest``."""
    a = np.linalg.norm(rest[edges[:, 0]] - rest[edges[:, 1]], axis=1)
    moved = rest + delta
    b = np.linalg.norm(moved[edges[:, 0]] - moved[edges[:, 1]], axis=1)
    return np.abs(b / np.maximum(a, 1e-12) - 1)


def soften_key(template, rest: np.ndarray, delta: np.ndarray, source: np.ndarray, source_delta: np.ndarray,
               edges: np.ndarray | None = None) -> np.ndarray:
    """A key carried onto a fitted head, softened where it stretches an edge further than
    KEY_STRETCH_MAX times the template's worst (deformation transfer can stretch a fine edge at a
    fitted mouth corner 9x as far as the template's same edge) or turns over faces the template's
    key leaves facing the same way. rest, delta: (N, 3) the fitted head and the key on it; source,
    source_delta: the template's. Returns the new (N, 3) deltas: the softening step with the least
    worst stretch that turns no more faces over than the carried key or the template's key,
    whichever turns more (the key as carried where none does better); then, where that turns more
    faces over than the template's key, the first step of averaging around the extra ones that
    turns no more than the template's and stretches no edge past the limit (or the stretch it
    had). edges: the template's ``triangle_edges``, when the caller has them (a result softens
    52 keys)."""
    edges = triangle_edges(np.asarray(template.tris)) if edges is None else edges
    tris = np.asarray(template.tris)
    source = np.asarray(source, np.float64)
    source_delta = np.asarray(source_delta, np.float64)
    rest, out = np.asarray(rest, np.float64), np.asarray(delta, np.float64).copy()
    limit = KEY_STRETCH_MAX * float(edge_stretch(source, source_delta, edges).max())
    source_turned = _turned(source, source + source_delta, tris)
    template_flips = int(source_turned.sum())
    first = float(edge_stretch(rest, out, edges).max())
    if first > limit:
        out = _soften_stretch(template, rest, out, edges, tris, limit,
                              max(int(_turned(rest, rest + out, tris).sum()), template_flips))
    if int(_turned(rest, rest + out, tris).sum()) > template_flips:
        out = _soften_turns(template, rest, out, edges, tris, source_turned,
                            max(limit, float(edge_stretch(rest, out, edges).max())))
    return out.astype(np.asarray(delta).dtype)


def _soften_stretch(template, rest, delta, edges, tris, limit: float, flips: int) -> np.ndarray:
    """``soften_key``'s first part: the key averaged around the edges it stretches past ``limit``,
    the step with the least worst stretch that turns at most ``flips`` faces over."""
    best = (float(edge_stretch(rest, delta, edges).max()), delta)
    # The widest softening first; where every step of it turns more faces over (the average reaches
    # across the lips), narrower ones, down to the offending edges' own ends.
    for rings in range(SOFTEN_RINGS, -1, -1):
        out = delta.copy()
        for _ in range(SOFTEN_STEPS):
            stretch = edge_stretch(rest, out, edges)
            if stretch.max() <= limit:
                break
            near = ring_distance(template, np.unique(edges[stretch > limit]), rings, edges) >= 0
            out[near] = 0.5 * out[near] + 0.5 * neighbour_mean(out, edges)[near]
            # Kept only while it turns no more faces over than allowed: averaging across the mouth's
            # corners can mix the lips' opposite moves.
            worst = float(edge_stretch(rest, out, edges).max())
            if worst < best[0] and int(_turned(rest, rest + out, tris).sum()) <= flips:
                best = (worst, out.copy())
        if best[0] <= limit:
            break
    return best[1]


def _soften_turns(template, rest, delta, edges, tris, source_turned: np.ndarray, cap: float) -> np.ndarray:
    """``soften_key``'s second part: the key averaged around the faces it turns over that the
    template's key does not, over the faces' own corners first and a ring further next; the first
    step that turns no more faces over than the template's key and stretches no edge past ``cap``
    (the key as it came where none does)."""
    allowed = int(source_turned.sum())
    for rings in range(TURN_RINGS + 1):
        out = delta.copy()
        for _ in range(TURN_STEPS):
            extra = _turned(rest, rest + out, tris) & ~source_turned
            near = ring_distance(template, np.unique(tris[extra]), rings, edges) >= 0
            out[near] = 0.5 * out[near] + 0.5 * neighbour_mean(out, edges)[near]
            if (int(_turned(rest, rest + out, tris).sum()) <= allowed
                    and float(edge_stretch(rest, out, edges).max()) <= cap):
                return out
    return delta
