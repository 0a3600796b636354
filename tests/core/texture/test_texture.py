"""Texture extraction: UV rasterisation, round trips through synthetic renders
with known textures, visibility, seams, shading removal, hole fill, detail normals."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from core.geometry.camera import Cameras
from core.template import random_template
from core.texture import UVMesh, extract_textures, preview_image, rasterize_uv, render_textured, studio_light
from core.texture.detail import detail_normals, soft_light
from core.texture.fill import pad_islands, poisson_fill
from core.texture.synthetic import orbit_camera, pattern_texture, skin_texture, uv_sphere

RENDER = 384
SIZE = 256


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # The machine is shared; one thread avoids oversubscription stalls.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def sphere():
    return uv_sphere(radius=0.1, rings=32, segments=64)


def _render(mesh, verts, cam, texture, light=None):
    image, mask = render_textured(mesh, torch.as_tensor(verts), cam, texture, None, light)
    return image, mask


def _levels(a, b):
    return np.abs(a.astype(np.float64) - b.astype(np.float64))


def test_uv_mesh_from_template_matches_corner_loop():
    t = random_template(seed=3, grid=5)
    mesh = UVMesh.from_template(t)
    for k in range(0, len(t.tris), 7):
        f = t.tri_poly[k]
        corners = range(t.poly_start[f], t.poly_start[f + 1])
        for c in range(3):
            corner = next(i for i in corners if t.poly_verts[i] == t.tris[k, c])
            np.testing.assert_array_equal(mesh.tri_uvs[k, c], t.uvs[corner])


def test_rasterize_uv_barycentrics_reproduce_texel_centres(sphere):
    _, mesh = sphere
    uvs = torch.as_tensor(mesh.tri_uvs)
    tx = rasterize_uv(uvs, 128)
    uv = (uvs[tx.tri].double() * tx.bary.double()[..., None]).sum(1)
    row, col = tx.index // 128, tx.index % 128
    centre = torch.stack([(col + 0.5) / 128, 1.0 - (row + 0.5) / 128], 1).double()
    assert torch.allclose(uv, centre, atol=1e-5)
    assert (tx.bary >= -1e-5).all()
    # The sphere's layout covers the unit square.
    assert tx.index.numel() == 128 * 128


def test_round_trip_known_texture(sphere):
    """texel -> surface -> image: an unlit render of a known texture comes back."""
    verts, mesh = sphere
    tex = skin_texture(SIZE)
    cam = orbit_camera(0, 0, 0.5, RENDER, RENDER)
    image, _ = _render(mesh, verts, cam, tex)
    maps = extract_textures(mesh, verts, cam, [image], size=SIZE, remove_shading=False)
    sure = maps.coverage >= 0.999
    assert sure.mean() > 0.08
    err = _levels(maps.albedo[sure], tex[sure])
    # Mean error under one 8-bit level on confidently seen texels.
    assert err.mean() < 1.0, err.mean()
    assert np.percentile(err, 99) <= 6


def test_shading_removal_recovers_albedo(sphere):
    verts, mesh = sphere
    tex = skin_texture(SIZE, seed=1)
    cam = orbit_camera(0, 0, 0.5, RENDER, RENDER)
    image, _ = _render(mesh, verts, cam, tex, studio_light(cam))
    maps = extract_textures(mesh, verts, cam, [image], size=SIZE)
    sure = maps.coverage >= 0.999
    before = _levels(maps.observed[sure], tex[sure]).mean()
    after = _levels(maps.albedo[sure], tex[sure]).mean()
    assert before > 4.0  # the light really shades the render
    assert after < 1.5 and after < 0.2 * before, (before, after)


def test_visibility_on_self_occluding_view():
    """A near quad hides part of a far quad: hidden texels take nothing from the photo."""
    a, b = 0.03, 0.1
    near = np.array([[-a, -0.1, -a], [a, -0.1, -a], [a, -0.1, a], [-a, -0.1, a]])
    far = np.array([[-b, 0.1, -b], [b, 0.1, -b], [b, 0.1, b], [-b, 0.1, b]])
    verts = np.concatenate([near, far]).astype(np.float32)
    quad_uv = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float64)
    # Near quad in the left half of the map, far quad in the right half.
    uv_near = quad_uv * [0.45, 0.9] + [0.02, 0.05]
    uv_far = quad_uv * [0.45, 0.9] + [0.52, 0.05]
    tris = np.array([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]])
    tri_uvs = np.stack([uv_near[[0, 1, 2]], uv_near[[0, 2, 3]], uv_far[[0, 1, 2]], uv_far[[0, 2, 3]]])
    mesh = UVMesh(tris, tri_uvs.astype(np.float32), 8)
    tex = np.zeros((SIZE, SIZE, 3), np.uint8)
    tex[:, : SIZE // 2] = (220, 40, 40)
    tex[:, SIZE // 2:] = (40, 200, 60)
    # Principal point off the image centre: quad diagonals do not run exactly through pixel centres.
    cam = orbit_camera(0, 0, 0.6, RENDER, RENDER)
    cam = Cameras(cam.K + torch.tensor([[[0, 0, 0.37], [0, 0, 0.21], [0, 0, 0]]]), cam.R, cam.t, RENDER, RENDER)
    image, _ = _render(mesh, verts, cam, tex)
    maps = extract_textures(mesh, verts, cam, [image], size=SIZE, remove_shading=False)

    # Analytic shadow: a far-quad point is hidden when the ray to the camera crosses the near quad.
    c = (np.arange(SIZE) + 0.5) / SIZE
    u, v = np.meshgrid(c, 1.0 - c, indexing="xy")
    s = (u - 0.52) / 0.45
    r = (v - 0.05) / 0.9
    on_far = (s > 0) & (s < 1) & (r > 0) & (r < 1)
    x, z = -b + 2 * b * s, -b + 2 * b * r
    # Camera at y = -0.6: the ray from (x, 0.1, z) meets y = -0.1 at 0.5/0.7 of the way back.
    k = 0.5 / 0.7
    hidden = on_far & (np.abs(x * k) < a) & (np.abs(z * k) < a)
    margin = 3.0 / SIZE * 2 * b  # three texels
    deep = on_far & (np.abs(x * k) < a - margin) & (np.abs(z * k) < a - margin)
    clear = on_far & ~((np.abs(x * k) < a + margin) & (np.abs(z * k) < a + margin))
    assert hidden.sum() > 500
    seen = maps.observed.sum(-1) > 0
    assert not seen[deep].any()
    assert seen[clear & (s > 0.02) & (s < 0.98) & (r > 0.02) & (r < 0.98)].all()
    # No red (the occluder's colour) leaks into the far quad's texture.
    assert (maps.observed[on_far & seen][:, 0] < 100).all()


def test_seams_have_no_visible_step(sphere):
    """Looking straight at the UV seam: the re-rendered texture matches the truth across it."""
    verts, mesh = sphere
    tex = pattern_texture(SIZE)  # periodic in u: no step in the truth
    cam = orbit_camera(180, 0, 0.5, RENDER, RENDER)
    photo, mask = _render(mesh, verts, cam, tex)
    maps = extract_textures(mesh, verts, cam, [photo], size=SIZE, remove_shading=False)
    again, _ = _render(mesh, verts, cam, maps.albedo)
    # The seam (u = 0/1, at +Y) projects onto the centre column: it is re-rendered no worse than
    # bands left and right of it.
    rows = slice(RENDER // 2 - 40, RENDER // 2 + 40)
    err = _levels(again, photo).max(-1)
    seam = err[rows, RENDER // 2 - 3: RENDER // 2 + 3]
    c = RENDER // 2
    others = np.concatenate([err[rows, c - 40: c - 34], err[rows, c + 34: c + 40]], 1)
    assert mask[rows, RENDER // 2 - 40: RENDER // 2 + 40].all()
    assert seam.max() <= others.max() + 2, (seam.max(), others.max())
    assert seam.mean() <= others.mean() + 0.5, (seam.mean(), others.mean())
    # Horizontal steps across the seam are no larger than the truth's.
    step = _levels(again[:, 1:], again[:, :-1]).max(-1)
    truth = _levels(photo[:, 1:], photo[:, :-1]).max(-1)
    seam_cols = slice(RENDER // 2 - 3, RENDER // 2 + 3)
    assert step[rows, seam_cols].max() <= truth[rows, seam_cols].max() + 2
    # Texels on either side of the seam in the map agree.
    sure = (maps.coverage[:, 0] > 0.99) & (maps.coverage[:, -1] > 0.99)
    assert sure.sum() > SIZE // 4
    assert _levels(maps.albedo[sure, 0], maps.albedo[sure, -1]).mean() < 3.0


def test_holes_filled_smoothly_towards_skin_tone(sphere):
    verts, mesh = sphere
    tex = skin_texture(SIZE, seed=2, spots=0)
    cam = orbit_camera(0, 0, 0.5, RENDER, RENDER)
    image, _ = _render(mesh, verts, cam, tex)
    maps = extract_textures(mesh, verts, cam, [image], size=SIZE, remove_shading=False)
    alb = maps.albedo.astype(np.float64)
    tone = np.median(alb[maps.coverage >= 0.999], axis=0)
    # The back of the sphere (u near 0 or 1, mid latitudes) was never seen.
    back = np.zeros((SIZE, SIZE), bool)
    back[SIZE // 4: 3 * SIZE // 4, : SIZE // 10] = True
    back[SIZE // 4: 3 * SIZE // 4, -SIZE // 10:] = True
    assert (maps.coverage[back] == 0).all()
    assert np.abs(alb[back] - tone).max() < 6
    # Filled and transition texels: no step larger than the texture's own detail (about 4 levels per texel).
    filled = maps.coverage < 0.999
    dx = np.abs(alb[:, 1:] - alb[:, :-1]).max(-1)
    inner = filled[:, 1:] & filled[:, :-1]
    assert dx[inner].max() <= 6


def test_poisson_fill_between_two_known_columns_is_linear():
    S = 16
    values = np.zeros((S, S, 1), np.float32)
    values[:, -1] = 1.0
    known = np.zeros((S, S), bool)
    known[:, 0] = known[:, -1] = True
    island = np.ones((S, S), bool)
    out = poisson_fill(values, known, island, np.full((S, S, 1), 0.3, np.float32), screening=0.0)
    np.testing.assert_allclose(out[..., 0], np.tile(np.linspace(0, 1, S), (S, 1)), atol=1e-5)
    # Islands do not couple: a separate island with no data relaxes to the guide.
    island2 = island.copy()
    island2[:, S // 2] = False
    known2 = known.copy()
    known2[:, -1] = False
    out2 = poisson_fill(values, known2, island2, np.full((S, S, 1), 0.3, np.float32), screening=0.01)
    np.testing.assert_allclose(out2[:, S // 2 + 1:, 0], 0.3, atol=1e-5)


def test_pad_islands_copies_nearest():
    img = np.zeros((8, 8, 3), np.float32)
    img[2:4, 2:4] = 1.0
    island = np.zeros((8, 8), bool)
    island[2:4, 2:4] = True
    out = pad_islands(img, island)
    assert (out == 1.0).all()


def test_detail_normals_follow_luminance_gradients():
    S = 64
    island = np.ones((S, S), bool)
    flat = detail_normals(np.full((S, S, 3), 0.5, np.float32), island)
    np.testing.assert_allclose(flat, np.broadcast_to([0, 0, 1], flat.shape), atol=1e-6)
    ramp_u = np.broadcast_to(np.linspace(0.2, 0.8, S)[None, :, None], (S, S, 3)).astype(np.float32)
    n = detail_normals(ramp_u, island)[8:-8, 8:-8]
    # Brighter toward +u reads as higher toward +u: the normal leans to -u.
    assert (n[..., 0] < -0.01).all() and np.abs(n[..., 1]).max() < 1e-4
    ramp_v = np.ascontiguousarray(ramp_u.transpose(1, 0, 2)[::-1])  # brighter toward the top (+v)
    n = detail_normals(ramp_v, island)[8:-8, 8:-8]
    assert (n[..., 1] < -0.01).all() and np.abs(n[..., 0]).max() < 1e-4
    np.testing.assert_allclose(np.linalg.norm(n, axis=-1), 1.0, atol=1e-5)
    a = np.linspace(0, 1, 11)
    np.testing.assert_allclose(soft_light(a, np.full_like(a, 0.5)), a)


def test_two_views_with_different_exposure_agree(sphere):
    verts, mesh = sphere
    tex = skin_texture(SIZE, seed=4)
    cams = [orbit_camera(-35, 0, 0.5, RENDER, RENDER), orbit_camera(35, 0, 0.5, RENDER, RENDER)]
    images = [_render(mesh, verts, c, tex)[0] for c in cams]
    images[1] = np.round(images[1] * 0.8).astype(np.uint8)
    maps = extract_textures(mesh, verts, cams, images, size=SIZE, remove_shading=False)
    sure = maps.coverage >= 0.999
    # One gain per channel maps the truth to the albedo (the views were matched to each other).
    ratio = (maps.albedo[sure].astype(np.float64) + 0.5) / (tex[sure].astype(np.float64) + 0.5)
    spread = np.percentile(ratio, 95, axis=0) - np.percentile(ratio, 5, axis=0)
    assert (spread < 0.06).all(), spread
    # One batched Cameras gives the same maps as a list of views.
    batched = Cameras(torch.cat([c.K for c in cams]), torch.cat([c.R for c in cams]), torch.cat([c.t for c in cams]),
                      RENDER, RENDER)
    again = extract_textures(mesh, verts, batched, images, size=SIZE, remove_shading=False)
    assert np.array_equal(again.albedo, maps.albedo)


def test_material_preview_and_files(sphere, tmp_path):
    verts, mesh = sphere
    tex = skin_texture(SIZE, seed=5)
    cam = orbit_camera(0, 0, 0.5, RENDER, RENDER)
    light = studio_light(cam)
    photo, mask = _render(mesh, verts, cam, tex, light)
    maps = extract_textures(mesh, verts, cam, [photo], size=SIZE)
    material = maps.to_material()
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(material.base_color_png))), maps.albedo)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(material.normal_png))), maps.normal)
    paths = maps.save(tmp_path)
    assert Image.open(paths["albedo"]).size == (SIZE, SIZE) and paths["normal"].exists()
    pv = preview_image(mesh, verts, cam, photo, maps)
    assert pv.shape == (RENDER, 2 * RENDER, 3)
    # Re-lit with the light fitted to the photo, the textured head looks like the photo.
    centre = np.zeros_like(mask)
    centre[RENDER // 3: 2 * RENDER // 3, RENDER // 3: 2 * RENDER // 3] = True
    assert _levels(pv[:, RENDER:][centre], photo[centre]).mean() < 3.0


def test_bad_input_is_reported(sphere):
    verts, mesh = sphere
    cam = orbit_camera(0, 0, 0.5, 64, 64)
    img = np.zeros((32, 64, 3), np.uint8)
    with pytest.raises(ValueError, match="camera is 64x64 but the image is 64x32"):
        extract_textures(mesh, verts, cam, [img], size=64)
    with pytest.raises(ValueError, match="verts must be"):
        extract_textures(mesh, verts[:-1], cam, [np.zeros((64, 64, 3), np.uint8)], size=64)
    with pytest.raises(ValueError, match="one camera per photo"):
        extract_textures(mesh, verts, cam, [img, img], size=64)
    with pytest.raises(ValueError, match="texture size"):
        extract_textures(mesh, verts, cam, [np.zeros((64, 64, 3), np.uint8)], size=4)
    with pytest.raises(ValueError, match="too few pixels"):
        far = Cameras(cam.K, cam.R, cam.t + torch.tensor([[5.0, 0, 0]]), 64, 64)
        extract_textures(mesh, verts, far, [np.zeros((64, 64, 3), np.uint8)], size=64)


def test_write_texture_files_from_fit_arrays(sphere, tmp_path):
    from core.texture import fit_texture_maps, write_texture_files

    verts, mesh = sphere
    cam = orbit_camera(10, 5, 0.5, 200, 160)
    photo, _ = _render(mesh, verts, cam, skin_texture(SIZE, seed=6), studio_light(cam))
    arrays = {"verts": verts, "K": cam.K.numpy(), "R": cam.R.numpy(), "t": cam.t.numpy()}
    maps = fit_texture_maps(mesh, arrays, [photo], size=128)
    paths = write_texture_files(tmp_path, mesh, arrays, [photo], maps)
    assert {p.name for p in paths.values()} == {"albedo.png", "normal.png", "preview.png"}
    assert Image.open(paths["preview"]).size == (400, 160)
    assert np.array_equal(np.asarray(Image.open(paths["albedo"])), maps.albedo)
    with pytest.raises(ValueError, match="1 views but 2 photos"):
        fit_texture_maps(mesh, arrays, [photo, photo], size=128)


def test_coarse_to_fine_fill_matches_direct_solve(monkeypatch):
    import core.texture.fill as fill

    S = 128
    yy, xx = np.mgrid[0:S, 0:S]
    values = np.stack([np.sin(xx / 9.0), np.cos(yy / 13.0), xx / S], -1).astype(np.float32)
    island = np.zeros((S, S), bool)
    island[10:118, 6:122] = True
    island[60:63] = False  # two islands
    known = np.zeros((S, S), bool)
    known[30:50, 30:90] = True
    known[80:100, 40:60] = True
    guide = np.full((S, S, 3), 0.3, np.float32)
    direct = fill.poisson_fill(values, known, island, guide)
    monkeypatch.setattr(fill, "DIRECT_MAX_UNKNOWNS", 1500)
    layered = fill.poisson_fill(values, known, island, guide)
    np.testing.assert_array_equal(layered[known], values[known])
    assert np.abs(layered - direct).max() < 0.03
    # No new steps: the largest jump between fill texels is the exact solution's.
    free = island & ~known
    step_l = np.abs(np.diff(layered, axis=1)).max(-1)[free[:, 1:] & free[:, :-1]].max()
    step_d = np.abs(np.diff(direct, axis=1)).max(-1)[free[:, 1:] & free[:, :-1]].max()
    assert step_l <= step_d * 1.2


def test_lighting_fit_uses_only_the_skin_vertices(sphere):
    """A dark 'hair' cap outside the skin vertices does not bend the fitted light."""
    verts, mesh = sphere
    tex = skin_texture(SIZE, seed=7, spots=0)
    tex[: SIZE // 3] = (40, 30, 25)  # top third of the map: the cap (v > 2/3)
    skin = verts[:, 2] < 0.1 * np.cos(np.pi / 3) - 0.01  # below the cap with a margin
    skin_mesh = UVMesh(mesh.tris, mesh.tri_uvs, mesh.num_verts, light_verts=skin)
    cam = orbit_camera(0, 20, 0.5, RENDER, RENDER)
    photo, _ = _render(mesh, verts, cam, tex, studio_light(cam))
    maps = extract_textures(skin_mesh, verts, cam, [photo], size=SIZE)
    sure = maps.coverage >= 0.999
    sure[: SIZE // 3 + 4] = False
    assert sure.sum() > 2000
    assert _levels(maps.albedo[sure], tex[sure]).mean() < 1.5
    with pytest.raises(ValueError, match="light_verts"):
        UVMesh(mesh.tris, mesh.tri_uvs, mesh.num_verts, light_verts=skin[:-1])


@pytest.mark.parametrize("tangent, light_dir", [((0.6, 0.0, 0.8), (1.0, 0.0, 0.0)),
                                                ((0.0, 0.6, 0.8), (0.0, 0.0, 1.0))])
def test_preview_applies_normal_map_in_uv_tangent_space(sphere, tangent, light_dir):
    """+x of the normal map leans toward +u, +y toward +v (at the sphere's front: +X and +Z)."""
    from core.texture.lighting import linear_to_srgb, sh_basis, srgb_to_linear

    verts, mesh = sphere
    cam = orbit_camera(0, 0, 0.5, 129, 129)
    albedo = np.full((64, 64, 3), 150, np.uint8)
    normal = np.tile(np.round((np.array(tangent) * 0.5 + 0.5) * 255).astype(np.uint8), (64, 64, 1))
    c0 = float(sh_basis(torch.zeros(1, 3))[0, 0])
    c1 = float(sh_basis(torch.tensor([[0.0, 0.0, 1.0]]))[0, 2])
    k, d = 0.5, light_dir
    light = torch.zeros(9, 3)
    light[0] = 1.0 / c0
    light[1:4] = torch.tensor([d[1], d[2], d[0]])[:, None] * k / c1  # shading 1 + k n.d
    image, _ = render_textured(mesh, torch.as_tensor(verts), cam, albedo, normal, light)
    # At the front centre: tangent +X, bitangent +Z, normal -Y; the camera-facing normal is -Y (n.d = 0).
    n = tangent[0] * np.array([1.0, 0, 0]) + tangent[1] * np.array([0, 0, 1.0]) + tangent[2] * np.array([0, -1.0, 0])
    n /= np.linalg.norm(n)
    expected = linear_to_srgb(srgb_to_linear(torch.tensor(150 / 255.0)) * (1 + k * float(n @ np.array(d))))
    assert abs(int(image[64, 64, 0]) - float(expected) * 255) <= 2.0
    flat, _ = render_textured(mesh, torch.as_tensor(verts), cam, albedo, None, light)
    assert int(image[64, 64, 0]) > int(flat[64, 64, 0]) + 10


def test_lanczos_upscaling_keeps_the_round_trip(sphere):
    verts, mesh = sphere
    tex = skin_texture(SIZE, seed=8)
    cam = orbit_camera(0, 0, 0.5, 192, 192)
    image, _ = _render(mesh, verts, cam, tex)
    plain = extract_textures(mesh, verts, cam, [image], size=SIZE, remove_shading=False)
    up = extract_textures(mesh, verts, cam, [image], size=SIZE, remove_shading=False, upscale=2.0)
    sure = (plain.coverage >= 0.999) & (up.coverage >= 0.999)
    err_plain = _levels(plain.albedo[sure], tex[sure]).mean()
    err_up = _levels(up.albedo[sure], tex[sure]).mean()
    assert err_up < 1.0 and err_up <= err_plain + 0.3, (err_plain, err_up)
    with pytest.raises(ValueError, match="upscale"):
        extract_textures(mesh, verts, cam, [image], size=SIZE, upscale=0.5)
