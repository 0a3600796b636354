"""How well the face prior transfers to images it never saw.

    .venv/bin/python tools/eval_prior.py [--weights core/data/face_prior.pt] [--people 301,302,303,304]
        [--json out/eval_prior.json] [--picture docs/face_prior_transfer.png]
        [--real-picture docs/face_prior_real_photos.png]

1. Cycles renders (a renderer the network never saw): ``bench photo``'s people, all seven
   views, read as files the way a user gives them (MediaPipe finds the face, the provider
   crops and predicts). The truth is the rendered surface's own normal map through the true
   camera. Reported over the face's skin (``core.priors.skin.skin_mask`` of the detected
   landmarks, where the network gave a normal): normal angle error in degrees, median and
   p90, and the share of the face the network covered. Beside it, what a cue blind to the
   person scores: the default head placed on the person by the similarity that aligns their
   faces (the average face in the true pose), and how much of the person's departure from
   it the network carries: the least-squares gain of (predicted - default) on (true -
   default) and their correlation (gain 1 and correlation 1: all of it; 0: none).
2. Real photos (matplotlib's Grace Hopper, ``skimage.data.astronaut()`` and
   ``skimage.data.camera()``): no true normals, so the check is the predicted UV at
   MediaPipe's 478 points against the UV of the landmark embedding, in pixels (through the
   predicted map's own UV-per-pixel scale) as a share of the eye distance: median and p90.

On the Cycles renders it also reports the upper forehead's tilt: the mean of predicted minus
true camera-space y (down positive) over the box between landmark 10 (the top of the face)
and halfway to the brows, across the brows' width. Negative: the prediction turns the
forehead up, and the fit slopes it back.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import types

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# MediaPipe's outer eye corners (the eye distance of the UV check).
EYE_CORNERS = (33, 263)
# MediaPipe points bounding the upper forehead: the top of the face, the brows' tops, their outer ends.
FOREHEAD_TOP, BROW_TOPS, BROW_ENDS = 10, (105, 334), (70, 300)


def upper_forehead(points: np.ndarray, width: int, height: int) -> np.ndarray:
    """(H, W) bool: the box from the top of the face (landmark 10) halfway down to the brows,
    between the brows' outer ends, in the photo's pixels (centres at +0.5)."""
    top = points[FOREHEAD_TOP, 1]
    bottom = (top + min(points[i, 1] for i in BROW_TOPS)) / 2.0
    left, right = sorted(points[i, 0] for i in BROW_ENDS)
    ys, xs = np.mgrid[0:height, 0:width] + 0.5
    return (ys > top) & (ys < bottom) & (xs > left) & (xs < right)


def _angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.degrees(np.arccos(np.clip((a * b).sum(-1), -1, 1)))


def normal_picture(n: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """uint8 RGB of a camera-space normal map (x right red, y up green, toward the camera blue)."""
    rgb = (np.stack([n[..., 0], -n[..., 1], -n[..., 2]], -1) * 0.5 + 0.5) * 255
    return np.where(valid[..., None], rgb, 0).astype(np.uint8)


def cycles_views(provider, people: list[int], cache_arg: str | None):
    """Yield (person, view, photo rgb, predicted normals, confidence, true normals, true mask, skin,
    the placed default head's normals, its mask)."""
    import torch

    from core.bench.photo import VIEW_ANGLES, person_look, render_person
    from core.bench.synthetic import make_person
    from core.geometry.camera import Cameras
    from core.geometry.similarity import similarity_align
    from core.priors.image import load_image
    from core.priors.landmarks import detect_landmarks
    from core.priors.skin import skin_mask
    from core.render import render_normals
    from core.template import load_default

    from core.bench.photo import cache_root

    template = load_default()
    args = types.SimpleNamespace(width=384, height=480, samples=24)
    for seed in people:
        person = make_person(template, seed)
        look = person_look(seed, person.ethnicity)
        folder, cams, _ = render_person(template, person, look, "neutral", list(VIEW_ANGLES), args,
                                        cache_root(cache_arg))
        surface = np.load(folder / "surface.npz")
        verts = torch.as_tensor(surface["verts"], dtype=torch.float64)[None]
        tris = torch.as_tensor(surface["tris"], dtype=torch.int64)
        placed = torch.as_tensor(similarity_align(template.verts, person.verts, template.regions["face_mask"]))[None]
        template_tris = torch.as_tensor(template.tris, dtype=torch.int64)
        for name in VIEW_ANGLES:
            photo = load_image(folder / f"{name}.jpg")
            face = detect_landmarks(photo)
            cues = provider.predict(photo, face)
            K, R, t = cams[name]
            w, h = photo.size
            camera = Cameras.from_numpy(K, R, t, w, h)
            true_n, true_m = render_normals(verts, tris, camera)
            default_n, default_m = render_normals(placed, template_tris, camera)
            skin = skin_mask(face.points, w, h)
            yield (person.name, name, photo.rgb, cues["normals"].values, cues["normals"].confidence,
                   true_n[0].numpy(), true_m[0].numpy() > 0.5, skin, default_n[0].numpy(), default_m[0].numpy() > 0.5,
                   upper_forehead(face.points, w, h))


def real_photos() -> dict:
    """The bundled real photos: matplotlib's Grace Hopper, skimage's astronaut and camera."""
    import matplotlib
    import skimage.data

    from core.priors.image import load_image

    return {"grace_hopper": load_image(pathlib.Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"),
            "astronaut": _photo(skimage.data.astronaut(), "astronaut"),
            "camera": _photo(np.stack([skimage.data.camera()] * 3, -1), "camera")}


def real_picture(provider) -> np.ndarray:
    """(H, W, 3) uint8: per real photo, the network's crop, its normals where its mask says head
    skin, and its normal confidence (white: confident)."""
    from core.priors.crop import crop_square
    from core.priors.face_prior import face_box
    from core.priors.landmarks import detect_landmarks

    rows = []
    for photo in real_photos().values():
        centre, side = face_box(detect_landmarks(photo).points)
        crop = crop_square(photo.rgb, centre, side, provider.net.config.size).rgb
        maps = provider.predict_crop(crop)
        skin = maps["mask"] >= provider.min_mask
        conf = (np.clip(maps["confidence"], 0, 1) * skin * 255).astype(np.uint8)
        rows.append(np.concatenate([crop, normal_picture(maps["normals"], skin), np.repeat(conf[..., None], 3, -1)], 1))
    return np.concatenate(rows, 0)


def uv_check(provider, template) -> list[dict]:
    """The predicted UV at MediaPipe's points against the landmark embedding's UV, per real photo."""
    from core.priors.landmarks import detect_landmarks
    from core.template.mesh_layout import triangle_uvs

    lmk_uv = (triangle_uvs(template)[template.lmk_tri] * template.lmk_bary[..., None]).sum(1)
    photos = real_photos()
    rows = []
    for name, photo in photos.items():
        face = detect_landmarks(photo)
        cues = provider.predict(photo, face)
        uv, conf = cues["uv"].values, cues["uv"].confidence
        h, w = conf.shape
        pts = face.points[: len(lmk_uv)]
        col = np.clip(np.floor(pts[:, 0]).astype(int), 1, w - 2)
        row = np.clip(np.floor(pts[:, 1]).astype(int), 1, h - 2)
        ok = conf[row, col] > 0
        pred = uv[row, col]
        # UV per pixel at each point: the predicted map's central differences.
        du_dx = (uv[row, col + 1] - uv[row, col - 1]) / 2
        du_dy = (uv[row + 1, col] - uv[row - 1, col]) / 2
        jac = np.stack([du_dx, du_dy], -1)  # (L, 2 uv, 2 px)
        err_uv = pred - lmk_uv
        err_px = np.full(len(pts), np.nan)
        good = ok & (np.abs(np.linalg.det(jac)) > 1e-12)
        err_px[good] = np.linalg.norm(np.linalg.solve(jac[good], err_uv[good][..., None])[..., 0], axis=-1)
        eye = float(np.linalg.norm(face.points[EYE_CORNERS[0]] - face.points[EYE_CORNERS[1]]))
        rel = err_px[good] / eye
        rows.append({"photo": name, "points_covered": int(good.sum()), "points": int(len(pts)),
                     "uv_err_median_eye_pct": round(float(np.median(rel)) * 100, 2) if good.any() else None,
                     "uv_err_p90_eye_pct": round(float(np.percentile(rel, 90)) * 100, 2) if good.any() else None})
    return rows


def _photo(rgb: np.ndarray, name: str):
    from core.priors.image import Photo

    return Photo(rgb=np.ascontiguousarray(rgb.astype(np.uint8)), name=name)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", default=None, help="face prior checkpoint (default: the shipped weights)")
    p.add_argument("--people", default="301,302,303,304", help="bench photo seeds (Cycles renders)")
    p.add_argument("--cache", default=None, help="bench photo's render cache")
    p.add_argument("--json", default=None, help="write the figures here")
    p.add_argument("--picture", default=None, help="a PNG of photos, predicted and true normals, error")
    p.add_argument("--no-flip", action="store_true", help="one pass per crop, without the mirrored crop's average")
    p.add_argument("--real-picture", default=None,
                   help="a PNG of the real photos: crop, predicted normals, confidence")
    args = p.parse_args(argv)

    from core.priors.face_prior import FacePriorCues
    from core.template import load_default

    provider = FacePriorCues(args.weights, flip_average=not args.no_flip)
    per_view, tiles = [], []
    all_err, all_default, towards, spread, product = [], [], 0.0, [0.0, 0.0], 0.0
    tilts = []
    for person, view, rgb, pred, conf, true_n, true_m, skin, default_n, default_m, forehead in cycles_views(
            provider, [int(s) for s in args.people.split(",")], args.cache):
        region = skin & true_m
        covered = region & (conf > 0)
        err = _angle_deg(pred, true_n)[covered]
        all_err.append(err)
        both = covered & default_m
        all_default.append(_angle_deg(default_n, true_n)[both])
        person_dev, pred_dev = true_n[both] - default_n[both], pred[both] - default_n[both]
        towards += float((pred_dev * person_dev).sum())
        spread[0] += float((person_dev ** 2).sum())
        spread[1] += float((pred_dev ** 2).sum())
        per_view.append({"person": person, "view": view, "normal_deg_median": round(float(np.median(err)), 2),
                         "normal_deg_p90": round(float(np.percentile(err, 90)), 2),
                         "default_head_deg_median": round(float(np.median(all_default[-1])), 2),
                         "covered": round(float(covered.sum() / max(region.sum(), 1)), 3)})
        on_forehead = forehead & true_m & (conf > 0)
        if on_forehead.any():
            per_view[-1]["upper_forehead_tilt_y"] = round(float((pred - true_n)[on_forehead][:, 1].mean()), 3)
            tilts.append((view, per_view[-1]["upper_forehead_tilt_y"]))
        print(json.dumps(per_view[-1]), flush=True)
        if args.picture and view in ("front", "yaw+30") and len(tiles) < 8:
            heat = np.clip(_angle_deg(pred, true_n) / 30.0, 0, 1)
            heat_rgb = (np.stack([heat, 1 - np.abs(heat - 0.5) * 2, 1 - heat], -1) * 255 * covered[..., None])
            tiles.append(np.concatenate([rgb, normal_picture(pred, conf > 0), normal_picture(true_n, true_m),
                                         heat_rgb.astype(np.uint8)], 1))
    err = np.concatenate(all_err)
    summary = {"cycles_normal_deg_median": round(float(np.median(err)), 2),
               "cycles_normal_deg_mean": round(float(err.mean()), 2),
               "cycles_normal_deg_p90": round(float(np.percentile(err, 90)), 2),
               "cycles_covered": round(float(np.mean([r["covered"] for r in per_view])), 3),
               "default_head_deg_median": round(float(np.median(np.concatenate(all_default))), 2),
               "default_head_deg_mean": round(float(np.concatenate(all_default).mean()), 2),
               "person_gain": round(towards / max(spread[0], 1e-12), 3),
               "person_correlation": round(towards / max(np.sqrt(spread[0] * spread[1]), 1e-12), 3),
               "upper_forehead_tilt_y": round(float(np.mean([t for _, t in tilts])), 3) if tilts else None,
               "upper_forehead_tilt_y_front": round(float(np.mean([t for v, t in tilts if v == "front"])), 3)
               if any(v == "front" for v, _ in tilts) else None}
    uv_rows = uv_check(provider, load_default())
    out = {"weights": str(provider.weights), "summary": summary, "views": per_view, "real_photos_uv": uv_rows}
    print(json.dumps(summary))
    for r in uv_rows:
        print(json.dumps(r))
    if args.json:
        pathlib.Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(args.json).write_text(json.dumps(out, indent=1))
    if args.real_picture:
        import cv2

        cv2.imwrite(args.real_picture, real_picture(provider)[..., ::-1])
    if args.picture and tiles:
        import cv2

        sheet = np.concatenate(tiles, 0)
        cv2.imwrite(args.picture, sheet[..., ::-1])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
