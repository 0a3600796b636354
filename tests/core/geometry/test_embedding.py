"""core.geometry.embedding on synthetic data: known meshes, known cameras, projected points."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from core.geometry import embedding as emb
from core.geometry.camera import Cameras
from core.geometry.mesh_layout import fan_triangulate, surface_points


def closest_point_reference(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Slow, obviously correct: the plane projection if it is inside, else the best edge point."""
    n = np.cross(b - a, c - a)
    q = p - np.dot(p - a, n) / np.dot(n, n) * n
    # Barycentrics of q by solving the 2x2 normal equations.
    m = np.array([[np.dot(b - a, b - a), np.dot(b - a, c - a)], [np.dot(b - a, c - a), np.dot(c - a, c - a)]])
    v, w = np.linalg.solve(m, [np.dot(q - a, b - a), np.dot(q - a, c - a)])
    if v >= 0 and w >= 0 and v + w <= 1:
        return q
    best = None
    for s, e in ((a, b), (b, c), (c, a)):
        t = min(max(np.dot(p - s, e - s) / np.dot(e - s, e - s), 0.0), 1.0)
        x = s + t * (e - s)
        if best is None or np.linalg.norm(p - x) < np.linalg.norm(p - best):
            best = x
    return best


def grid_mesh(n: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A bumpy height field: verts (n*n, 3) float64, tris (2(n-1)^2, 3) int64."""
    rng = np.random.default_rng(seed)
    x, y = np.meshgrid(np.linspace(-0.1, 0.1, n), np.linspace(-0.1, 0.1, n), indexing="ij")
    z = 0.02 * np.sin(20 * x) * np.cos(15 * y) + 0.002 * rng.standard_normal(x.shape)
    verts = np.stack([x.ravel(), z.ravel(), y.ravel()], axis=1)  # a wall facing -Y, like a face
    ids = np.arange(n * n).reshape(n, n)
    quads = np.stack([ids[:-1, :-1], ids[1:, :-1], ids[1:, 1:], ids[:-1, 1:]], axis=-1).reshape(-1, 4)
    tris, _ = fan_triangulate(quads)
    return verts, tris


def test_closest_points_match_reference():
    rng = np.random.default_rng(1)
    tri_corners = rng.standard_normal((30, 3, 3))
    points = 2.0 * rng.standard_normal((30, 3))
    bary = emb.closest_points_on_triangles(points[:, None], *(tri_corners[None, :, k] for k in range(3)))
    assert bary.shape == (30, 30, 3)
    assert np.all(bary >= -1e-12) and np.all(bary <= 1 + 1e-12)
    np.testing.assert_allclose(bary.sum(-1), 1.0, atol=1e-12)
    got = np.einsum("ptk,tkd->ptd", bary, tri_corners)
    for p, t in itertools.product(range(30), range(30)):
        expected = closest_point_reference(points[p], *tri_corners[t])
        np.testing.assert_allclose(got[p, t], expected, atol=1e-9)


def test_closest_point_regions_are_all_exercised():
    a, b, c = np.array([0.0, 0, 0]), np.array([1.0, 0, 0]), np.array([0.0, 1, 0])
    cases = {
        (-1.0, -1.0, 1.0): [1, 0, 0],  # vertex a
        (2.0, -0.5, 0.0): [0, 1, 0],  # vertex b
        (-0.5, 2.0, 0.0): [0, 0, 1],  # vertex c
        (0.5, -1.0, 0.3): [0.5, 0.5, 0],  # edge ab
        (-1.0, 0.25, 0.3): [0.75, 0, 0.25],  # edge ac
        (1.0, 1.0, -0.2): [0, 0.5, 0.5],  # edge bc
        (0.2, 0.3, 5.0): [0.5, 0.2, 0.3],  # interior
    }
    for p, expected in cases.items():
        got = emb.closest_points_on_triangles(np.array(p), a, b, c)
        np.testing.assert_allclose(got, expected, atol=1e-12, err_msg=str(p))


def test_snap_is_exact_for_points_on_the_surface():
    verts, tris = grid_mesh()
    rng = np.random.default_rng(2)
    tri = rng.choice(len(tris), 50, replace=False)
    bary = rng.dirichlet([4.0, 4.0, 4.0], 50)  # well inside, so the triangle is unique
    points = surface_points(verts, tris, tri, bary)
    snap = emb.snap_to_surface(points, verts, tris, chunk=7)
    np.testing.assert_array_equal(snap.tri, tri)
    np.testing.assert_allclose(snap.bary, bary, atol=1e-9)
    np.testing.assert_allclose(snap.points, points, atol=1e-12)
    assert snap.distance.max() < 1e-12


def test_snap_finds_nearest_allowed_triangle():
    verts, tris = grid_mesh()
    rng = np.random.default_rng(3)
    points = rng.uniform(-0.12, 0.12, (30, 3))
    allowed = np.zeros(len(tris), dtype=bool)
    allowed[::3] = True
    snap = emb.snap_to_surface(points, verts, tris, allowed)
    assert allowed[snap.tri].all()
    # Brute force over the allowed triangles with the reference closest point.
    for p, d in zip(points, snap.distance):
        best = min(np.linalg.norm(p - closest_point_reference(p, *verts[tris[t]])) for t in np.flatnonzero(allowed))
        assert d == pytest.approx(best, abs=1e-12)
    by_ids = emb.snap_to_surface(points, verts, tris, np.flatnonzero(allowed))
    np.testing.assert_array_equal(by_ids.tri, snap.tri)


def test_snap_rejects_bad_input():
    verts, tris = grid_mesh(4)
    with pytest.raises(ValueError, match="NaN"):
        emb.snap_to_surface(np.full((1, 3), np.nan), verts, tris)
    with pytest.raises(ValueError, match="outside"):
        emb.snap_to_surface(np.zeros((1, 3)), verts, tris + 100)
    with pytest.raises(ValueError, match="no triangles"):
        emb.snap_to_surface(np.zeros((1, 3)), verts, tris, np.zeros(len(tris), dtype=bool))
    with pytest.raises(ValueError, match=r"shape \(N, 3\)"):
        emb.snap_to_surface(np.zeros((1, 2)), verts, tris)


def five_views(size: int = 384) -> list[Cameras]:
    focal = 85.0 / 36.0 * size
    target = (0.0, -0.1, 0.7)
    return [Cameras.orbit(target, 0.75, yaw, pitch, focal, size, size) for yaw, pitch in
            ((0, 0), (20, 0), (-20, 0), (0, 15), (0, -15))]


def test_triangulation_recovers_projected_points():
    rng = np.random.default_rng(4)
    points = np.array([0.0, -0.1, 0.7]) + rng.uniform(-0.08, 0.08, (100, 3))
    cameras = five_views()
    detections = np.stack([emb.project_points(cam, points)[0] for cam in cameras])
    result = emb.triangulate(cameras, detections)
    np.testing.assert_allclose(result.points, points, atol=1e-9)
    assert result.ray_residual.max() < 1e-9 and result.reprojection_px.max() < 1e-6
    assert np.all(result.views_used == 5)


def test_triangulation_ignores_invalid_views_and_reports_residuals():
    rng = np.random.default_rng(5)
    points = np.array([0.0, -0.1, 0.7]) + rng.uniform(-0.05, 0.05, (20, 3))
    cameras = five_views()
    detections = np.stack([emb.project_points(cam, points)[0] for cam in cameras])
    valid = np.ones(detections.shape[:2], dtype=bool)
    detections[1, :5] += 40.0  # a wrong detection...
    valid[1, :5] = False  # ...that is marked invalid
    detections[2, 5:10] = np.nan  # missing detections count as invalid
    detections[3, 10:15] += 3.0  # noise that is used: must show in the residuals
    result = emb.triangulate(cameras, detections, valid)
    np.testing.assert_allclose(result.points[:10], points[:10], atol=1e-9)
    np.testing.assert_array_equal(result.views_used[:15], [4] * 10 + [5] * 5)
    assert result.ray_residual[:10].max() < 1e-9
    assert np.all(result.ray_residual[10:15] > 1e-4) and np.all(result.reprojection_px[10:15] > 1.0)


def test_derive_embedding_end_to_end_and_missing_views():
    verts, tris = grid_mesh()
    verts = verts + np.array([0.0, -0.1, 0.7])
    rng = np.random.default_rng(6)
    tri = rng.choice(len(tris), 30, replace=False)
    bary = rng.dirichlet([4.0, 4.0, 4.0], 30)
    points = surface_points(verts, tris, tri, bary)
    cameras = five_views()
    detections = np.stack([emb.project_points(cam, points)[0] for cam in cameras])
    result = emb.derive_embedding(verts, tris, cameras, detections)
    np.testing.assert_array_equal(result.snap.tri, tri)
    np.testing.assert_allclose(result.snap.bary, bary, atol=1e-7)

    valid = np.zeros(detections.shape[:2], dtype=bool)
    valid[0] = True
    valid[1, 3:] = True
    with pytest.raises(ValueError, match=r"3 landmarks were not seen in two usable views \(ids \[0, 1, 2\]"):
        emb.derive_embedding(verts, tris, cameras, detections, valid)


def test_camera_adapters():
    cam = Cameras.orbit((0.0, 0.0, 0.0), 1.0, 0.0, 0.0, 500.0, 200, 100)
    center = emb.camera_center(cam)
    np.testing.assert_allclose(center, [0.0, -1.0, 0.0], atol=1e-12)
    pix, depth = emb.project_points(cam, np.array([[0.0, 0.0, 0.0], [0.1, 0.0, 0.0], [0.0, 0.0, 0.1]]))
    np.testing.assert_allclose(pix[0], [100.0, 50.0])  # principal point at the image centre
    assert pix[1, 0] > 100.0  # the subject's left (+X) is image right in a front view
    assert pix[2, 1] < 50.0  # up (+Z) is image up
    np.testing.assert_allclose(depth, 1.0)
    # Rays through pixels pass through the points they came from.
    points = np.array([[0.03, 0.2, -0.05], [-0.1, 0.1, 0.08]])
    pix, depth = emb.project_points(cam, points)
    dirs = emb.camera_rays(cam, pix)
    along = np.sum((points - center) * dirs, axis=1)
    np.testing.assert_allclose(center + along[:, None] * dirs, points, atol=1e-12)
    again = emb.camera_from_json(emb.camera_to_json(cam))
    np.testing.assert_array_equal(again.R, cam.R)
    assert (again.width, again.height) == (200, 100)


def test_camera_validation():
    good = Cameras.orbit((0.0, 0.0, 0.0), 1.0, 0.0, 0.0, 500.0, 200, 100)
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        emb.camera_rays(good, np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"detections must have shape \(2, L, 2\)"):
        emb.triangulate([good, good], np.zeros((3, 4, 2)))


def test_chain_edges_orders_loops_and_paths():
    loop = [(5, 9), (9, 2), (2, 7), (7, 5)]
    path = [(30, 31), (32, 31), (33, 32)]
    chains = emb.chain_edges(loop + path)
    assert chains == [([2, 7, 5, 9], True), ([30, 31, 32, 33], False)]
    assert emb.rotate_loop([2, 7, 5, 9], 5) == [5, 9, 2, 7]
    assert emb.rotate_loop([2, 7, 5, 9], 5, 7) == [5, 7, 2, 9]
    with pytest.raises(ValueError, match="not next to"):
        emb.rotate_loop([2, 7, 5, 9], 5, 2)
    with pytest.raises(ValueError, match="branch"):
        emb.chain_edges([(0, 1), (0, 2), (0, 3)])


def test_chain_edges_on_mediapipe_contours():
    fmc = pytest.importorskip("mediapipe.python.solutions.face_mesh_connections")
    (oval, closed), = emb.chain_edges(fmc.FACEMESH_FACE_OVAL)
    assert closed and len(oval) == 36 and oval[0] == min(oval)
    edges = {frozenset(e) for e in fmc.FACEMESH_FACE_OVAL}
    assert all(frozenset((oval[k], oval[k - 1])) in edges for k in range(36))
    lips = emb.chain_edges(fmc.FACEMESH_LIPS)
    assert [len(ids) for ids, _ in lips] == [20, 20]




def sphere_mesh(radius: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """A closed, outward-oriented icosphere: verts (V, 3) float64, tris (T, 3) int64."""
    trimesh = pytest.importorskip("trimesh")
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=radius)
    return np.asarray(sphere.vertices, dtype=np.float64), np.asarray(sphere.faces, dtype=np.int64)


def test_ray_hits_matches_plane_intersection():
    verts = np.array([[-1.0, 0.0, -1.0], [1.0, 0.0, -1.0], [0.0, 0.0, 1.0]])  # a triangle in the plane y = 0
    tris = np.array([[0, 1, 2]])
    origins = np.array([[0.0, -1.0, 0.0], [0.0, -1.0, 0.0], [0.9, -1.0, 0.9], [0.0, 1.0, 0.0], [0.0, -1.0, 0.0]])
    dirs = np.array([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, -1.0, 0.0]])
    max_dist = np.array([2.0, 0.5, 2.0, 2.0, 2.0])
    # hit; stops short; misses beside the triangle; points away; points away from the start.
    np.testing.assert_array_equal(emb.ray_hits(origins, dirs, max_dist, verts, tris), [True, False, False, False, False])


def test_visible_views_faces_and_occlusion():
    verts, tris = sphere_mesh()
    front = Cameras.orbit((0.0, 0.0, 0.0), 1.0, 0.0, 0.0, 500.0, 64, 64)
    back = Cameras.orbit((0.0, 0.0, 0.0), 1.0, 180.0, 0.0, 500.0, 64, 64)
    points = np.array([[0.0, -0.1, 0.0], [0.0, 0.1, 0.0], [0.1, 0.0, 0.0]])
    normals = points / 0.1
    vis = emb.visible_views(points, normals, [front, back], verts, tris)
    np.testing.assert_array_equal(vis, [[True, False, False], [False, True, False]])  # the side point is grazing
    # A plate between the front camera and the sphere hides the front point.
    plate = np.array([[-0.05, -0.3, -0.05], [0.05, -0.3, -0.05], [0.0, -0.3, 0.05]])
    all_verts = np.concatenate([verts, plate])
    all_tris = np.concatenate([tris, [[len(verts), len(verts) + 1, len(verts) + 2]]])
    vis = emb.visible_views(points[:1], normals[:1], [front], all_verts, all_tris)
    assert not vis[0, 0]


def test_barycentric_grid():
    grid = emb.barycentric_grid(4)
    assert grid.shape == (15, 3)
    np.testing.assert_allclose(grid.sum(axis=1), 1.0)
    assert len({tuple(g) for g in np.round(grid * 4).astype(int).tolist()}) == 15
    with pytest.raises(ValueError):
        emb.barycentric_grid(0)


def test_refine_on_surface_reduces_reprojection_error():
    verts, tris = grid_mesh(n=30)
    verts = verts + np.array([0.0, -0.1, 0.7])
    rng = np.random.default_rng(7)
    tri = rng.choice(len(tris), 20, replace=False)
    truth = surface_points(verts, tris, tri, rng.dirichlet([3.0, 3.0, 3.0], 20))
    cameras = five_views()
    detections = np.stack([emb.project_points(cam, truth)[0] for cam in cameras])
    used = np.ones(detections.shape[:2], dtype=bool)
    # Depth errors: triangulated points pushed along a slanted direction, then snapped.
    origin = truth + 0.003 * np.array([0.5, 1.0, 0.3]) / np.linalg.norm([0.5, 1.0, 0.3])
    start = emb.snap_to_surface(origin, verts, tris)

    def rms(points):
        return np.sqrt(np.mean([np.sum((emb.project_points(c, points)[0] - d) ** 2, axis=1) for c, d in zip(cameras, detections)], axis=0))

    refined = emb.refine_on_surface(start, origin, cameras, detections, used, verts, tris, subdivisions=16)
    assert np.all(rms(refined.points) <= rms(start.points) + 1e-12)
    assert np.median(rms(refined.points)) < 0.5 * np.median(rms(start.points))
    assert np.median(np.linalg.norm(refined.points - truth, axis=1)) < 0.6e-3
    np.testing.assert_allclose(refined.distance, np.linalg.norm(refined.points - origin, axis=1))
    np.testing.assert_allclose(surface_points(verts, tris, refined.tri, refined.bary), refined.points)
    # Kept points stay; no point moves farther than max_move.
    keep = np.zeros(20, dtype=bool)
    keep[:5] = True
    limited = emb.refine_on_surface(start, origin, cameras, detections, used, verts, tris, max_move=1e-3, keep=keep)
    np.testing.assert_array_equal(limited.points[:5], start.points[:5])
    assert np.linalg.norm(limited.points - start.points, axis=1).max() <= 1e-3 + 1e-12


def _all_pairs_closest(points, verts, tris):
    corners = verts[tris]
    a, b, c = (corners[None, :, k] for k in range(3))
    bary = emb.closest_points_on_triangles(points[:, None], a, b, c)
    closest = bary[..., 0:1] * a + bary[..., 1:2] * b + bary[..., 2:3] * c
    return np.sqrt(((closest - points[:, None]) ** 2).sum(-1).min(1))


def test_pruned_snap_and_rays_agree_with_trying_every_triangle():
    """Snapping and ray tests try only nearby triangles; on a bumpy closed mesh, from near and
    far points and from several eyes, they give what testing every triangle gives."""
    rng = np.random.default_rng(5)
    u, v = np.meshgrid(np.linspace(0, np.pi, 14), np.linspace(0, 2 * np.pi, 20, endpoint=False), indexing="ij")
    r = 0.1 * (1 + 0.2 * np.sin(3 * u) * np.cos(2 * v))
    verts = np.stack([r * np.sin(u) * np.cos(v), r * np.sin(u) * np.sin(v), r * np.cos(u)], -1).reshape(-1, 3)
    i, j = np.meshgrid(np.arange(13), np.arange(20), indexing="ij")
    p00, p01 = i * 20 + j, i * 20 + (j + 1) % 20
    p10, p11 = p00 + 20, p01 + 20
    tris = np.concatenate([np.stack([p00, p10, p11], -1).reshape(-1, 3), np.stack([p00, p11, p01], -1).reshape(-1, 3)])
    points = np.concatenate([verts[rng.integers(0, len(verts), 60)] + rng.normal(0, 0.01, (60, 3)),
                             rng.normal(0, 0.5, (10, 3))])
    snap = emb.snap_to_surface(points, verts, tris, chunk=1)
    np.testing.assert_allclose(snap.distance, _all_pairs_closest(points, verts, tris), atol=1e-12)
    corners = verts[tris]
    for eye in ([0.0, -0.6, 0.05], [0.4, 0.3, -0.2], [0.0, 0.0, 0.02]):
        to = np.asarray(eye) - points
        dist = np.linalg.norm(to, axis=1)
        dirs = -to / dist[:, None]
        shared = emb.ray_hits(np.broadcast_to(eye, points.shape), dirs, dist - 1e-3, verts, tris)
        rid = np.repeat(np.arange(len(points)), len(tris))
        tid = np.tile(np.arange(len(tris)), len(points))
        every = np.zeros(len(points), bool)
        every[rid[emb._segment_hits(np.broadcast_to(eye, (len(rid), 3)), dirs[rid], (dist - 1e-3)[rid],
                                    corners[tid])]] = True
        np.testing.assert_array_equal(shared, every)
        assert 0 < shared.sum() < len(points)
