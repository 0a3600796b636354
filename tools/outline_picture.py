"""A picture of what the fit's outline term trusts, on real photos and bench renders.

    .venv/bin/python tools/outline_picture.py docs/outline.png [--renders DIR ...]

Per photo, a crop around the face: the face prior's head mask boundary, green where it is
the head's silhouette against the background (what the outline term pulls the mesh's
contour onto), red where it is not trusted (hair, a cap, glasses, the crop's edge).
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

TILE = 320


def tile(photo, provider) -> np.ndarray:
    import cv2

    from core.priors.landmarks import detect_landmarks
    from core.priors.outline import outline_field, person_mask

    face = detect_landmarks(photo)
    cues = provider.predict(photo, face)
    head = cues["head"].values[..., 0]
    sdf, weight = outline_field(head, cues["head"].confidence > 0, person_mask(photo.rgb))
    filled = (sdf < 0).astype(np.uint8)
    kernel = np.ones((3, 3), np.uint8)
    edge = (cv2.dilate(filled, kernel) > 0) & (filled == 0)
    rgb = photo.rgb.copy()
    rgb[edge & (weight > 0)] = (40, 230, 40)
    rgb[edge & (weight == 0)] = (235, 40, 40)
    x0, y0 = face.points.min(0)
    x1, y1 = face.points.max(0)
    c, side = np.array([(x0 + x1) / 2, (y0 + y1) / 2]), 1.9 * max(x1 - x0, y1 - y0)
    a = np.clip((c - side / 2).astype(int), 0, None)
    b = (c + side / 2).astype(int)
    crop = rgb[a[1]:b[1], a[0]:b[0]]
    return cv2.resize(crop, (TILE, TILE), interpolation=cv2.INTER_AREA)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", help="PNG to write")
    p.add_argument("--renders", nargs="*", default=[], help="more photos (e.g. bench photo's renders)")
    args = p.parse_args(argv)

    import cv2
    import matplotlib
    import skimage.data

    from core.priors.face_prior import FacePriorCues
    from core.priors.image import Photo, load_image

    provider = FacePriorCues()
    photos = [load_image(pathlib.Path(f)) for f in args.renders]
    photos += [load_image(pathlib.Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"),
               Photo(rgb=np.ascontiguousarray(skimage.data.astronaut()), name="astronaut"),
               Photo(rgb=np.ascontiguousarray(np.stack([skimage.data.camera()] * 3, -1)), name="camera")]
    sheet = np.concatenate([tile(photo, provider) for photo in photos], 1)
    cv2.imwrite(args.out, sheet[..., ::-1])
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
