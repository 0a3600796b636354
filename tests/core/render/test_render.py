"""core.render: face ids against a brute-force reference, barycentrics and
depth, normals, visibility, robustness, gradients (float64 gradcheck)."""

from __future__ import annotations

import math

import pytest
import torch
import trimesh

from bridge import conventions
from core.geometry.camera import Cameras
from core.render import (
    interpolate,
    project_surface_points,
    rasterize,
    render_depth,
    render_normals,
    surface_points,
    visible_points,
)
from core.render import _raster_pytorch3d, _raster_torch
from core.render.rasterize import check_mesh
from core.render.reference import rasterize_naive

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

# World -> OpenCV for a camera on -Y looking at the face (+Y forward, Z up -> y down).
FRONT = [[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]]


def make_cameras(batch, width, height, dtype=torch.float32, device="cpu", dist=0.6, focal=2.0, seed=0, jitter=0.25):
    """Cameras around the front of a head-sized object, slightly rotated per batch item."""
    g = torch.Generator().manual_seed(seed)
    K = torch.tensor([[focal * width, 0.0, width / 2], [0.0, focal * width, height / 2], [0.0, 0.0, 1.0]])
    K = K.expand(batch, 3, 3).clone()
    K[:, :2, 2] += (torch.rand(batch, 2, generator=g) * 4 - 2) * jitter
    R = []
    for _ in range(batch):
        q = torch.cat([torch.ones(1), torch.randn(3, generator=g) * jitter]).double().numpy()
        R.append(torch.tensor(conventions.quaternion_to_rotation(q), dtype=torch.float32) @ torch.tensor(FRONT))
    R = torch.stack(R)
    t = torch.tensor([0.0, 0.0, dist]).expand(batch, 3).clone()
    return Cameras(K.to(device, dtype), R.to(device, dtype), t.to(device, dtype), width, height)


def ellipsoid(subdivisions=2, dtype=torch.float32, device="cpu"):
    m = trimesh.creation.icosphere(subdivisions=subdivisions)
    verts = torch.tensor(m.vertices, dtype=dtype) * torch.tensor([0.08, 0.1, 0.12], dtype=dtype)
    return verts.to(device)[None], torch.tensor(m.faces, dtype=torch.int64, device=device)


def triangle_soup(batch, n_tris, seed, dtype=torch.float32, scale=0.15):
    """Random, intersecting, arbitrarily oriented triangles around the origin."""
    g = torch.Generator().manual_seed(seed)
    centres = (torch.rand(batch, n_tris, 1, 3, generator=g) * 2 - 1) * scale
    offsets = torch.randn(batch, n_tris, 3, 3, generator=g) * scale * 0.3
    verts = (centres + offsets).reshape(batch, n_tris * 3, 3).to(dtype)
    faces = torch.arange(n_tris * 3).reshape(n_tris, 3)
    return verts, faces


# ---------------------------------------------------------------- face ids


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_face_ids_match_brute_force_on_random_soups(seed, device):
    verts, faces = triangle_soup(2, 60, seed)
    cams = make_cameras(2, 48, 36, seed=seed)
    frags = rasterize(verts.to(device), faces.to(device), cams.to(device), backend="torch")
    ref, ambiguous = rasterize_naive(verts, faces, cams)
    got = frags.face_id.cpu().reshape(2, -1)
    assert (ref >= 0).float().mean() > 0.3, "the scene should cover a good part of the image"
    assert ambiguous.float().mean() < 0.05
    mismatched = (got != ref) & ~ambiguous
    assert int(mismatched.sum()) == 0


def test_face_ids_match_brute_force_on_closed_mesh_float64():
    verts, faces = ellipsoid(2, dtype=torch.float64)
    cams = make_cameras(3, 40, 40, dtype=torch.float64, seed=3)
    frags = rasterize(verts, faces, cams, backend="torch")
    ref, ambiguous = rasterize_naive(verts.expand(3, -1, -1), faces, cams)
    assert int(((frags.face_id.reshape(3, -1) != ref) & ~ambiguous).sum()) == 0
    assert frags.face_id.shape == (3, 40, 40)


def test_chunked_rasterisation_gives_the_same_ids(monkeypatch):
    verts, faces = triangle_soup(1, 80, seed=5)
    cams = make_cameras(1, 64, 64)
    whole = rasterize(verts, faces, cams, backend="torch").face_id
    monkeypatch.setattr(_raster_torch, "MAX_CANDIDATES", 50)
    chunked = rasterize(verts, faces, cams, backend="torch").face_id
    assert torch.equal(whole, chunked)


