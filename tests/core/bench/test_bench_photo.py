"""``bench photo``'s pieces that need no render: people, scene recipe, summary schema."""

import numpy as np
import pytest

from core.bench import BENCHMARKS
from core.bench.photo import (HELD_OUT_SEEDS, TUNE_SEEDS, VARIANTS, VIEW_SETS, person_cameras, person_look,
                              skin_paint, summarise)
from core.template import load_default


@pytest.fixture(scope="module")
def template():
    return load_default()


def test_registered_with_frozen_disjoint_people():
    assert BENCHMARKS["photo"] == "core.bench.photo"
    assert len(TUNE_SEEDS) >= 4 and len(HELD_OUT_SEEDS) >= 4
    assert not set(TUNE_SEEDS) & set(HELD_OUT_SEEDS)
    assert "fit" in VARIANTS
    assert VIEW_SETS[1] == ("front",) and len(VIEW_SETS[3]) == 3 and len(VIEW_SETS[7]) == 7


def test_look_is_frozen_and_varies_between_people():
    eth = np.array([0.2, 0.3, 0.5])
    assert person_look(305, eth) == person_look(305, eth)
    looks = [person_look(s, eth) for s in (*TUNE_SEEDS, *HELD_OUT_SEEDS)]
    assert len({lk["lens_35mm"] for lk in looks}) >= 4
    assert {lk["background"] for lk in looks} == {0, 1, 2}
    assert all(35 <= lk["lens_35mm"] <= 135 for lk in looks)


def test_cameras_keep_the_lens_and_look_at_the_face(template):
    look = person_look(301, np.array([0.0, 0.0, 1.0]))
    cams = person_cameras(template, template.verts, look, 384, 480)
    centre = template.verts[template.regions["face_mask"]].mean(0)
    for K, R, t in cams.values():
        x = R @ centre + t
        assert x[2] == pytest.approx(look["distance_m"], rel=1e-6)
        assert np.allclose(x[:2], 0, atol=1e-9)
        assert K[0, 0] == cams["front"][0][0, 0]


def test_paint_has_brows_above_the_eyes(template):
    paint = skin_paint(template, hair_cap=True)
    brow = paint[:, 0] > 0.5
    assert brow.sum() > 20
    eyes = template.verts[template.regions["eye_l_ring"]]
    assert (template.verts[brow, 2] > eyes[:, 2].max()).all()
    assert (paint[template.regions["face_mask"], 2] < 0.5).mean() > 0.9


def test_summary_covers_held_out_people_only():
    base = {"mean_head": {"mean_mm": 1.5}}
    people = [{"person": "a", "baselines": base}, {"person": "b", "baselines": base}]
    row = dict(variant="fit", photos=1, exif=True, expression=False, fit_mean_mm=1.0, fit_median_mm=0.9,
               default_mean_mm=2.0, oracle_mean_mm=0.5, fit_area_mm=1.2, default_area_mm=2.4)
    runs = [dict(row, person="a", held_out=True), dict(row, person="b", held_out=False, fit_mean_mm=9.0),
            dict(row, person="a", held_out=True, exif=False, fit_mean_mm=7.0)]
    s = summarise(runs, people, held_out=True)
    assert set(s["fit"]["1"]) == {"fit_mean_mm", "fit_median_mm", "default_mean_mm", "mean_head_mm",
                                  "oracle_mean_mm", "ratio", "n_people", "fit_area_mm", "default_area_mm"}
    assert s["fit"]["1"]["fit_area_mm"] == 1.2 and s["fit"]["1"]["default_area_mm"] == 2.4
    assert s["fit"]["1"]["fit_mean_mm"] == 1.0 and s["fit"]["1"]["ratio"] == 0.5 and s["fit"]["1"]["n_people"] == 1


def test_person_picture_views_draw_the_head(template):
    from core.bench.photo import _draw

    centre = template.verts[template.regions["face_mask"]].mean(0)
    colours = np.full((template.num_verts, 3), 0.6)
    front = _draw(template.verts, template.tris, colours, centre, 0.0, res=64)
    side = _draw(template.verts, template.tris, colours, centre, 90.0, res=64)
    assert front.shape == (64, 64, 3)
    for img in (front, side):
        covered = (img < 1.0).any(-1)
        assert 0.1 < covered.mean() < 0.9  # the head, on white
        assert img[covered].max() <= 0.6 + 1e-9 and img[covered].min() >= 0.6 * 0.25 - 1e-9


def test_oracle_normals_variant_writes_the_true_heads_normal_maps(template, tmp_path):
    from PIL import Image

    from core.bench.photo import _fit_args_oracle_normals

    # The default head stands in for a rendered surface, seen by the bench's front camera.
    cams = person_cameras(template, template.verts, person_look(305, np.array([0.0, 0.0, 1.0])), 96, 120)
    photos = tmp_path / "renders"
    photos.mkdir()
    np.savez(photos / "surface.npz", verts=template.verts, tris=template.tris)
    files = []
    for name in ("front", "yaw+30"):
        Image.new("RGB", (96, 120)).save(photos / f"{name}.png")
        files.append(photos / f"{name}.png")
    args = _fit_args_oracle_normals({"files": files, "cameras": [cams["front"], cams["yaw+30"]],
                                     "out": tmp_path / "fit"})
    assert args[0] == "--normals" and len(args) == 3
    for path in args[1:]:
        n = np.load(path)
        covered = np.linalg.norm(n, axis=-1) > 0.5
        assert n.shape == (120, 96, 3) and 0.05 < covered.mean() < 0.9
        assert np.median(n[covered][:, 2]) < -0.5  # seen surfaces face the camera (n_z < 0)


