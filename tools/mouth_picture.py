"""Close-ups of fitted heads' mouths in one pose, side by side.

As the rig checks' front camera sees them (core/template/face_checks.py): skin in flesh tone,
teeth ivory, gums pink, the tongue red.

    .venv/bin/python tools/mouth_picture.py OUT.png RESULT.glb ... [--pose jawOpen] [--template T.npz]

Each RESULT.glb is a ``likeness fit`` result (or a template's GLB) made with the template
(default: the default head); it is posed in Blender (the ``bpy`` module) as
``scripts/animation_check.py`` poses it, so the picture shows what that check measures.
"""

from __future__ import annotations

import pathlib
import sys

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
for folder in (REPO, REPO / "scripts"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

CROP = (20, 110, 620, 590)  # of the checks' 640² window, 0.1 mm a pixel: 60 x 48 mm


def main(argv=None) -> int:
    import bpy

    from animation_check import posed_head
    from core.template.rig_poses import POSES
    from face_closeup import close_up, picture_args, save_side_by_side

    args, template = picture_args(__doc__.splitlines()[0], lambda ap: ap.add_argument(
        "--pose", default="jawOpen", choices=[name for name, *_ in POSES]), argv)
    tiles = []
    for path in args.results:
        verts, parts = posed_head(bpy, path, args.pose, template)
        tiles.append(close_up(template, verts, parts, "lips_outer_ring", CROP))
    save_side_by_side(args.out, tiles)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