def test_culling_back_faces_keeps_what_a_closed_mesh_shows():
    """An outward-wound closed mesh shows the same faces with its back faces culled; the inside of
    an open one (seen through its hole) is left empty instead."""
    verts, faces = ellipsoid(2)
    cams = make_cameras(2, 48, 40, seed=3)
    drawn = rasterize(verts, faces, cams, backend="torch").face_id
    culled = rasterize(verts, faces, cams, backend="torch", cull_back=True).face_id
    assert torch.equal(drawn, culled) and (drawn >= 0).any()
    # The half of the shell facing the cameras removed: what shows is the far half's inside.
    centre = verts[0].mean(0)
    eyes = -(cams.R.transpose(1, 2) @ cams.t[..., None])[..., 0]  # (B, 3) camera centres
    toward = eyes.mean(0) - centre
    keep = faces[((verts[0][faces].mean(1) - centre) @ toward) < 0]
    open_drawn = rasterize(verts, keep, cams, backend="torch").face_id
    open_culled = rasterize(verts, keep, cams, backend="torch", cull_back=True).face_id
    assert (open_drawn >= 0).sum() > 50 and (open_culled >= 0).sum() < 0.05 * (open_drawn >= 0).sum()


def test_screen_filling_triangle_and_off_screen_geometry():
    cams = make_cameras(1, 32, 24, dist=1.0, jitter=0.0)
    # one huge triangle in front, one far off to the side, one behind the camera
    verts = torch.tensor(
        [[[-50.0, 0.0, -50.0], [50.0, 0.0, -50.0], [0.0, 0.0, 50.0],
          [40.0, 0.0, 0.0], [41.0, 0.0, 0.0], [40.0, 0.0, 1.0],
          [0.0, -3.0, 0.0], [1.0, -3.0, 0.0], [0.0, -3.0, 1.0]]]
    )
    faces = torch.arange(9).reshape(3, 3)
    frags = rasterize(verts, faces, cams, backend="torch")
    assert (frags.face_id == 0).all()
    torch.testing.assert_close(frags.depth, torch.full_like(frags.depth, 1.0), rtol=1e-3, atol=0)


# ---------------------------------------------------------------- barycentrics, depth, normals


@pytest.mark.parametrize("device", DEVICES)
def test_barycentrics_and_depth_reproject_to_pixel_centres(device):
    verts, faces = ellipsoid(3, dtype=torch.float64, device=device)
    cams = make_cameras(2, 50, 40, dtype=torch.float64, device=device, seed=1)
    frags = rasterize(verts, faces, cams, backend="torch")
    mask = frags.mask
    assert mask.float().mean() > 0.2
    torch.testing.assert_close(frags.bary.sum(-1)[mask], torch.ones_like(frags.depth[mask]))
    assert (frags.bary[mask] >= -1e-9).all()
    # the interpolated world point projects onto the pixel centre at the reported depth
    world = interpolate(verts, faces, frags)
    uv, z = cams.project(world.reshape(2, -1, 3))
    rows, cols = torch.meshgrid(torch.arange(40.0), torch.arange(50.0), indexing="ij")
    centres = torch.stack([cols, rows], -1).reshape(-1, 2).to(device, torch.float64) + 0.5
    m = mask.reshape(2, -1)
    torch.testing.assert_close(uv[m], centres.expand(2, -1, -1)[m], atol=1e-8, rtol=0)
    torch.testing.assert_close(z[m], frags.depth.reshape(2, -1)[m])
    assert (frags.depth[~mask] == 0).all() and (frags.bary[~mask] == 0).all()


def test_normals_of_a_sphere_face_the_camera():
    verts, faces = ellipsoid(4, dtype=torch.float64)
    verts = verts / torch.tensor([0.08, 0.1, 0.12], dtype=torch.float64) * 0.1  # a 10 cm sphere
    cams = make_cameras(2, 64, 64, dtype=torch.float64)
    normals, mask = render_normals(verts, faces, cams, backend="torch")
    m = mask.bool()
    assert (normals[m][:, 2] < 0).all(), "visible surfaces face the camera (n_z < 0)"
    torch.testing.assert_close(normals.norm(dim=-1)[m], torch.ones_like(mask[m]))
    # analytic sphere normal at each pixel's surface point, in camera axes
    world = interpolate(verts, faces, rasterize(verts, faces, cams, backend="torch"))
    expected = torch.einsum("bij,bhwj->bhwi", cams.R, world / world.norm(dim=-1, keepdim=True))
    assert (normals[m] - expected[m]).norm(dim=-1).max() < 0.02
    assert (normals[~m] == 0).all()