def _front_photo_of(template, person, tmp_path) -> dict:
    """A variant's context for one blank front photo of ``person`` (its surface the rendered one)."""
    from PIL import Image

    cams = person_cameras(template, person.verts, person_look(305, np.array([0.0, 0.0, 1.0])), 96, 120)
    photos = tmp_path / "renders"
    photos.mkdir()
    np.savez(photos / "surface.npz", verts=person.verts, tris=template.tris)
    Image.new("RGB", (96, 120)).save(photos / "front.png")
    return {"files": [photos / "front.png"], "cameras": [cams["front"]], "out": tmp_path / "fit",
            "person": person, "template": template}


def test_default_normals_variant_places_the_default_head_on_the_person(template, tmp_path):
    import types

    from core.bench.photo import _fit_args_default_normals, _fit_args_oracle_normals

    # A "person" that is the default head turned, moved and scaled: placed on it by the
    # similarity, the default head's maps are the person's own.
    a = np.deg2rad(10.0)
    turn = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    person = types.SimpleNamespace(verts=(1.05 * template.verts.astype(np.float64) @ turn.T + [0.01, 0.0, 0.02]))
    ctx = _front_photo_of(template, person, tmp_path)
    placed = np.load(_fit_args_default_normals(ctx)[1])
    truth = np.load(_fit_args_oracle_normals(ctx)[1])
    covered = np.linalg.norm(truth, axis=-1) > 0.5
    assert 0.05 < covered.mean() < 0.9
    assert np.abs(placed - truth)[covered].max() < 1e-3


def test_shrunk_variants_carry_the_prior_share_of_the_person(template, tmp_path):
    import types

    from core.bench.photo import (PRIOR_PERSON_GAIN, _fit_args_default_normals, _fit_args_oracle_normals,
                                  _fit_args_shrunk_head, _fit_args_shrunk_normals)
    from core.geometry.mesh_layout import vertex_normals

    # A "person" that is the default head with a bump on the nose: only there do the maps differ.
    verts = template.verts.astype(np.float64)
    face = verts[template.regions["face_mask"]]
    tip = face[np.argmin(face[:, 1])]  # the face's front-most point (-y is the front)
    bump = 3e-3 * np.exp(-0.5 * (np.linalg.norm(verts - tip, axis=1) / 8e-3) ** 2)
    person = types.SimpleNamespace(verts=verts + bump[:, None] * vertex_normals(verts, template.tris))
    ctx = _front_photo_of(template, person, tmp_path)
    shrunk = np.load(_fit_args_shrunk_normals(ctx)[1])
    truth = np.load(_fit_args_oracle_normals(ctx)[1])
    default = np.load(_fit_args_default_normals(ctx)[1])
    covered = np.linalg.norm(truth, axis=-1) > 0.5
    np.testing.assert_allclose(np.linalg.norm(shrunk[covered], axis=-1), 1.0, atol=1e-5)
    assert not shrunk[~covered].any()

    def angle(a, b):
        return np.degrees(np.arccos(np.clip((a * b).sum(-1), -1.0, 1.0)))

    both = covered & (np.linalg.norm(default, axis=-1) > 0.5)
    departed = both & (angle(truth, default) > 3.0)
    assert departed.sum() > 20
    # Away from the person's departure the shrunk map is the true one; on it, the given share of the way.
    still = both & (angle(truth, default) < 0.2)
    assert angle(shrunk[still], truth[still]).max() < 0.2
    share = angle(shrunk[departed], default[departed]) / angle(truth[departed], default[departed])
    assert abs(np.median(share) - PRIOR_PERSON_GAIN) < 0.03
    # The head between the two (its vertices moved that share of the way) has about those normals.
    between = np.load(_fit_args_shrunk_head(ctx)[1])
    share = angle(between[departed], default[departed]) / angle(truth[departed], default[departed])
    assert abs(np.median(share) - PRIOR_PERSON_GAIN) < 0.05
    assert angle(between[still], truth[still]).max() < 0.5


def test_focal_error_is_reported_only_for_estimated_focal_lengths():
    from core.bench.photo import focal_error

    views = [{"focal_35mm": 55.0, "focal_source": "estimated"}, {"focal_35mm": 45.0, "focal_source": "estimated"}]
    assert focal_error({"views": views}, 40.0) == pytest.approx(0.25)
    assert focal_error({"views": [{"focal_35mm": 50.0, "focal_source": "exif"}]}, 50.0) is None
    assert focal_error({"views": []}, 50.0) is None


