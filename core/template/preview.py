"""A picture of the template: wireframe front/side views, joints, landmarks, controller sweeps."""

from __future__ import annotations

import pathlib

import numpy as np
import torch

from core.geometry.mesh_layout import polygon_edges, surface_points

from .model import LMK_CONTOUR, LMK_SURFACE, Template

SWEEPS = (  # (title, controller, value, view)
    ("jawOpen = 1", "jawOpen", 1.0, "side"),
    ("nose width −1", "nose-scale-horiz-decr-incr", -1.0, "front"),
    ("nose width +1", "nose-scale-horiz-decr-incr", 1.0, "front"),
)


def unique_edges(t: Template) -> np.ndarray:
    """(E, 2) int64 undirected polygon edges."""
    return np.unique(polygon_edges(t.poly_verts, t.poly_start), axis=0)


def _project(points: np.ndarray, view: str) -> np.ndarray:
    """(M, 3) world points -> (M, 2) drawing coordinates: front looks along +Y, side along −X."""
    return points[:, [0, 2]] if view == "front" else np.stack([-points[:, 1], points[:, 2]], 1)


def landmark_points(t: Template, verts: np.ndarray) -> np.ndarray:
    """(L, 3) landmark positions on ``verts`` (N, 3) from triangle + barycentrics."""
    return surface_points(verts, t.tris, t.lmk_tri, t.lmk_bary)


def draw_preview(t: Template, out: str | pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    from .deform import TemplateModel

    model = TemplateModel(t, dtype=torch.float64)
    edges = unique_edges(t)
    rest = model.deform(model.default_controllers())
    fig, axes = plt.subplots(2, 3, figsize=(15, 10.5), dpi=110)

    def wire(ax, verts, view, color="0.35", lw=0.25, subset=None):
        p = _project(verts, view)
        e = edges if subset is None else edges[subset]
        ax.add_collection(LineCollection(p[e], colors=color, linewidths=lw))
        ax.set_aspect("equal")
        ax.autoscale_view()
        ax.set_xticks([])
        ax.set_yticks([])

    verts = rest.verts[0].numpy()
    parts = rest.parts[0].numpy()
    heads = t.joint_heads.astype(np.float64)
    for ax, view in zip(axes[0, :2], ("front", "side")):
        wire(ax, verts, view)
        pp = _project(parts, view)
        ax.scatter(pp[:, 0], pp[:, 1], s=0.3, c="tab:cyan", label="eyes, teeth, tongue")
        h, tl = _project(heads, view), _project(t.joint_tails.astype(np.float64), view)
        ax.add_collection(LineCollection(np.stack([h, tl], 1), colors="tab:orange", linewidths=1.0))
        ax.scatter(h[:, 0], h[:, 1], s=8, c="tab:red", zorder=3, label=f"{t.num_joints} joints")
        if t.num_landmarks:
            lm = _project(landmark_points(t, verts), view)
            for kind, color in ((LMK_SURFACE, "tab:green"), (LMK_CONTOUR, "tab:purple")):
                sel = t.lmk_kind == kind
                ax.scatter(lm[sel, 0], lm[sel, 1], s=4, c=color, zorder=4,
                           label=f"{sel.sum()} {'surface' if kind == LMK_SURFACE else 'contour'} landmarks")
        ax.set_title(f"{view}: {t.num_verts} verts, {t.num_quads} quads" + ("" if t.num_landmarks else ", 0 landmarks"))
        ax.legend(loc="lower left", fontsize=7, markerscale=2)

    ax = axes[0, 2]
    wire(ax, verts, "front", color="0.75")
    for name, color in (("face_mask", "tab:blue"), ("lips", "tab:red")):
        if name not in t.regions:
            continue
        p = _project(verts[t.regions[name]], "front")
        ax.scatter(p[:, 0], p[:, 1], s=0.6, c=color, label=name)
    for name in sorted(t.regions):
        if name.endswith(("_lid", "_inner", "outer_ring")):
            p = _project(verts[t.regions[name]], "front")
            ax.plot(p[:, 0], p[:, 1], lw=1.2, label=name if "lid" not in name or name.startswith("eye_l") else None)
        if name.endswith("corners"):
            p = _project(verts[t.regions[name]], "front")
            ax.scatter(p[:, 0], p[:, 1], s=18, marker="x", c="k", zorder=5)
    ax.set_title("regions (x: corners)")
    ax.legend(loc="lower left", fontsize=7, markerscale=4)

    sweeps = [s for s in SWEEPS if s[1] in t.ctrl_names]
    for ax in axes[1, len(sweeps):]:
        ax.set_axis_off()
    for ax, (title, ctrl, value, view) in zip(axes[1], sweeps):
        r = model.default_controllers()
        r[0, t.ctrl_index(ctrl)] = value
        swept = model.deform(r)
        # zoomed front views show only the front of the face (no mouth bag or back of the head)
        nose_y = verts[:, 1].min()
        front = (verts[edges, 1] < nose_y + 0.03).all(1) if view == "front" else None
        wire(ax, verts, view, color="0.6", lw=0.6, subset=front)
        wire(ax, swept.verts[0].numpy(), view, color="tab:blue", lw=0.6, subset=front)
        pp = _project(swept.parts[0].numpy(), view)
        ax.scatter(pp[:, 0], pp[:, 1], s=0.3, c="tab:cyan")
        moved = np.linalg.norm(swept.verts[0].numpy() - verts, axis=1).max()
        ax.set_title(f"{title}: max move {moved * 1000:.1f} mm (grey: neutral)")
        if view == "front":  # zoom on the nose
            nose = verts[np.argmin(verts[:, 1])]
            ax.set_xlim(nose[0] - 0.03, nose[0] + 0.03)
            ax.set_ylim(nose[2] - 0.03, nose[2] + 0.025)
    source = str(t.info.get("source", ""))
    title = f"template {source}" if source.startswith("imported") else \
        "Likeness default head template (MakeHuman/MPFB2, CC0)"
    fig.suptitle(f"{title} — metres, Blender frame")
    fig.tight_layout()
    out = pathlib.Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
