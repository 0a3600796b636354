"""FitOptions: the wire's options dict read, checked in one line, and written back; the
bundle-adjustment stage it puts in the schedule; dense cues from files reach the observations."""

from __future__ import annotations

import json

import matplotlib.cbook
import numpy as np
import pytest

from core.fit.api import FitJob, PhotoInput
from core.fit.options import CueOptions, FitOptions
from core.fit.schedule import BUNDLE_ADJUST, StageSpec, make_schedule, schedule_for
from core.priors.errors import CueError

from conftest import GRACE_HOPPER  # noqa: E402

PHOTO = str(GRACE_HOPPER)


class _View:
    """What schedule_for reads of a view."""

    def __init__(self, focal_px=None):
        self.normals, self.focal_px = None, focal_px


def test_defaults_and_a_full_dict_round_trip():
    assert FitOptions.from_dict(None) == FitOptions.from_dict({}) == FitOptions()
    assert FitOptions().to_dict() == {}
    wire = {"preset": "draft", "schedule": {"stages": {"rig": {"iterations": 5}}, "only": ["rig"]}, "focal": 85,
            "texture_size": 0, "float64": True, "cues": {"provider": "files", "normal_maps": ["a.png", None]},
            "multiview_ba": "topology_ba", "multiview_ba_options": {"rounds": 2, "lr_verts": 0.1},
            "multiview_init_offsets": False, "multiview_hide_backfacing": False, "multiview_min_cos": 0.2,
            "multiview_shared_focal": False}
    options = FitOptions.from_dict(wire)
    assert options.focal == 85.0 and options.cues.normal_maps == ("a.png", None)
    assert FitOptions.from_dict(json.loads(json.dumps(options.to_dict()))) == options
    assert options.to_dict() == {**wire, "focal": 85.0}
    wire["schedule"]["stages"]["rig"]["iterations"] = 6  # the options keep their own copy
    assert options.schedule["stages"]["rig"]["iterations"] == 5
    # The face prior is the default source of cues; None turns it off and survives the wire.
    from core.fit.options import DEFAULT_CUES

    assert FitOptions().cues == DEFAULT_CUES and DEFAULT_CUES.provider == "face_prior"
    bare = FitOptions.from_dict({"cues": None})
    assert bare.cues is None and bare.to_dict() == {"cues": None}
    assert FitOptions.from_dict(json.loads(json.dumps(bare.to_dict()))) == bare
    prior = FitOptions.from_dict({"cues": {"provider": "face_prior", "weights": "mine.pt"}})
    assert prior.cues.weights == "mine.pt" and FitOptions.from_dict(prior.to_dict()) == prior
    outline = FitOptions.from_dict({"cues": {"provider": "face_prior", "maps": ["head"]}})
    assert outline.cues.reads("head") and not outline.cues.reads("normals") and prior.cues.reads("normals")
    assert FitOptions.from_dict(json.loads(json.dumps(outline.to_dict()))) == outline
    for bad, words in (({"provider": "face_prior", "normal_maps": ["a.png"]}, "the face prior makes its own"),
                       ({"provider": "files", "weights": "mine.pt"}, "for the 'face_prior' provider")):
        with pytest.raises(ValueError, match=words):
            FitOptions.from_dict({"cues": bad})


@pytest.mark.parametrize("wire, words", [
    ([], "JSON object"),
    ({"preset": "fast"}, "preset 'fast' is unknown; use one of draft"),
    ({"presets": "draft"}, "unknown fit options ['presets']; known: preset"),
    ({"focal": "wide"}, "focal must be 'auto', 'estimate' or a 35 mm-equivalent"),
    ({"schedule": {"stages": {"rig": {"iterations": "x"}}}}, "schedule: stage 'rig': 'iterations' must be"),
    ({"texture_size": 4}, "texture_size must be 0 (no maps) or"),
    ({"float64": 1}, "float64 must be true or false"),
    ({"multiview_ba": "yes"}, "multiview_ba 'yes' is unknown; use 'off' or one of topology_ba"),
    ({"multiview_ba_options": {"round": 2}}, "multiview_ba_options: unknown settings ['round']"),
    ({"multiview_ba_options": {"rounds": 2.5}}, "multiview_ba_options: rounds must be a whole number"),
    ({"multiview_ba_options": {"rounds": 0}}, "multiview_ba_options: bundle adjustment needs rounds >= 1"),
    ({"multiview_min_cos": 3}, "multiview_min_cos must be a cosine"),
    ({"cues": {"provider": "network"}}, "cues: provider 'network' is unknown; use files"),
    ({"cues": {"normal_maps": "a.png"}}, "cues: normal_maps must be a list"),
    ({"cues": {"normals": []}}, "cues: unknown keys ['normals']"),
    ({"cues": {"provider": "face_prior", "maps": ["depth"]}}, "cues: maps must be a list drawn from normals"),
])
def test_bad_options_are_one_line_errors_naming_the_option(wire, words):
    with pytest.raises(ValueError) as info:
        FitOptions.from_dict(wire)
    message = str(info.value)
    assert words in message and "\n" not in message