def test_depth_map_is_camera_z():
    verts, faces = ellipsoid(3)
    cams = make_cameras(1, 48, 48)
    depth, mask = render_depth(verts, faces, cams, backend="torch")
    m = mask.bool()
    # the ellipsoid's front is 0.1 m in front of the centre, which is 0.6 m away
    assert 0.49 < float(depth[m].min()) < 0.51
    assert float(depth[m].max()) < 0.6


# ---------------------------------------------------------------- points and visibility


def test_projected_surface_points_match_conventions():
    verts, faces = ellipsoid(2, dtype=torch.float64)
    cams = make_cameras(2, 64, 48, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    tri = torch.randint(0, faces.shape[0], (30,), generator=g)
    bary = torch.rand(30, 3, generator=g, dtype=torch.float64)
    bary = bary / bary.sum(1, keepdim=True)
    uv, depth = project_surface_points(verts, faces, tri, bary, cams)
    pts = surface_points(verts, faces, tri, bary)
    for b in range(2):
        uv_np, d_np = conventions.project_points_np(pts[0].numpy(), cams.K[b].numpy(), cams.R[b].numpy(), cams.t[b].numpy())
        torch.testing.assert_close(uv[b], torch.from_numpy(uv_np))
        torch.testing.assert_close(depth[b], torch.from_numpy(d_np))


def test_visible_points_on_a_sphere():
    verts, faces = ellipsoid(3, dtype=torch.float64)
    verts = verts / torch.tensor([0.08, 0.1, 0.12], dtype=torch.float64) * 0.1
    cams = make_cameras(2, 128, 128, dtype=torch.float64)
    frags = rasterize(verts, faces, cams, backend="torch")
    vis = visible_points(verts, cams, frags)
    # a sphere point is visible iff its normal faces the camera centre
    centre = -torch.einsum("bji,bj->bi", cams.R, cams.t)
    cos = (verts / 0.1 * torch.nn.functional.normalize(centre[:, None] - verts, dim=-1)).sum(-1)
    assert vis[cos > 0.2].all()
    assert not vis[cos < -0.05].any()
    # points off-screen or behind the camera are not visible
    far = torch.tensor([[[5.0, 0.0, 0.0], [0.0, -1.0, 0.0]]], dtype=torch.float64)
    assert not visible_points(far, cams, frags).any()


def test_one_mesh_many_cameras_equals_separate_renders():
    verts, faces = ellipsoid(2)
    cams = make_cameras(3, 32, 32, seed=7)
    normals, mask = render_normals(verts, faces, cams, backend="torch")
    for b in range(3):
        n_b, m_b = render_normals(verts, faces, cams[b], backend="torch")
        # Bitwise: the fit renders its views as one batch and must see what each view alone shows.
        assert torch.equal(n_b[0], normals[b]) and torch.equal(m_b[0], mask[b])
    joined = Cameras.cat([cams[b] for b in range(3)])
    assert torch.equal(render_normals(verts, faces, joined, backend="torch")[0], normals)
    one = cams[1]
    assert Cameras.cat([one]) is one
    with pytest.raises(ValueError, match="one image size"):
        Cameras.cat([cams[0], cams[1].scaled(0.5)])


# ---------------------------------------------------------------- robustness


def test_degenerate_back_facing_and_behind_camera_geometry_stays_finite():
    cams = make_cameras(1, 32, 32, dtype=torch.float64)
    verts = torch.tensor(
        [[
            [0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0],  # collapsed to a point
            [-0.05, 0.0, 0.0], [-0.05, 0.0, 0.0], [0.05, 0.0, 0.05],  # zero-length edge
            [-0.1, 0.0, -0.1], [0.0, 0.0, -0.05], [0.1, 0.0, 0.0],  # collinear
            [-0.1, 0.01, -0.1], [0.0, 0.01, 0.1], [0.1, 0.01, -0.1],  # back-facing, visible
            [-0.1, -0.65, -0.1], [0.1, -0.65, -0.1], [0.0, -0.65, 0.1],  # behind the camera
            [-0.1, -0.7, -0.1], [0.1, -0.5, -0.1], [0.0, 0.0, 0.1],  # crosses the camera plane
            [3.0, 0.0, 0.0], [3.1, 0.0, 0.0], [3.0, 0.0, 0.1],  # off-screen
        ]],
        dtype=torch.float64,
        requires_grad=True,
    )
    faces = torch.arange(21).reshape(7, 3)
    frags = rasterize(verts, faces, cams, backend="torch")
    ids = set(frags.face_id.unique().tolist())
    assert 3 in ids and ids <= {-1, 3}, ids
    normals, mask = render_normals(verts, faces, cams, backend="torch", fragments=frags)
    depth, _ = render_depth(verts, faces, cams, backend="torch", fragments=frags)
    uv, z = project_surface_points(verts, faces, torch.arange(7), torch.full((7, 3), 1.0 / 3, dtype=torch.float64), cams)
    loss = normals.sum() + depth.sum() + uv.sum() + z.sum()
    assert torch.isfinite(normals).all() and torch.isfinite(depth).all() and torch.isfinite(uv).all()
    loss.backward()
    assert torch.isfinite(verts.grad).all()
    assert verts.grad[0, 9:12].abs().sum() > 0, "the visible back face receives gradients"


def test_bad_inputs_are_reported():
    verts, faces = ellipsoid(1)
    cams = make_cameras(2, 16, 16)
    with pytest.raises(ValueError, match=r"verts must be \(B, V, 3\)"):
        rasterize(verts[0], faces, cams)
    with pytest.raises(ValueError, match="faces must be"):
        rasterize(verts, faces.int(), cams)
    with pytest.raises(ValueError, match="outside"):
        rasterize(verts, faces + 1000, cams)
    with pytest.raises(ValueError, match="batch sizes differ"):
        rasterize(verts.expand(3, -1, -1), faces, cams)
    with pytest.raises(ValueError, match="unknown backend"):
        rasterize(verts, faces, cams, backend="opengl")
    with pytest.raises(ValueError, match="must match"):
        render_normals(verts.double(), faces, cams)
    with pytest.raises(ValueError, match="K must be"):
        Cameras(torch.eye(3), torch.eye(3)[None], torch.zeros(1, 3), 8, 8)
    if not _raster_pytorch3d.AVAILABLE:
        with pytest.raises(ValueError, match="pytorch3d is not installed"):
            rasterize(verts, faces, cams, backend="pytorch3d")


def test_faces_are_read_from_the_device_once_until_they_change():
    from torch.overrides import TorchFunctionMode

    class Reads(TorchFunctionMode):
        """Counts reads of a tensor's value on the host (int() of a min or max)."""

        def __init__(self):
            super().__init__()
            self.n = 0

        def __torch_function__(self, func, types, args=(), kwargs=None):
            if getattr(func, "__name__", "") in ("__int__", "item"):
                self.n += 1
            return func(*args, **(kwargs or {}))

    verts, faces = ellipsoid(1)
    faces = faces.clone()
    cams = make_cameras(1, 16, 16)
    rasterize(verts, faces, cams)
    with Reads() as reads:
        check_mesh(verts, faces)
        check_mesh(verts, faces)
    assert reads.n == 0
    # Changed in place: read again, and refused.
    faces[0, 0] = verts.shape[1]
    with pytest.raises(ValueError, match="outside"):
        rasterize(verts, faces, cams)
    with pytest.raises(ValueError, match="outside"):
        check_mesh(verts[:, :-1], faces.clamp(max=verts.shape[1] - 1))


# ---------------------------------------------------------------- gradients


def small_scene():
    verts, faces = ellipsoid(1, dtype=torch.float64)
    g = torch.Generator().manual_seed(11)
    verts = (verts + 0.01 * torch.randn(verts.shape, generator=g, dtype=torch.float64)).requires_grad_(True)
    cams = make_cameras(2, 14, 12, dtype=torch.float64, dist=0.45)
    return verts, faces, cams


def projected(fn, n_out=24):
    """fn's outputs flattened and multiplied by a fixed random (N, n_out) matrix:
    a full Jacobian check of n_out random projections, far cheaper than one
    backward pass per pixel."""

    def wrapped(*args):
        outs = fn(*args)
        outs = outs if isinstance(outs, tuple) else (outs,)
        flat = torch.cat([o.reshape(-1) for o in outs])
        g = torch.Generator().manual_seed(flat.numel())
        return flat @ torch.randn(flat.numel(), n_out, generator=g, dtype=flat.dtype)

    return wrapped


def test_normal_map_gradients_match_finite_differences():
    verts, faces, cams = small_scene()
    assert rasterize(verts, faces, cams, backend="torch").mask.float().mean() > 0.3
    torch.autograd.gradcheck(
        projected(lambda v: render_normals(v, faces, cams, backend="torch")[0]), (verts,), eps=1e-6, atol=1e-5, rtol=1e-4
    )


def test_depth_gradients_match_finite_differences():
    verts, faces, cams = small_scene()
    torch.autograd.gradcheck(
        projected(lambda v: render_depth(v, faces, cams, backend="torch")[0]), (verts,), eps=1e-6, atol=1e-5, rtol=1e-4
    )


def test_barycentric_and_interpolation_gradients_match_finite_differences():
    verts, faces, cams = small_scene()
    colours = torch.rand(1, verts.shape[1], 2, dtype=torch.float64, requires_grad=True)

    def shade(v, c):
        frags = rasterize(v, faces, cams, backend="torch")
        return interpolate(c, faces, frags), frags.bary

    torch.autograd.gradcheck(projected(shade), (verts, colours), eps=1e-6, atol=1e-5, rtol=1e-4)


def test_projection_gradients_match_finite_differences():
    verts, faces, cams = small_scene()
    tri = torch.tensor([0, 5, 17, 33])
    bary = torch.tensor([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]], dtype=torch.float64)
    K = cams.K.clone().requires_grad_(True)
    t = cams.t.clone().requires_grad_(True)

    def project(v, K, t):
        return project_surface_points(v, faces, tri, bary, Cameras(K, cams.R, t, cams.width, cams.height))

    torch.autograd.gradcheck(project, (verts, K, t), eps=1e-6, atol=1e-6, rtol=1e-5)


