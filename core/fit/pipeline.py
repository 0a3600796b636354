"""From photos (or ready observations) to a rig-ready result.

``run_fit(job, control)`` is the entry point the server and the CLI share:
photos → landmarks → PnP cameras → rig/joint/vertex stages → result. Each
optimiser iteration becomes a ``FitRecord``; the last one carries the
``FitResult``.
"""

from __future__ import annotations

import time
from typing import Iterator

import numpy as np
import torch

from core.geometry.camera import Cameras
from core.priors.image import FOCAL_AUTO, focal_option, photo_focal
from core.template import Template, TemplateModel

from .api import FitJob, FitRecord, FitResult
from .camera_init import initial_cameras
from .control import FitControl
from .loop import StageReport, run_meta, run_stages
from .multiview import fit_multiview
from .objective import Objective
from .observations import MAX_IMAGE_RES, ViewObservation
from .result import assemble_result
from .schedule import schedule_for
from .variables import FitVariables

# UV texture maps a fit job returns (pixels per side).
DEFAULT_TEXTURE_SIZE = 1024

# Several photos: no bundle adjustment by default, the stages run on all views
# from the per-view PnP cameras. On MediaPipe landmarks (+ normal maps) of
# Cycles renders this beat the topology-aware adjustment in 7 of 8 cases
# (2 identities x 2/4/8/16 views; README, *Several photos*): the adjustment
# triangulates the detector's view-dependent bias into the mesh. It pays with
# dense correspondences; ``"multiview_ba": "topology_ba"`` selects it.
DEFAULT_MULTIVIEW_BA = "off"

# Landmarks the fit ignores in the photo: MediaPipe's iris points are not on the skin.
IRIS_IDS = np.arange(468, 478)


def views_from_photos(photos, focal="auto"):
    """Load photos and detect landmarks. Returns (views, photos, faces).

    focal: the ``focal`` fit option (see ``focal_option``).
    """
    from core.priors.image import load_image
    from core.priors.landmarks import detect_landmarks

    focal_option(focal)  # a bad option fails before any photo is read
    views, loaded, faces = [], [], []
    for p in photos:
        photo = load_image(p.data if p.data is not None else p.path, name=p.name)
        face = detect_landmarks(photo, face_index=p.face_index)
        weight = np.full(len(face.points), 1.0, np.float32)
        weight[IRIS_IDS[IRIS_IDS < len(weight)]] = 0.0
        w, h = photo.size
        focal_px, source = photo_focal(photo, focal)
        image, skin, scale = shading_image(photo.rgb, face.points)
        views.append(ViewObservation(w, h, face.points, weight, name=p.name, focal_px=focal_px,
                                     focal_source=source, image=image, skin=skin, image_scale=scale))
        loaded.append(photo)
        faces.append(face)
    return views, loaded, faces


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


def fit_views(template: Template, views: list[ViewObservation], options: dict | None = None,
              control: FitControl | None = None, device: str = "cpu",
              cameras: list[Cameras] | None = None) -> Iterator[FitRecord]:
    """Fit ``template`` to observations; yields records, the last with the result."""
    options = dict(options or {})
    method = options.get("multiview_ba", DEFAULT_MULTIVIEW_BA)
    if cameras is None and len(views) > 1 and method != "off":
        # Several photos: rig stage, bundle adjustment, then the rest on all views (multiview.py).
        yield from fit_multiview(template, views, options, control, device)
        return
    start = time.perf_counter()
    stages = schedule_for(options, views)
    dtype = torch.float64 if options.get("float64") else torch.float32
    model = TemplateModel(template, device=device, dtype=dtype)
    cams = cameras or initial_cameras(model, views)
    # Several photos share one focal length unless told they come from different cameras.
    variables = FitVariables(model, cams, shared_focal=bool(options.get("multiview_shared_focal", True)))
    objective = Objective(model, views)
    reports: list[StageReport] = []
    last = None
    for rec in run_stages(variables, objective, stages, control, reports):
        last = rec
        yield rec
    result = assemble_result(variables, objective, views)
    result.meta.update(run_meta(reports, stages, start, model.device))
    if len(views) > 1:
        result.meta["multiview"] = {"ba": "off"}
    step = last.step if last else 0
    total = last.total_steps if last else 0
    losses = reports[-1].losses if reports else {}
    yield FitRecord("done", 0, step, total, losses, result.arrays["verts"], result=result)


def run_fit(job: FitJob, control: FitControl | None = None) -> Iterator[FitRecord]:
    """Run a job: photos → landmarks → fit → texture maps. Errors name the photo at fault.

    The result carries ``albedo`` and ``normal_map`` ((S, S, 3) uint8 UV maps,
    S = options["texture_size"], default 1024; 0 skips them), so a client
    without the photos' pixels (a remote core) still gets a textured head.
    """
    from core.template import load_default

    if not job.photos:
        raise ValueError("a fit needs at least one photo")
    template = job.template if job.template is not None else load_default()
    views, photos, _ = views_from_photos(job.photos, job.options.get("focal", FOCAL_AUTO))
    size = int(job.options.get("texture_size", DEFAULT_TEXTURE_SIZE))
    for record in fit_views(template, views, job.options, control, job.device):
        if record.result is not None and size > 0:
            add_texture_maps(record.result, template, [p.rgb for p in photos], size, job.device)
        yield record


def add_texture_maps(result: FitResult, template: Template, images: list[np.ndarray], size: int,
                     device: str = "cpu") -> None:
    """Put UV albedo and detail-normal maps into ``result.arrays`` (core/texture)."""
    from core.texture import extract_textures
    from core.texture.result import result_cameras

    maps = extract_textures(template, np.asarray(result.arrays["verts"], np.float32),
                            result_cameras(result.arrays, images), images, size=size, device=device)
    result.arrays["albedo"] = maps.albedo
    result.arrays["normal_map"] = maps.normal
