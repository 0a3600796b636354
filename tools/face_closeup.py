"""A close-up of a head and its parts seen by the rig checks' front camera
(``core/template/face_checks.front_scene``): skin in flesh tone, each part in its own colour,
lit from the front. Shared by ``tools/eye_picture.py`` and ``tools/mouth_picture.py``.
"""

from __future__ import annotations

import numpy as np

SKIN = np.array([225.0, 180.0, 160.0])
# Part colours by the part's name (the first name fragment that matches); eyes and corneas white.
PART_COLOURS = (("teeth", (240.0, 232.0, 205.0)), ("gums", (205.0, 105.0, 115.0)),
                ("tongue", (175.0, 70.0, 85.0)), ("", (245.0, 245.0, 250.0)))
BACKGROUND = 60


def part_colour(name: str) -> np.ndarray:
    """RGB (3,) float of a part called ``name``."""
    return np.array(next(c for key, c in PART_COLOURS if key in name))


def close_up(template, verts: np.ndarray, parts: np.ndarray, region: str, crop: tuple[int, int, int, int]) -> np.ndarray:
    """(h, w, 3) uint8: the head (N, 3) and its parts (P, 3), template frame, seen from the front
    by the checks' camera centred on ``region``, cut to ``crop`` (x0, y0, x1, y1) of its window
    (0.1 mm a pixel)."""
    import torch

    from core.geometry.normals import face_normals
    from core.render.rasterize import rasterize
    from core.geometry.mesh_layout import fan_triangulate
    from core.template.face_checks import front_scene
    from core.template.mesh_layout import padded_part_polygons

    allv, tris, cam = front_scene(template, torch.as_tensor(np.asarray(verts)).float(),
                                  torch.as_tensor(np.asarray(parts)).float(), region)
    face = rasterize(allv, tris, cam).face_id[0].numpy()
    n = face_normals(allv, tris)[0].numpy()
    shade = np.clip(0.8 * np.abs(n[:, 1]) + 0.2 * np.abs(n[:, 2]) + 0.2, 0.1, 1.0)
    # A colour per triangle: the skin's, then the parts' (front_scene's order: their polygons fan-split).
    polys = padded_part_polygons(template)
    _, tri_polygon = fan_triangulate(polys)
    palette = np.stack([part_colour(name) for name in template.part_names])
    part_rgb = palette[np.asarray(template.part_vert_part)[polys[tri_polygon, 0]]]
    colours = np.concatenate([np.tile(SKIN, (len(np.asarray(template.tris)), 1)), part_rgb])
    img = np.full(face.shape + (3,), BACKGROUND, np.uint8)
    hit = face >= 0
    img[hit] = (colours[face[hit]] * shade[face[hit], None]).astype(np.uint8)
    x0, y0, x1, y1 = crop
    return img[y0:y1, x0:x1]


def picture_args(description: str, extra, argv=None):
    """Parse a close-up tool's command line: OUT.png, the results, ``--template``, and what
    ``extra(parser)`` adds. Returns (args, template)."""
    import argparse
    import pathlib

    from core.template import load, load_default

    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("out", type=pathlib.Path)
    ap.add_argument("results", nargs="+", type=pathlib.Path)
    ap.add_argument("--template", type=pathlib.Path, help="the template the results were fitted through "
                    "(default: the default head)")
    extra(ap)
    args = ap.parse_args(argv)
    return args, load(args.template) if args.template else load_default()


def save_side_by_side(out, tiles: list[np.ndarray]) -> None:
    """Write the tiles (h, w, 3) side by side as one PNG at ``out``."""
    from PIL import Image

    Image.fromarray(np.concatenate(tiles, axis=1)).save(out)
    print(f"wrote {out}")