# ---------------------------------------------------------------- backends


@pytest.mark.skipif(not _raster_pytorch3d.AVAILABLE, reason="pytorch3d is not installed (no PyPI wheel for this platform)")
@pytest.mark.parametrize("device", DEVICES)
def test_pytorch3d_backend_agrees_with_builtin(device):
    verts, faces = ellipsoid(3, device=device)
    cams = make_cameras(2, 64, 48, device=device, seed=2)
    ours = rasterize(verts, faces, cams, backend="torch")
    theirs = rasterize(verts, faces, cams, backend="pytorch3d")
    _, ambiguous = rasterize_naive(verts.expand(2, -1, -1), faces, cams)
    differ = (ours.face_id != theirs.face_id).reshape(2, -1) & ~ambiguous
    assert int(differ.sum()) == 0
    n_ours, _ = render_normals(verts, faces, cams, backend="torch")
    n_theirs, _ = render_normals(verts, faces, cams, backend="pytorch3d")
    same = (ours.face_id == theirs.face_id)
    torch.testing.assert_close(n_ours[same], n_theirs[same])


def test_normal_images_encode_with_conventions():
    verts, faces = ellipsoid(2)
    normals, mask = render_normals(verts, faces, make_cameras(1, 24, 24), backend="torch")
    img = conventions.encode_normals(normals[0].detach().numpy(), mask=mask[0].numpy() > 0)
    assert img.dtype.name == "uint8" and img.shape == (24, 24, 3)
    decoded = conventions.decode_normals(img)
    m = mask[0].bool().numpy()
    assert math.isclose(float(abs(decoded[m] - normals[0].detach().numpy()[m]).max()), 0.0, abs_tol=0.01)


def test_bench_ellipsoid_is_a_closed_outward_mesh():
    from core.bench.render import ellipsoid as bench_ellipsoid

    verts, faces = bench_ellipsoid(12, 20, radii=[0.08, 0.1, 0.12], center=[0.0, 0.0, 0.7])
    assert verts.shape == ((12 - 2) * 20 + 2, 3)
    mesh = trimesh.Trimesh(verts, faces, process=False)
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert mesh.volume > 0, "faces wind outward"
    assert abs(mesh.volume - 4 / 3 * math.pi * 0.08 * 0.1 * 0.12) < 0.2 * mesh.volume