def test_neutral_pair_ignores_a_similarity_and_measures_the_face(template):
    from core.bench.photo import neutral_pair_mm

    a = template.verts.astype(np.float64)
    theta = np.radians(20.0)
    R = np.array([[np.cos(theta), -np.sin(theta), 0.0], [np.sin(theta), np.cos(theta), 0.0], [0.0, 0.0, 1.0]])
    moved = 1.3 * a @ R.T + np.array([0.1, -0.2, 0.05])
    assert neutral_pair_mm(template, a, moved) < 1e-6
    # The lips 2 mm forward (a share f of the face's vertices): a translation alone would leave
    # 2 (1 - f) mm on the lips and 2 f on the rest, 4 f (1 - f) mm on average; rotation and scale
    # take up a little more.
    face, lips = template.regions["face_mask"], template.regions["lips"]
    fuller = a.copy()
    fuller[lips, 1] -= 0.002
    f = np.isin(face, lips).mean()
    assert 0.8 * 4 * f * (1 - f) < neutral_pair_mm(template, a, fuller) <= 4 * f * (1 - f) + 1e-6


def test_the_surface_pair_leaves_out_sliding_along_the_surface(template):
    from core.bench.photo import neutral_pair_mm, neutral_pair_surface_mm
    from core.geometry.mesh_layout import triangle_edges

    a = template.verts.astype(np.float64)
    theta = np.radians(20.0)
    R = np.array([[np.cos(theta), -np.sin(theta), 0.0], [np.sin(theta), np.cos(theta), 0.0], [0.0, 0.0, 1.0]])
    assert neutral_pair_surface_mm(template, a, 1.3 * a @ R.T + np.array([0.1, -0.2, 0.05])) < 1e-6
    # Each face vertex slid halfway along one of its edges: the same surface, other vertices.
    face = np.asarray(template.regions["face_mask"])
    edges = triangle_edges(np.asarray(template.tris))
    other = {}
    for i, j in edges:
        other.setdefault(i, j)
        other.setdefault(j, i)
    slid = a.copy()
    slid[face] = 0.5 * (a[face] + a[[other[i] for i in face]])
    assert neutral_pair_mm(template, a, slid) > 0.5
    assert neutral_pair_surface_mm(template, a, slid) < 0.25 * neutral_pair_mm(template, a, slid)
    # A change of shape counts: the lips 2 mm forward.
    fuller = a.copy()
    fuller[template.regions["lips"], 1] -= 0.002
    assert neutral_pair_surface_mm(template, a, fuller) > 0.05


def _subdivided(verts: np.ndarray, tris: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each triangle split in four at its edges' midpoints: the same surface, other vertices."""
    edges = np.sort(np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]]), axis=1)
    unique, inverse = np.unique(edges, axis=0, return_inverse=True)
    mid = len(verts) + inverse.reshape(3, len(tris)).T  # (F, 3): the midpoints of edges 01, 12, 20
    out = np.concatenate([verts, 0.5 * (verts[unique[:, 0]] + verts[unique[:, 1]])])
    a, b, c = tris.T
    ab, bc, ca = mid.T
    return out, np.concatenate([np.stack(x, 1) for x in ((a, ab, ca), (ab, b, bc), (ca, bc, c), (ab, bc, ca))])


def _close(laid: np.ndarray, want: np.ndarray) -> None:
    """At the same points, but for a vertex or two on a crease sharp enough (the mouth's corners) that
    its closest facing point lies on the next fold, under a millimetre away."""
    err = np.linalg.norm(laid - want, axis=1)
    assert (err > 5e-5).mean() < 0.002 and err.max() < 1e-3


def test_an_imported_head_is_laid_on_the_person_at_its_own_surface_points(template):
    """The floor of a fit through an imported head: its vertices at their points of the default
    surface, carried onto the person, whatever the import's frame was."""
    import types

    from core.bench.heads import laid_on, surface_correspondence
    from core.geometry.mesh_layout import vertex_normals

    verts, tris = template.verts.astype(np.float64), np.asarray(template.tris)
    face = np.asarray(template.regions["face_mask"])
    bump = np.exp(-((verts[:, 0] / 0.02) ** 2 + ((verts[:, 2] - verts[face, 2].mean()) / 0.03) ** 2))
    person = 1.04 * verts + 0.003 * bump[:, None] * vertex_normals(verts, tris)

    # The default head itself, imported a little off its frame (scale, turn, shift): the person's own vertices.
    a = np.radians(1.5)
    turn = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    same = types.SimpleNamespace(verts=1.015 * verts @ turn.T + [0.001, -0.002, 0.001], tris=tris,
                                 regions={"face_mask": face})
    laid = laid_on(template, surface_correspondence(template, same), person)
    _close(laid, person)

    # Another tessellation of the same surface: the same split of the person's mesh.
    fine, fine_tris = _subdivided(verts, tris)
    other = types.SimpleNamespace(verts=fine, tris=fine_tris, regions={"face_mask": face})
    laid = laid_on(template, surface_correspondence(template, other), person)
    want, _ = _subdivided(person, tris)
    _close(laid, want)
    # and not the default head's points: the bump is carried (3 mm at its top)
    assert np.abs(laid - 1.04 * fine).max() > 2.5e-3