def test_a_job_needs_photos_typed_options_and_one_normal_map_per_photo():
    photo = PhotoInput("a.jpg", path="a.jpg")
    with pytest.raises(ValueError, match="at least one photo"):
        FitJob([])
    with pytest.raises(TypeError, match="FitOptions.from_dict"):
        FitJob([photo], options={"preset": "draft"})
    with pytest.raises(ValueError, match=r"cues: one normal map per photo \(1\), got 2"):
        FitJob([photo], options=FitOptions(cues=CueOptions(normal_maps=("a.png", "b.png"))))


def test_several_views_get_a_bundle_adjustment_stage_after_the_rig_stage():
    ba = FitOptions(preset="draft", multiview_ba="colmap_then_largesteps", multiview_ba_options={"rounds": 2},
                    multiview_init_offsets=False, multiview_min_cos=0.3)
    stages = schedule_for(ba, [_View(), _View()])
    assert [s.name for s in stages] == ["rig", BUNDLE_ADJUST, "joint", "vertex"]
    spec = stages[1]
    assert (spec.kind, spec.method, spec.solver, spec.min_cos) == (BUNDLE_ADJUST, "colmap_then_largesteps",
                                                                   {"rounds": 2}, 0.3)
    assert spec.variables == ("camera", "focal")  # no offsets: only the cameras carry over
    assert [s.name for s in schedule_for(ba, [_View()])] == ["rig", "joint", "vertex"]  # one view: nothing to adjust
    assert [s.name for s in schedule_for(FitOptions(preset="draft"), [_View()] * 3)] == ["rig", "joint", "vertex"]
    # Known focal lengths: the adjustment holds them too.
    assert "focal" not in schedule_for(ba, [_View(500.0), _View(500.0)])[1].variables
    # The stage takes overrides like any other; "only" picks among the preset's stages and keeps it.
    tuned = FitOptions(preset="draft", multiview_ba="topology_ba", schedule={
        "only": ["vertex"], "stages": {BUNDLE_ADJUST: {"solver": {"iterations": 7}, "hide_backfacing": False}}})
    stages = schedule_for(tuned, [_View(), _View()])
    assert [s.name for s in stages] == [BUNDLE_ADJUST, "vertex"]
    assert stages[0].solver == {"iterations": 7} and not stages[0].hide_backfacing


def test_bundle_adjustment_stage_settings_are_checked():
    with pytest.raises(ValueError, match="method 'ceres' is unknown"):
        StageSpec("ba", (), 1, {}, {}, kind=BUNDLE_ADJUST, method="ceres")
    with pytest.raises(ValueError, match="kind 'solve' is unknown"):
        StageSpec("ba", (), 1, {}, {}, kind="solve")
    with pytest.raises(ValueError, match="'kind' cannot be overridden"):
        make_schedule("draft", {"stages": {"rig": {"kind": BUNDLE_ADJUST}}})
    with pytest.raises(ValueError, match="'solver' must map"):
        FitOptions(multiview_ba="topology_ba", schedule={"stages": {BUNDLE_ADJUST: {"solver": {"rounds": "2"}}}})


def _normal_map(path, size, normal=(0.6, 0.0, -0.8)):
    import cv2

    n = np.asarray(normal, np.float64) / np.linalg.norm(normal)
    rgb = np.broadcast_to(np.round((n * 0.5 + 0.5) * 65535).astype(np.uint16), (size[1], size[0], 3))
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]))
    return str(path)


def test_normal_maps_from_the_files_provider_reach_the_observations(tmp_path):
    from PIL import Image

    from core.fit.pipeline import views_from_photos

    w, h = Image.open(PHOTO).size
    path = _normal_map(tmp_path / "n.png", (w // 2, h // 2))  # same aspect, resampled to the photo
    photo = PhotoInput("grace.jpg", path=str(PHOTO))
    plain = views_from_photos([photo], FitOptions(cues=None)).views[0]
    cued = views_from_photos([photo], FitOptions(cues=CueOptions(normal_maps=(path,)))).views[0]
    assert plain.normals is None and plain.cue_source == ""
    assert not cued.cues_predicted and cued.cue_source.startswith("dense cues from")
    # By default the face prior's maps arrive, with its confidence as weights.
    prior = views_from_photos([photo], FitOptions()).views[0]
    assert prior.cues_predicted and prior.normals.shape == (h, w, 3) and prior.uv_map.shape == (h, w, 2)
    assert 0.05 < float((prior.normal_mask > 0).mean()) < 0.9 and prior.normal_mask.max() <= 1.0
    assert cued.normals.shape == (h, w, 3) and cued.normal_mask.all()
    assert np.allclose(cued.normals[h // 2, w // 2], [0.6, 0.0, -0.8], atol=1e-3)
    none = views_from_photos([photo], FitOptions(cues=CueOptions(normal_maps=(None,)))).views[0]
    assert none.normals is None
    # The outline ablation reads the prior's head outline and leaves its normals and UV unread.
    outline = views_from_photos([photo], FitOptions(cues=CueOptions(provider="face_prior", maps=("head",)))).views[0]
    assert outline.normals is None and outline.uv_map is None and outline.cues_predicted
    assert outline.cue_source.endswith("; the fit reads its head map only")
    assert outline.outline is not None and prior.outline is not None
    np.testing.assert_array_equal(outline.outline, prior.outline)
    wide = _normal_map(tmp_path / "wide.png", (w, h // 2))
    with pytest.raises(CueError, match=r"^grace.jpg: the normals map is .* \(same aspect ratio\)"):
        views_from_photos([photo], FitOptions(cues=CueOptions(normal_maps=(wide,))))
