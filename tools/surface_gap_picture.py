"""Where an imported head has no surface: the default head coloured by its distance to it.

    .venv/bin/python tools/surface_gap_picture.py OUT.png HEAD.npz [--vmax-mm 3]

HEAD.npz is a template ``likeness template import`` (or ``likeness bench adopt --out``)
wrote. It is placed on the default head by the scorer's similarity ICP over its face, and
every vertex of the default head is coloured by its distance to that surface: front and
three-quarter views of the whole head, then the mouth and an eye close up. The title gives
the share of the face's vertices more than 0.8 mm away and their share of the summed
distance (what a per-vertex score of the head reads there).
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

FAR_MM = 0.8


def surface_gap(default, head) -> np.ndarray:
    """(N,) mm from each of ``default``'s vertices to ``head``'s surface, after the similarity
    that lays ``head``'s face on ``default``'s (``core.geometry.similarity.icp_similarity``)."""
    from core.bench.score import distances_to_surface
    from core.geometry.similarity import as_trimesh, icp_similarity
    from core.geometry.constants import MM

    verts = np.asarray(head.verts, np.float64)
    s, R, t, _ = icp_similarity(verts[head.regions["face_mask"]], as_trimesh(default.verts, default.tris))
    placed = s * verts @ R.T + t
    return distances_to_surface(np.asarray(default.verts, np.float64), placed, head.tris) * MM


def draw(out: pathlib.Path, default, gap_mm: np.ndarray, title: str, vmax_mm: float = 3.0) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from core.bench.photo import _draw

    cmap = matplotlib.colormaps["inferno"]
    colours = cmap(np.clip(gap_mm / vmax_mm, 0, 1))[:, :3] * 0.9 + 0.1
    v = np.asarray(default.verts, np.float64)
    face = v[default.regions["face_mask"]].mean(0)
    mouth = v[default.regions["mouth_ring"]].mean(0)
    eye = v[default.regions["eye_r_ring"]].mean(0)
    # (label, centre, yaw, zoom): zoom > 1 brings the camera closer by drawing the head larger
    views = (("front", face, 0.0, 1.0), ("three-quarter", face, 40.0, 1.0),
             ("mouth", mouth, 20.0, 3.0), ("eye", eye, 25.0, 3.5))
    fig, axes = plt.subplots(1, len(views), figsize=(3.0 * len(views) + 0.8, 3.4))
    fig.subplots_adjust(left=0.01, right=0.9, top=0.82, bottom=0.02, wspace=0.03)
    for ax, (label, centre, yaw, zoom) in zip(axes, views):
        scaled = centre + (v - centre) * zoom
        ax.imshow(_draw(scaled, default.tris, colours, centre, yaw))
        ax.set_title(label)
        ax.set_xticks([])
        ax.set_yticks([])
    sm = matplotlib.cm.ScalarMappable(cmap=cmap, norm=matplotlib.colors.Normalize(0, vmax_mm))
    fig.colorbar(sm, cax=fig.add_axes([0.92, 0.1, 0.015, 0.65]), label="mm to the imported head")
    fig.suptitle(title, fontsize=10)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + ".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=pathlib.Path)
    parser.add_argument("head", type=pathlib.Path, help="an imported head's template (.npz)")
    parser.add_argument("--vmax-mm", type=float, default=3.0)
    args = parser.parse_args(argv)
    if not args.head.is_file():
        print(f"surface_gap_picture: no such file: {args.head}", file=sys.stderr)
        return 2

    from core.template import load, load_default

    default = load_default()
    gap = surface_gap(default, load(args.head))
    on_face = gap[default.regions["face_mask"]]
    far = on_face > FAR_MM
    title = (f"{args.head.stem}: {100 * far.mean():.0f} % of the default face's vertices lie more than "
             f"{FAR_MM} mm from it,\nholding {100 * on_face[far].sum() / max(on_face.sum(), 1e-12):.0f} % of "
             f"their summed distance (face mean {on_face.mean():.2f} mm)")
    draw(args.out, default, gap, title, args.vmax_mm)
    print(f"wrote {args.out}: {title.replace(chr(10), ' ')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
