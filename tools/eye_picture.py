"""Close-ups of one eye of fitted heads at rest, side by side: skin in flesh tone, the eyeball in
white, seen by the rig checks' front camera (core/template/face_checks.py).

    .venv/bin/python tools/eye_picture.py OUT.png --side r [--template T.npz] RESULT.npz ...

Each RESULT.npz is a ``likeness fit`` result (``verts_neutral``, ``parts_neutral``) made with the
template (default: the default head). An eyeball standing through the skin shows as white
outside the lid opening.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SKIN = np.array([225.0, 180.0, 160.0])
EYE = np.array([245.0, 245.0, 250.0])
CROP = (120, 170, 520, 470)  # of the checks' 640² window, 0.1 mm a pixel: 40 x 30 mm


def close_up(template, verts: np.ndarray, parts: np.ndarray, side: str) -> np.ndarray:
    import torch

    from core.geometry.normals import face_normals
    from core.render.rasterize import rasterize
    from core.template.face_checks import front_scene

    allv, tris, cam = front_scene(template, torch.as_tensor(verts).float(), torch.as_tensor(parts).float(),
                             f"eye_{side}_ring")
    face = rasterize(allv, tris, cam).face_id[0].numpy()
    n = face_normals(allv, tris)[0].numpy()
    shade = np.clip(0.8 * np.abs(n[:, 1]) + 0.2 * np.abs(n[:, 2]) + 0.2, 0.1, 1.0)
    img = np.full(face.shape + (3,), 60, np.uint8)
    hit = face >= 0
    colour = np.where((face[hit] < len(np.asarray(template.tris)))[:, None], SKIN, EYE)
    img[hit] = (colour * shade[face[hit], None]).astype(np.uint8)
    x0, y0, x1, y1 = CROP
    return img[y0:y1, x0:x1]


def main(argv=None) -> int:
    from PIL import Image

    from core.template import load, load_default

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=pathlib.Path)
    ap.add_argument("results", nargs="+", type=pathlib.Path)
    ap.add_argument("--side", choices=("l", "r"), default="r")
    ap.add_argument("--template", type=pathlib.Path)
    args = ap.parse_args(argv)
    template = load(args.template) if args.template else load_default()
    tiles = []
    for path in args.results:
        with np.load(path) as z:
            tiles.append(close_up(template, z["verts_neutral"], z["parts_neutral"], args.side))
    Image.fromarray(np.concatenate(tiles, axis=1)).save(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
