"""Close-ups of one eye of fitted heads at rest, side by side.

Skin in flesh tone, the eyeball in white, seen by the rig checks' front camera
(core/template/face_checks.py).

    .venv/bin/python tools/eye_picture.py OUT.png --side r [--template T.npz] RESULT.npz ...

Each RESULT.npz is a ``likeness fit`` result (``verts_neutral``, ``parts_neutral``) made with the
template (default: the default head). An eyeball standing through the skin shows as white
outside the lid opening.
"""

from __future__ import annotations

import pathlib
import sys

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

CROP = (120, 170, 520, 470)  # of the checks' 640² window, 0.1 mm a pixel: 40 x 30 mm


def main(argv=None) -> int:
    from face_closeup import close_up, picture_args, save_side_by_side

    args, template = picture_args(__doc__.splitlines()[0], lambda ap: ap.add_argument(
        "--side", choices=("l", "r"), default="r"), argv)
    tiles = []
    for path in args.results:
        with np.load(path) as z:
            tiles.append(close_up(template, z["verts_neutral"], z["parts_neutral"], f"eye_{args.side}_ring", CROP))
    save_side_by_side(args.out, tiles)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
