"""A picture of an imported head: what the detector saw, what was transferred, and a pose.

Panels (renders of the template in the canonical frame, front and three-quarter):
the detector's landmarks on the head (red) beside the transferred embedding
(green); the transferred regions (face mask tinted, lips, eye and lip curves);
the head with jawOpen and eyeBlinkLeft at 1, through the transferred keys.
"""

from __future__ import annotations

import pathlib

import numpy as np
import torch

from core.geometry.camera import Cameras
from core.geometry.mesh_layout import surface_points
from core.template import LMK_SURFACE, Template, TemplateModel

from .register import RENDER_PX, Registration, render_grey, view_camera

POSE = {"jawOpen": 1.0, "eyeBlinkLeft": 1.0}


def _pixels(camera: Cameras, points: np.ndarray) -> np.ndarray:
    uv, _ = camera.project(torch.as_tensor(points, dtype=camera.dtype)[None])
    return uv[0].numpy()


def draw_import(t: Template, reg: Registration, out: str | pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    verts = t.verts.astype(np.float64)
    fig, axes = plt.subplots(2, 3, figsize=(15, 10), dpi=100)
    lmk = surface_points(verts, t.tris, t.lmk_tri, t.lmk_bary)
    surface = t.lmk_kind == LMK_SURFACE
    model = TemplateModel(t, dtype=torch.float64)
    ctrl = model.default_controllers()
    for name, value in POSE.items():
        if name in t.ctrl_names:
            ctrl[0, t.ctrl_index(name)] = value
    posed = model.deform(ctrl).verts[0].numpy()
    for row, yaw in enumerate((0.0, 35.0)):
        cam = view_camera(verts, yaw)
        image = render_grey(verts, t.tris, cam)
        ax = axes[row, 0]
        ax.imshow(image)
        found = _pixels(cam, reg.found[reg.found_ok & surface])
        moved = _pixels(cam, lmk[surface])
        ax.scatter(found[:, 0], found[:, 1], s=3, c="tab:red", label="found by the detector")
        ax.scatter(moved[:, 0], moved[:, 1], s=3, c="tab:green", label="transferred embedding")
        ax.legend(loc="lower left", fontsize=8, markerscale=3)
        ax.set_title(f"landmarks ({'front' if yaw == 0 else 'three-quarter'})")
        ax = axes[row, 1]
        ax.imshow(image)
        face = _pixels(cam, verts[t.regions.get("face_mask", np.zeros(0, np.int64))])
        ax.scatter(face[:, 0], face[:, 1], s=1, c="tab:blue", alpha=0.25, label="face_mask")
        lips = _pixels(cam, verts[t.regions.get("lips", np.zeros(0, np.int64))])
        ax.scatter(lips[:, 0], lips[:, 1], s=2, c="tab:red", label="lips")
        for name in sorted(t.regions):
            if name.endswith(("_ring", "_lid", "_inner")):
                p = _pixels(cam, verts[t.regions[name]])
                ax.plot(p[:, 0], p[:, 1], lw=1.0)
            elif name.endswith("corners"):
                p = _pixels(cam, verts[t.regions[name]])
                ax.scatter(p[:, 0], p[:, 1], s=20, marker="x", c="k")
        ax.legend(loc="lower left", fontsize=8, markerscale=4)
        ax.set_title("regions (lines: rings and lids; x: corners)")
        ax = axes[row, 2]
        ax.imshow(render_grey(posed, t.tris, cam))
        ax.set_title(", ".join(f"{k} = {v:g}" for k, v in POSE.items()) + " (transferred keys)")
    for ax in axes.flat:
        ax.set_xlim(0, RENDER_PX)
        ax.set_ylim(RENDER_PX, 0)
        ax.set_xticks([])
        ax.set_yticks([])
    conf = t.info.get("confidence", {})
    fig.suptitle(f"{t.info.get('source', 'imported head')}: {t.num_verts} vertices; landmarks vs detector median "
                 f"{conf.get('landmarks_vs_detector_median_mm', float('nan')):.2f} mm; "
                 f"{100 * conf.get('surface_matched', float('nan')):.0f} % of the surface matched")
    fig.tight_layout()
    out = pathlib.Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)


def visible_edges(verts: np.ndarray, t: Template, camera: Cameras) -> np.ndarray:
    """(E, 2) int64 vertex ids of the sides of the polygons the camera sees (any of their pixels)."""
    from core.geometry.mesh_layout import polygon_edges
    from core.render import rasterize

    face_id = rasterize(torch.as_tensor(verts, dtype=torch.float64)[None],
                        torch.as_tensor(t.tris, dtype=torch.int64), camera).face_id[0].numpy()
    seen = np.zeros(t.num_polys, bool)
    seen[t.tri_poly[np.unique(face_id[face_id >= 0])]] = True
    corner_seen = np.repeat(seen, np.diff(t.poly_start))
    return np.unique(polygon_edges(t.poly_verts, t.poly_start)[corner_seen], axis=0)


def draw_fits(rows: list[dict], out: str | pathlib.Path) -> None:
    """Heads before and after a fit through them: a row per head, with ``name``, ``template`` (the
    imported Template: its rest shape is the head as it came in), ``fitted`` (N, 3) the fit's
    neutral vertices in the template's frame, and ``overlay`` (H, W, 3) uint8 the fit drawn over
    the photo. Columns: the photo with the fit, the head as imported and as fitted (front, with its
    own polygons' edges on the fitted one), and both from three-quarter view."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    titles = ("photo, fit drawn over it", "as imported, front", "fitted, front (its own polygons)",
              "as imported, three-quarter", "fitted, three-quarter")
    fig, axes = plt.subplots(len(rows), len(titles), figsize=(3.2 * len(titles), 3.4 * len(rows)), dpi=100,
                             squeeze=False)
    for r, row in enumerate(rows):
        t = row["template"]
        before = t.verts.astype(np.float64)
        after = np.asarray(row["fitted"], np.float64)
        axes[r, 0].imshow(row["overlay"])
        for c, (verts, yaw, wire) in enumerate(((before, 0.0, False), (after, 0.0, True),
                                                 (before, 35.0, False), (after, 35.0, False)), start=1):
            # One camera per view for both shapes: framed on the head as imported.
            cam = view_camera(before, yaw)
            ax = axes[r, c]
            ax.imshow(render_grey(verts, t.tris, cam))
            if wire:
                ends = _pixels(cam, verts[visible_edges(verts, t, cam).reshape(-1)]).reshape(-1, 2, 2)
                ax.add_collection(LineCollection(ends, colors="k", linewidths=0.25, alpha=0.35))
            ax.set_xlim(0, RENDER_PX)
            ax.set_ylim(RENDER_PX, 0)
        axes[r, 0].set_ylabel(f"{row['name']}\n{t.num_verts:,} vertices, {t.num_polys:,} polygons", fontsize=10)
        for c, ax in enumerate(axes[r]):
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[c], fontsize=10)
    fig.tight_layout()
    out = pathlib.Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + ".tmp" + out.suffix)
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(out)
