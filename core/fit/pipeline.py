"""From photos (or ready observations) to a rig-ready result: the one fit driver.

``run_fit(job, control)`` is the entry point the CLI, the server and the batch
runner share: photos → landmarks (+ dense cues from the job's provider) →
``fit_views`` → texture maps. ``fit_views`` runs the schedule's stages on one
or several views through the one loop (``core/fit/loop.py``), a bundle
adjustment among them when the options ask for one. Each iteration becomes a
``FitRecord``; the last one carries the ``FitResult``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from core.priors.image import photo_focal
from core.template import Template, TemplateModel

from .api import FitJob, FitRecord, PhotoInput
from .camera_init import initial_cameras
from .control import FitControl
from .loop import FitState, StageReport, run_meta, run_stages
from .objective import Objective
from .observations import MAX_IMAGE_RES, ViewObservation
from .options import FitOptions
from .result import assemble_result
from .schedule import BUNDLE_ADJUST, schedule_for
from .variables import FitVariables

# Landmarks the fit ignores in the photo: MediaPipe's iris points are not on the skin.
IRIS_IDS = np.arange(468, 478)
# The held-out check (FitOptions.holdout_landmarks): every this-many-th FaceMesh point is left out.
HOLDOUT_EVERY = 10


def holdout_landmark_ids() -> np.ndarray:
    """The FaceMesh points the held-out check leaves out: every HOLDOUT_EVERY-th and the face oval."""
    from core.priors.skin import face_oval_ids

    return np.union1d(np.arange(0, 468, HOLDOUT_EVERY), face_oval_ids())


@dataclass
class FitInputs:
    """What the photos gave: per photo its observation, the loaded ``Photo`` and its ``FaceLandmarks``."""

    views: list[ViewObservation]
    photos: list
    faces: list


def views_from_photos(photos: list[PhotoInput], options: FitOptions | None = None) -> FitInputs:
    """Load photos, detect landmarks and read dense cues (``options.cues``) and focal lengths
    (``options.focal``). Errors (``PriorError``; ``CueError`` for a cue map) name the photo at fault."""
    from core.priors.errors import CueError, PriorError
    from core.priors.image import load_image
    from core.priors.landmarks import detect_landmarks
    from core.priors.outline import photo_outline

    options = options or FitOptions()
    providers = options.cues.providers(len(photos)) if options.cues is not None else [None] * len(photos)
    inputs = FitInputs([], [], [])
    for p, provider in zip(photos, providers):
        photo = load_image(p.data if p.data is not None else p.path, name=p.name)
        face = detect_landmarks(photo, face_index=p.face_index)
        weight = np.full(len(face.points), 1.0, np.float32)
        weight[IRIS_IDS[IRIS_IDS < len(weight)]] = 0.0
        heldout = None
        if options.holdout_landmarks:
            heldout = np.zeros(len(weight), bool)
            heldout[holdout_landmark_ids()] = True
            weight[heldout] = 0.0
        w, h = photo.size
        focal_px, source = photo_focal(photo, options.focal)
        image, skin, scale = shading_image(photo.rgb, face.points)
        normals = normal_mask = None
        cue_source = ""
        uv_map = uv_weight = None
        outline = outline_weight = None
        outline_scale = 0.0
        if provider is not None:
            try:
                cues = provider.predict(photo, face)
            except PriorError as exc:
                raise CueError(f"{p.name}: {exc}") from exc
            cue_source = cues.describe()
            reads = options.cues.reads
            if options.cues.maps:
                cue_source += f"; the fit reads its {', '.join(options.cues.maps)} map only"
            if "normals" in cues and reads("normals"):
                normals, normal_mask = cues["normals"].values, cues["normals"].confidence
            if "uv" in cues and reads("uv"):
                uv_map, uv_weight = cues["uv"].values, cues["uv"].confidence
            if "head" in cues and reads("head"):
                outline, outline_weight, outline_scale = photo_outline(
                    cues["head"].values[..., 0], cues["head"].confidence > 0, photo.rgb)
        inputs.views.append(ViewObservation(w, h, face.points, weight, normals, normal_mask, name=p.name,
                                            focal_px=focal_px, focal_source=source, image=image, skin=skin,
                                            image_scale=scale, cue_source=cue_source, uv_map=uv_map,
                                            uv_weight=uv_weight, landmark_heldout=heldout,
                                            outline=outline, outline_weight=outline_weight,
                                            outline_scale=outline_scale,
                                            cues_predicted=provider is not None and provider.predicted))
        inputs.photos.append(photo)
        inputs.faces.append(face)
    return inputs


def shading_image(rgb: np.ndarray, landmarks: np.ndarray, max_res: int = MAX_IMAGE_RES):
    """What the shading term reads of a photo: linear-light RGB (h, w, 3) float32 at most
    ``max_res`` pixels on its long side, its skin mask (h, w) bool, and the scale
    (image pixels per photo pixel)."""
    import cv2

    from core.priors.skin import skin_mask
    from core.texture.lighting import srgb_to_linear

    H, W = rgb.shape[:2]
    step = max(1, int(np.ceil(max(H, W) / max_res)))
    linear = srgb_to_linear(torch.from_numpy(np.asarray(rgb, np.float32) / 255.0)).numpy()
    h, w = H // step, W // step
    if step > 1:
        # Crop to whole steps so both axes scale by exactly 1 / step (pixel centres stay aligned).
        linear = cv2.resize(linear[: h * step, : w * step], (w, h), interpolation=cv2.INTER_AREA)
    skin = skin_mask(np.asarray(landmarks, np.float64) / step, w, h)
    return linear.astype(np.float32), skin, 1.0 / step


def fit_views(template: Template, views: list[ViewObservation], options: FitOptions | None = None,
              control: FitControl | None = None, device: str = "cpu") -> Iterator[FitRecord]:
    """Fit ``template`` to observations (one view or several); yields records, the last with the result."""
    options = options or FitOptions()
    start = time.perf_counter()
    stages = schedule_for(options, views)
    dtype = torch.float64 if options.float64 else torch.float32
    model = TemplateModel(template, device=device, dtype=dtype)
    # Several photos share one focal length unless told they come from different cameras.
    variables = FitVariables(model, initial_cameras(model, views), shared_focal=options.multiview_shared_focal)
    state = FitState(variables, Objective(model, views))
    reports: list[StageReport] = []
    last = None
    for rec in run_stages(state, stages, control, reports):
        last = rec
        yield rec
    result = assemble_result(state.variables, state.objective, state.objective.views)
    result.meta.update(run_meta(reports, stages, start, model.device))
    if len(views) > 1:
        result.meta["multiview"] = {"ba": "off"}
    if state.ba is not None:
        ba = state.ba
        result.meta["multiview"] = {
            "ba": [s.method for s in stages if s.kind == BUNDLE_ADJUST][-1],
            "ba_seconds": round(ba.seconds, 3),
            "ba_rms_px": ba.rms_px,
            "ba_inlier_fraction": [float(m.mean()) if m.size else 0.0 for m in ba.inliers],
        }
        result.arrays["verts_ba"] = ba.verts
    step = last.step if last else 0
    total = last.total_steps if last else 0
    losses = reports[-1].losses if reports else {}
    yield FitRecord("done", 0, step, total, losses, result.arrays["verts"], result=result)


def run_fit(job: FitJob, control: FitControl | None = None, inputs: FitInputs | None = None
            ) -> Iterator[FitRecord]:
    """Run a job: photos → landmarks → fit → texture maps. Errors name the photo at fault.

    inputs: the job's photos already read by ``views_from_photos`` (the CLI
    reports them before the fit starts), else they are read here. The result
    carries the texture maps (``result.textures``, ``job.options.texture_size``
    pixels a side; none for 0), so a client without the photos' pixels (a
    remote core) still gets a textured head.
    """
    from core.template import load_default

    template = job.template if job.template is not None else load_default()
    inputs = inputs or views_from_photos(job.photos, job.options)
    for record in fit_views(template, inputs.views, job.options, control, job.device):
        if record.result is not None:
            finish_result(template, record.result, inputs, job.options, job.device)
        yield record


def finish_result(template: Template, result, inputs: FitInputs, options: FitOptions, device: str) -> None:
    """What a fit's result gets from the photos once fitted: texture maps (``options.texture_size``
    pixels a side; none for 0) and the first photo's iris colour."""
    from core.priors.iris import iris_color
    from core.texture.result import fit_texture_maps

    size = options.texture_size
    if size > 0 and not template.has_uvs:
        result.meta["textures"] = "skipped: the template has no UV map"
    elif size > 0:
        result.textures = fit_texture_maps(template, result.arrays, [p.rgb for p in inputs.photos], size, device)
    if inputs.photos:
        # The first photo's irises colour the result's eye texture (the add-on's default).
        colour = iris_color(inputs.photos[0].rgb, inputs.faces[0].points)
        if colour is not None:
            result.meta["iris_color"] = [round(c, 4) for c in colour]
