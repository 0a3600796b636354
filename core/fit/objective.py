"""The fitting objective: every loss term of the paper, evaluated on the
current variables, returned unweighted by name (the schedule weights them).

Units, so that weights of 1 are balanced:
- landmark: squared pixel error divided by the squared eye distance in the
  photo (scale-free); corners and surface points by MSE, silhouette (face
  oval) points by a one-sided Chamfer distance (eq. 1);
- normal: mean L1 between target and rendered normal maps (eq. n);
- shading: robust residual of the photo's skin pixels against the rendered
  normals under a low-order light fitted at the start of the stage and then
  held, relative to the mean level (``core/fit/shading.py``). Off in the
  presets: measured on ``bench photo``'s tuning people it makes the head
  worse (see the README, *Shading*);
- consistency: the colour each photo shows at fixed surface samples of the
  face, compared between the photos that see them (``core/fit/consistency.py``);
- dense: where a cue provider gave a template-UV map, each face vertex's pixel is the
  one whose UV is nearest its own (``core.priors.uv_targets``, fixed at the start);
  Huber of the pixel distance in eye distances (``DENSE_HUBER``), weighted by the map's
  confidence, averaged over the vertices that have a target;
- outline: where a view has the head's outline (``core.priors.outline``: the signed
  distance to the head's silhouette in the photo), the mesh's occluding contour is
  pulled onto it: vertices near the silhouette of the head as rendered at the stage's
  start, weighted by how squarely the view grazes them now (``OUTLINE_COS_SIGMA``);
  Huber of the signed distance in eye distances (``OUTLINE_HUBER``), averaged;
- pins: squared distance in centimetres, plus, while pins act, a hold on
  the rest of the head: the squared move (mm²) of each vertex since the pins
  were set (or the stage began), weighted by 1 − exp(−(d/PIN_HOLD_RADIUS)²)
  with d its distance to the nearest pin. A pin then sculpts its
  neighbourhood instead of sliding the head (a translation is free for the
  smooth vertex updates and nearly free for the landmarks along the view
  direction);
- regularisers compare with the mesh at the start of the stage (so the
  vertex stage keeps the rig/joint result's local shape): EV-GCC, conformal,
  face flip, eyelid curve flow, displacement (metres), Laplacian (mm²),
  mirror symmetry (mm²), anchor (mm², each vertex's move weighted by how
  unseen it is: 1 when it faces away from every camera, 0 from cos 0.5 on),
  controller and joint priors (squared values).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from core.geometry.constants import CM, MM
from core.geometry.laplacian import Laplacian
from core.geometry.topology import MeshTopology
from core.geometry.curves import CurveSet
from core.losses.conformal import conformal_loss, conformal_target
from core.losses.curve_flow import curve_flow_loss, curve_flow_target
from core.losses.displacement import displacement_loss
from core.losses.evgcc import evgcc_loss, evgcc_target
from core.losses.face_flip import face_flip_loss, face_flip_target
from core.losses.landmarks import LandmarkLayout, landmark_loss
from core.losses.laplacian_energy import laplacian_energy
from core.losses.normal_consistency import normal_consistency_loss
from core.losses.symmetry import symmetry_loss
from core.geometry.camera import Cameras
from core.geometry.safe import via_float64
from core.render import render_normals
from core.template import LMK_CONTOUR, LMK_SURFACE, TemplateModel
from core.template.mesh_layout import padded_polygons

from .control import Pins
from .observations import MAX_NORMAL_RES, ViewObservation
from .schedule import StageSpec
from .consistency import consistency_loss, face_samples, facing_weights, sample_image
from .shading import grey, shading_loss, view_light
from .variables import FitVariables

# Ordered vertex curves the eyeline term keeps smooth: regions named "*_lid" (eyelids).
EYELID_SUFFIX = "_lid"
CORNER_SUBSET = "corners"
# Anchor term: a vertex counts as fully seen from this cosine between its
# normal and the direction to the nearest-facing camera.
ANCHOR_COS = 0.5
# Pins: vertices this far (metres) from a pin are mostly held (weight 1 − 1/e).
PIN_HOLD_RADIUS = 0.015
# Weight of the hold (mm², mean over vertices) relative to the pins' own term.
PIN_HOLD_WEIGHT = 1.0
# Dense UV correspondences: a vertex takes a pixel whose UV is within this of its own
# (about 3 pixels of a face 400 px wide in the template's UV layout), and the residual
# is quadratic up to this many eye distances, linear beyond.
DENSE_UV_THRESHOLD = 0.01
DENSE_HUBER = 0.03
# Outline: a vertex is a contour candidate for a stage when its normal is within this
# cosine of perpendicular to the view and it lies next to the background of the head
# rendered at the stage's start (within OUTLINE_NEAR_PX pixels of a map at most
# OUTLINE_RES on its long side); during the stage a candidate weighs
# exp(-(cos / OUTLINE_COS_SIGMA)^2), so the contour slides as the surface turns.
OUTLINE_BAND_COS = 0.2
OUTLINE_COS_SIGMA = 0.05
OUTLINE_NEAR_PX = 1
OUTLINE_RES = 512
# The residual is quadratic up to this many eye distances, linear beyond.
OUTLINE_HUBER = 0.02


class Objective:
    """Loss terms for one template and a set of views."""

    def __init__(self, model: TemplateModel, views: list[ViewObservation]):
        t = model.template
        self.model = model
        self.views = views
        dev, dt = model.device, model.dtype
        polys = padded_polygons(t)
        self.topology = MeshTopology.from_faces(model.tris, t.num_verts, torch.as_tensor(polys, device=dev))
        self.laplacian = Laplacian.uniform(self.topology, dtype=dt).to(dev)
        self.mirror = torch.as_tensor(t.mirror, device=dev)
        self.lmk_tri = torch.as_tensor(t.lmk_tri, device=dev)
        self.lmk_bary = torch.as_tensor(t.lmk_bary, device=dev, dtype=dt)
        kind = np.asarray(t.lmk_kind)
        corners = np.asarray(t.lmk_subsets.get(CORNER_SUBSET, np.zeros(0, np.int64)), dtype=np.int64)
        is_corner = np.zeros(len(kind), bool)
        is_corner[corners] = True
        # MediaPipe gives known correspondences, so the corners of eq. 1 and
        # every other surface point share its MSE term; silhouette points (the
        # face oval), whose surface point changes with the view, use its
        # one-sided Chamfer term.
        point_ids = np.flatnonzero((kind == LMK_SURFACE) | is_corner)
        contour_ids = np.flatnonzero((kind == LMK_CONTOUR) & ~is_corner)
        self.layout = LandmarkLayout.from_ids(
            len(kind), point_ids, [contour_ids] if len(contour_ids) else [], device=dev
        )
        curves = [t.regions[name] for name in sorted(t.regions) if name.endswith(EYELID_SUFFIX)]
        curves = [c for c in curves if len(c) >= 4]
        self.curves = CurveSet.from_sequences(curves, t.num_verts, device=dev) if curves else None
        self.target_lmk = torch.as_tensor(np.stack([v.landmarks for v in views]), device=dev, dtype=dt)
        self.lmk_weight = torch.as_tensor(np.stack([v.landmark_weight for v in views]), device=dev, dtype=dt)
        iod = []
        for v in views:
            pts = v.landmarks
            # Outer eye corners (MediaPipe 33 and 263): the photo's scale.
            d = float(np.linalg.norm(pts[263] - pts[33])) if len(pts) > 263 else 0.0
            iod.append(d if d > 1 else max(v.width, v.height) * 0.25)
        self.iod = torch.as_tensor(iod, device=dev, dtype=dt)
        self.normal_targets = []
        for v in views:
            if v.normals is None:
                self.normal_targets.append(None)
                continue
            self.normal_targets.append((torch.as_tensor(v.normals, device=dev, dtype=dt),
                                        torch.as_tensor(v.normal_mask, device=dev), v.normal_scale))
        self.dense = self._dense_targets(views) if any(v.uv_map is not None for v in views) else None
        self.images, self.colour_images = [], []
        for v in views:
            if v.image is None:
                self.images.append(None)
                self.colour_images.append(None)
                continue
            img = torch.as_tensor(v.image, device=dev, dtype=dt)
            self.images.append((grey(img), torch.as_tensor(v.skin, device=dev), v.image_scale))
            self.colour_images.append((img, v.image_scale))
        self._stage_images = list(self.images)
        self._stage_colours = list(self.colour_images)
        # Per view: ((signed distance, weight) image (h, w, 2) of the head's outline, its
        # pixels per photo pixel), or None.
        self.outlines = [None if v.outline is None else
                         (torch.stack([torch.as_tensor(v.outline, device=dev, dtype=dt),
                                       torch.as_tensor(v.outline_weight, device=dev, dtype=dt)], -1), v.outline_scale)
                         for v in views]
        # The skin's own vertices may be contour points, except the neck's cut (its open rim).
        self.outline_vertices = ~_near_rim(self.topology)
        # Per stage: the contour candidates (M,) of any view and which view each serves (V, M).
        self.outline_select: tuple[torch.Tensor, torch.Tensor] | None = None
        tri_ids, bary = face_samples(model.tris.cpu().numpy(), t.regions["face_mask"])
        self.samples = (torch.as_tensor(tri_ids, device=dev), torch.as_tensor(bary, device=dev, dtype=dt))
        self.sample_weights: torch.Tensor | None = None  # (V, S), set per stage
        # Per view, the light the shading term holds during a stage (fitted to the stage's start).
        self.lights: list[torch.Tensor | None] = [None] * len(views)
        self.pins: tuple[torch.Tensor, torch.Tensor, float] | None = None
        self.pin_hold: tuple[torch.Tensor, torch.Tensor] | None = None  # (reference (N, 3), weights (N,))
        self.reference = None
        self._rig_pose = None  # (variables, DeformResult) while a stage moves no rig variable
        self._targets: dict = {}  # the regularisers' reference side, per stage
        self.anchor = None
        self.top_k = 512

    def _dense_targets(self, views: list[ViewObservation]):
        """(targets (Vw, N, 2) pixels, weights (Vw, N)) from the views' UV maps."""
        from core.priors.uv_targets import uv_map_to_vertex_targets
        from core.template.mesh_layout import vertex_uvs

        t = self.model.template
        face = np.zeros(t.num_verts, bool)
        face[t.regions["face_mask"]] = True
        targets = np.zeros((len(views), t.num_verts, 2), np.float32)
        weights = np.zeros((len(views), t.num_verts), np.float32)
        uvs = vertex_uvs(t)
        for i, v in enumerate(views):
            if v.uv_map is None:
                continue
            pix, valid = uv_map_to_vertex_targets(v.uv_map, v.uv_weight > 0, uvs, DENSE_UV_THRESHOLD)
            valid &= face
            col = np.clip(pix[valid, 0].astype(np.int64), 0, v.uv_map.shape[1] - 1)
            row = np.clip(pix[valid, 1].astype(np.int64), 0, v.uv_map.shape[0] - 1)
            targets[i, valid] = pix[valid]
            weights[i, valid] = v.uv_weight[row, col]
        dev, dt = self.model.device, self.model.dtype
        return torch.as_tensor(targets, device=dev, dtype=dt), torch.as_tensor(weights, device=dev, dtype=dt)

    # -- stage setup ----------------------------------------------------------
    def begin_stage(self, spec: StageSpec, variables: FitVariables) -> None:
        self._rig_pose = None
        if not variables.rig_trained():
            # The stage moves no rig variable: the skinned mesh is fixed, so deform once and
            # add the offsets per iteration (bitwise the same as deforming every time).
            with torch.no_grad():
                rest = self.model.deform(variables.controllers(), variables.joint_params(), parts=False)
            self._rig_pose = (variables, rest)
        with torch.no_grad():
            ref = self.posed(variables).verts.detach()
        self.reference = ref
        # The regularisers' reference side is fixed for the stage: computed once here.
        self._targets = {
            "evgcc": evgcc_target(ref, self.topology),
            "conformal": conformal_target(ref, self.topology.polygon_corners),
            "flip": face_flip_target(ref, self.model.tris),
            "curve": curve_flow_target(ref, self.curves) if self.curves is not None else None,
        }
        self.top_k = spec.top_k
        self.anchor = self._unseen_weights(ref, variables) if spec.weights.get("anchor", 0.0) else None
        self.set_normal_res(spec.normal_res)
        self._set_pin_hold(ref[0])
        self.outline_select = None
        if spec.weights.get("outline", 0.0) and any(o is not None for o in self.outlines):
            self.outline_select = self._outline_candidates(ref, variables)
        self.sample_weights = None
        if spec.weights.get("consistency", 0.0):
            self.sample_weights = self._sample_visibility(ref, variables)
        self.lights = [None] * len(self.views)
        if spec.weights.get("shading", 0.0):
            with torch.no_grad():
                for i in range(len(self.views)):
                    shaded = self._shading_inputs(ref, variables, i)
                    if shaded is not None:
                        self.lights[i] = view_light(*shaded)

    def sample_points(self, verts: torch.Tensor) -> torch.Tensor:
        """verts (1, N, 3) -> (S, 3) the face's surface samples."""
        from core.render import surface_points

        return surface_points(verts, self.model.tris, *self.samples)[0]

    def _sample_visibility(self, verts: torch.Tensor, variables: FitVariables) -> torch.Tensor | None:
        """(V, S) how squarely each photo sees each surface sample, 0 where hidden or without pixels."""
        from core.geometry.normals import vertex_normals
        from core.geometry.safe import safe_normalize
        from core.render import rasterize, surface_points, visible_points

        with torch.no_grad():
            pts = self.sample_points(verts)
            n = safe_normalize(surface_points(vertex_normals(verts, self.model.tris), self.model.tris, *self.samples)[0])
            _, R, t = variables.cameras()
            centres = -(R.transpose(1, 2) @ t[..., None])[..., 0]
            weights = facing_weights(pts, n, centres)
            for i, image in enumerate(self._stage_colours):
                if image is None:
                    weights[i] = 0.0
                    continue
                rgb, s = image
                cams = self.cameras(variables, scale=s, view=i, size=(rgb.shape[1], rgb.shape[0]))
                frags = rasterize(verts, self.model.tris, cams)
                weights[i] = weights[i] * visible_points(pts[None], cams, frags)[0].to(weights.dtype)
        return weights

    def _outline_candidates(self, verts: torch.Tensor, variables: FitVariables) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids (M,), select (V, M)): the vertices that may be on some view's outer silhouette this
        stage (see ``OUTLINE_BAND_COS``), and 1 where a view may see one there, else 0."""
        from core.geometry.normals import vertex_normals

        with torch.no_grad():
            n = vertex_normals(verts, self.model.tris)[0]
            cams = self.cameras(variables)
            cos = self._grazing(verts[0], n, cams)  # (V, N)
            select = (cos.abs() < OUTLINE_BAND_COS) & self.outline_vertices[None]
            for i, outline in enumerate(self.outlines):
                if outline is None:
                    select[i] = False
                    continue
                select[i] &= self._near_background(verts, variables, i)
            ids = torch.nonzero(select.any(0))[:, 0]  # once a stage: the only host read
        return ids, select[:, ids].to(verts.dtype)

    def _near_background(self, verts: torch.Tensor, variables: FitVariables, view: int) -> torch.Tensor:
        """(N,) bool: the vertices of ``verts`` (1, N, 3) within ``OUTLINE_NEAR_PX`` of the background
        around the head as ``view``'s camera sees it (a map at most ``OUTLINE_RES`` on its long side)."""
        import torch.nn.functional as F

        from core.render import rasterize

        w, h = variables.sizes[view]
        scale = min(1.0, OUTLINE_RES / max(w, h))
        size = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
        cam = self.cameras(variables, scale=scale, view=view, size=size)
        background = (rasterize(verts, self.model.tris, cam).face_id < 0).to(verts.dtype)
        k = 2 * OUTLINE_NEAR_PX + 1
        near = F.max_pool2d(background[:, None], k, stride=1, padding=OUTLINE_NEAR_PX)[0, 0]
        px, _ = cam.project(verts)
        return sample_image(near[..., None], px[0])[:, 0] > 0.5

    @staticmethod
    def _grazing(verts: torch.Tensor, normals: torch.Tensor, cams: Cameras) -> torch.Tensor:
        """(V, N) cosine between each vertex normal and the direction from each camera to it. verts,
        normals: (N, 3) seen by every view, or (V, N, 3) one mesh a view (a batch of people)."""
        ray = verts - cams.centers()[:, None]
        return (ray * normals).sum(-1) / ray.norm(dim=-1).clamp_min(1e-12)

    def _outline_loss(self, verts: torch.Tensor, variables: FitVariables) -> torch.Tensor:
        """The outline term (see the module's notes); zero without outlines or candidates."""
        from core.geometry.normals import vertex_normals

        if self.outline_select is None:
            return verts.new_zeros(())
        ids, select = self.outline_select
        cams = self.cameras(variables)
        points = verts[:, ids]  # (1, M, 3)
        with torch.no_grad():
            cos = self._grazing(points[0], vertex_normals(verts, self.model.tris)[0, ids], cams)
        # Projected and summed in float64 (``outline_value``).
        px, _ = cams.to(dtype=torch.float64).project(points.double().expand(len(self.views), -1, -1))  # (V, M, 2)
        terms = []
        for i, outline in enumerate(self.outlines):
            if outline is None:
                continue
            field = sample_image(outline[0], (px[i] * outline[1]).to(verts.dtype))  # (M, 2): distance, weight
            terms.append(outline_value(field, cos[i], select[i], self.iod[i]))
        return torch.stack(terms).mean().to(verts.dtype) if terms else verts.new_zeros(())

    def _unseen_weights(self, verts: torch.Tensor, variables: FitVariables) -> torch.Tensor:
        """(N,) in [0, 1]: 1 for vertices no view sees, 0 for those a view sees squarely.
        A vertex's coverage is its best cosine, over the views' cameras, between its
        normal and the direction to the camera, ramped from 0 at cos 0 to 1 at ANCHOR_COS."""
        from core.geometry.normals import vertex_normals

        with torch.no_grad():
            n = vertex_normals(verts, self.model.tris)[0]
            cos = -self._grazing(verts[0], n, self.cameras(variables))  # (V, N): toward each camera
            cover = (cos.max(0).values / ANCHOR_COS).clamp(0.0, 1.0)
        return 1.0 - cover

    def set_normal_res(self, res: int) -> None:
        """Compare normal maps at most ``res`` pixels on their long side from now on."""
        res = min(res, MAX_NORMAL_RES)
        self._stage_normals = [None if t is None else _downsample(*t, res) for t in self.normal_targets]
        self._stage_images = [None if t is None else _downsample_image(*t, res) for t in self.images]
        self._stage_colours = [None if t is None else _downsample_colour(*t, res) for t in self.colour_images]
        # The views with normal maps, grouped by map size, in view order within a group.
        groups: dict[tuple[int, int], list[int]] = {}
        for i, t in enumerate(self._stage_normals):
            if t is not None:
                groups.setdefault(tuple(t[0].shape[:2]), []).append(i)
        self._normal_groups = list(groups.values())

    def set_pins(self, pins: Pins | None, variables: FitVariables | None = None) -> None:
        """Pins from now on; the head as it is now (``variables``, else the stage's
        start) is what the hold keeps away from the pins."""
        if pins is None:
            self.pins = None
            self.pin_hold = None
            return
        if pins.ids.max(initial=-1) >= self.model.num_verts or pins.ids.min(initial=0) < 0:
            raise ValueError(f"pins name vertices outside 0..{self.model.num_verts - 1}")
        dev, dt = self.model.device, self.model.dtype
        self.pins = (torch.as_tensor(pins.ids, device=dev), torch.as_tensor(pins.targets, device=dev, dtype=dt),
                     float(pins.weight))
        if variables is not None:
            with torch.no_grad():
                self._set_pin_hold(self.posed(variables).verts[0].detach())
        elif self.reference is not None:
            self._set_pin_hold(self.reference[0])

    def _set_pin_hold(self, verts: torch.Tensor) -> None:
        """verts (N, 3): the head the hold keeps, with weights by distance to the nearest pin."""
        if self.pins is None:
            self.pin_hold = None
            return
        d = torch.cdist(verts, verts[self.pins[0]]).min(1).values  # (N,)
        self.pin_hold = (verts, 1.0 - torch.exp(-(d / PIN_HOLD_RADIUS) ** 2))

    # -- evaluation -----------------------------------------------------------
    def posed(self, variables: FitVariables):
        """The deformed skin (a ``DeformResult`` without parts) for the variables as they are now."""
        if self._rig_pose is not None and self._rig_pose[0] is variables:
            rest = self._rig_pose[1]
            return dataclasses.replace(rest, verts=rest.verts + variables.vertex_offsets())
        return self.model.deform(variables.controllers(), variables.joint_params(), variables.vertex_offsets(),
                                 parts=False)

    def current_verts(self, variables: FitVariables) -> np.ndarray:
        return self.posed(variables).verts[0].detach().cpu().numpy().astype(np.float32)

    def landmark_points(self, verts: torch.Tensor) -> torch.Tensor:
        """verts (1, N, 3) -> (L, 3) world positions of the embedded landmarks."""
        tri = self.model.tris[self.lmk_tri]  # (L, 3)
        return (verts[0][tri] * self.lmk_bary[..., None]).sum(1)

    def cameras(self, variables: FitVariables, scale: float = 1.0, view: int | None = None,
                size: tuple[int, int] | None = None) -> Cameras:
        """The views' cameras (one ``view`` or all), for images ``scale`` times the photo's;
        ``size`` (w, h) sets the image size where a map was cropped to whole pixels."""
        K, R, t = variables.cameras()
        sel = slice(None) if view is None else slice(view, view + 1)
        K = K[sel]
        if scale != 1.0:
            S = torch.diag(torch.tensor([scale, scale, 1.0], dtype=K.dtype, device=K.device))
            K = S @ K
        if size is None:
            w, h = variables.sizes[0 if view is None else view]
            size = (int(round(w * scale)), int(round(h * scale)))
        return Cameras(K, R[sel], t[sel], *size)

    def _shading_inputs(self, verts: torch.Tensor, variables: FitVariables, view: int):
        """(normals (h, w, 3), grey (h, w), weight (h, w)) of a view at the stage's resolution, or None."""
        image = self._stage_images[view]
        if image is None:
            return None
        gray, skin, s = image
        cams = self.cameras(variables, scale=s, view=view, size=(gray.shape[1], gray.shape[0]))
        rendered, mask = render_normals(verts, self.model.tris, cams)
        return rendered[0], gray, mask[0] * skin.to(verts.dtype)

    def terms(self, variables: FitVariables, weights: dict[str, float] | None = None) -> dict[str, torch.Tensor]:
        """The loss terms by name. With ``weights``, only the terms the stage weights
        (plus the cheap landmark term, for progress readouts) are evaluated."""
        def wanted(name: str) -> bool:
            return weights is None or weights.get(name, 0.0) != 0.0

        verts_of = term_inputs(self.posed(variables).verts, wanted)  # (1, N, 3) a term
        out: dict[str, torch.Tensor] = {}
        verts = verts_of["landmark"]
        pts = self.landmark_points(verts)
        uv, _ = self.cameras(variables).project(pts[None].expand(len(self.views), -1, -1))  # (Vw, L, 2)
        out["landmark"] = landmark_loss(uv, self.target_lmk, self.layout, self.iod, self.lmk_weight)
        if wanted("dense") and self.dense is not None:
            verts = verts_of["dense"]
            targets, w = self.dense
            px, _ = self.cameras(variables).project(verts.expand(len(self.views), -1, -1))  # (Vw, N, 2)
            r = ((px - targets) ** 2).sum(-1).add(1e-12).sqrt() / self.iod[:, None]
            out["dense"] = (w * huber(r, DENSE_HUBER)).sum() / w.sum().clamp_min(1e-9)
        if wanted("normal"):
            verts = verts_of["normal"]
            normal_terms = []
            for views in self._normal_groups:
                # Views whose maps share a size render as one batch (one visibility pass, one set of normals).
                cams = [self.cameras(variables, scale=self._stage_normals[i][2], view=i,
                                     size=(self._stage_normals[i][0].shape[1], self._stage_normals[i][0].shape[0]))
                        for i in views]
                # Back faces culled: the template is wound outward, so they never win where the
                # normal term looks (a hole shows nothing instead of the head's inside).
                rendered, mask = render_normals(verts, self.model.tris, Cameras.cat(cams), cull_back=True)
                for b, i in enumerate(views):
                    n_t, m_t, _ = self._stage_normals[i]
                    normal_terms.append(normal_consistency_loss(n_t[None], rendered[b:b + 1],
                                                                mask[b:b + 1] * m_t[None].to(verts.dtype)))
            out["normal"] = torch.stack(normal_terms).mean() if normal_terms else verts.new_zeros(())
        if wanted("outline"):
            out["outline"] = self._outline_loss(verts_of["outline"], variables)
        if wanted("shading"):
            verts = verts_of["shading"]
            shading_terms = []
            for i in range(len(self.views)):
                shaded = self._shading_inputs(verts, variables, i)
                if shaded is not None:
                    shading_terms.append(shading_loss(*shaded, light=self.lights[i]))
            out["shading"] = torch.stack(shading_terms).mean() if shading_terms else verts.new_zeros(())
        if wanted("consistency"):
            verts = verts_of["consistency"]
            if self.sample_weights is not None and sum(c is not None for c in self._stage_colours) >= 2:
                pts = self.sample_points(verts)
                colours = []
                for i, image in enumerate(self._stage_colours):
                    if image is None:
                        colours.append(pts.new_zeros(pts.shape[0], 3))
                        continue
                    rgb, s = image
                    uv, _ = self.cameras(variables, scale=s, view=i).project(pts[None])
                    colours.append(sample_image(rgb, uv[0]))
                out["consistency"] = consistency_loss(torch.stack(colours), self.sample_weights)
            else:
                out["consistency"] = verts.new_zeros(())
        if wanted("pins"):
            verts = verts_of["pins"]
            if self.pins is not None:
                ids, targets, weight = self.pins
                out["pins"] = weight * ((verts[0, ids] - targets) * CM).pow(2).sum(-1).mean()
                if self.pin_hold is not None:
                    held, w = self.pin_hold
                    out["pins"] = out["pins"] + weight * PIN_HOLD_WEIGHT * (
                        w * ((verts[0] - held) * MM).pow(2).sum(-1)).mean()
            else:
                out["pins"] = verts.new_zeros(())
        ref = self.reference
        tg = self._targets
        regularisers = {
            "evgcc": lambda v: evgcc_loss(v, ref, self.topology, target=tg["evgcc"]),
            "conformal": lambda v: conformal_loss(v, ref, self.topology.polygon_corners, self.top_k,
                                                  target=tg["conformal"]),
            "flip": lambda v: face_flip_loss(v, ref, self.model.tris, self.top_k, target=tg["flip"]),
            "curve": lambda v: curve_flow_loss(v, ref, self.curves, target=tg["curve"])
            if self.curves is not None else v.new_zeros(()),
            "disp": lambda v: displacement_loss(variables.vertex_offsets()),
            "laplacian": lambda v: laplacian_energy(v * MM, ref * MM, self.laplacian),
            "anchor": lambda v: (self.anchor * ((v[0] - ref[0]) * MM).pow(2).sum(-1)).mean()
            if self.anchor is not None else v.new_zeros(()),
            "symmetry": lambda v: symmetry_loss(v * MM, self.mirror),
            "controller_prior": lambda v: (variables.shape ** 2).mean() + (variables.expression ** 2).mean(),
            "joint_prior": lambda v: (variables.joints ** 2).mean(),
        }
        for name, term in regularisers.items():
            if wanted(name):
                out[name] = term(verts_of[name])
        return out



# The loss terms in the order their vertex gradients are added (``term_inputs``).
TERM_ORDER = ("landmark", "dense", "normal", "outline", "shading", "consistency", "pins", "evgcc", "conformal",
              "flip", "curve", "disp", "laplacian", "anchor", "symmetry", "controller_prior", "joint_prior")


class _TermCopies(torch.autograd.Function):
    """``count`` copies of a tensor whose gradients are added back in the copies' order."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, count: int):
        ctx.set_materialize_grads(False)
        return tuple(x.clone() for _ in range(count))

    @staticmethod
    def backward(ctx, *grads):
        total = None
        for g in grads:
            if g is not None:
                total = g if total is None else total + g
        return total, None


def term_inputs(verts: torch.Tensor, wanted) -> dict[str, torch.Tensor]:
    """Each wanted term of ``TERM_ORDER`` (the landmark term always) gets its own copy of the posed
    vertices, and the terms' gradients reach them added in ``TERM_ORDER``. Left to autograd, the sum
    follows the order it happens to run the terms' graphs in, which differs between a solo and a
    batched objective by a rounding; the fit turns such a rounding into tenths of a millimetre
    (README, *Many people in one optimisation*)."""
    names = [k for k in TERM_ORDER if k == "landmark" or wanted(k)]
    if not verts.requires_grad:
        return dict.fromkeys(names, verts)
    return dict(zip(names, _TermCopies.apply(verts, len(names))))


def outline_value(field: torch.Tensor, cos: torch.Tensor, select: torch.Tensor, iod: torch.Tensor) -> torch.Tensor:
    """One view's outline term from its outline image sampled at the candidates (field (..., M, 2):
    signed distance, weight), their grazing cosines ``cos`` and stage selection ``select`` (..., M; no
    gradient) and the eye distance ``iod`` (broadcasting to (...,)); float64, (...,).

    The candidates' projection and these sums run in float64: a batch of people samples every
    person at the candidates of all (zero weight for the others'), so a person's sums run over
    other positions than their solo fit's, and float32 would round them differently; in float64 the
    difference stays far below a float32 step."""
    soft = (select * via_float64(torch.exp, -(cos / OUTLINE_COS_SIGMA) ** 2)).double()
    field = field.double()
    w = soft * (field[..., 1].detach() > 0.999).double()
    r = field[..., 0].abs() / iod.double()[..., None]
    return (w * huber(r, OUTLINE_HUBER)).sum(-1) / w.sum(-1).clamp_min(1e-9)


def huber(r: torch.Tensor, delta: float) -> torch.Tensor:
    """Huber of non-negative residuals: r²/2 up to ``delta``, linear beyond."""
    return torch.where(r < delta, 0.5 * r ** 2, delta * (r - 0.5 * delta))


def _near_rim(topology: MeshTopology, rings: int = 2) -> torch.Tensor:
    """(N,) bool: vertices within ``rings`` edges of an open boundary of the mesh."""
    edges = topology.edges
    near = torch.zeros(topology.num_verts, dtype=torch.bool, device=edges.device)
    near[edges[topology.edge_face_count == 1].flatten()] = True
    for _ in range(rings):
        near[edges[near[edges].any(1)].flatten()] = True
    return near


def _downsample(normals: torch.Tensor, mask: torch.Tensor, scale: float, res: int):
    """Area-average a normal map (h, w, 3) + weights (h, w) in [0, 1] by an integer factor so
    its long side is at most ``res``; pixel centres stay aligned (K scales by 1/step). A
    coarse pixel keeps its mean weight when every fine pixel under it has a normal, else 0.
    Returns (normals, weights, scale) with scale = map pixels per image pixel."""
    h, w = mask.shape
    step = max(1, int(np.ceil(max(h, w) / res)))
    if step == 1:
        return normals, mask, scale
    h2, w2 = h // step, w // step
    n = normals[: h2 * step, : w2 * step].reshape(h2, step, w2, step, 3)
    m = mask[: h2 * step, : w2 * step].reshape(h2, step, w2, step).to(normals.dtype)
    n_sum = (n * m[..., None]).sum((1, 3))
    full = (m > 0).to(normals.dtype).mean((1, 3)) > 0.999
    n_avg = n_sum / n_sum.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return n_avg, torch.where(full, m.mean((1, 3)), torch.zeros_like(n_avg[..., 0])), scale / step


def _area_step(h: int, w: int, res: int) -> int:
    """The integer factor that brings an (h, w) image's long side to at most ``res``."""
    return max(1, int(np.ceil(max(h, w) / res)))


def _area_mean(x: torch.Tensor, step: int) -> torch.Tensor:
    """Mean over step x step blocks of an (h, w, ...) image (cropped to whole blocks)."""
    h2, w2 = x.shape[0] // step, x.shape[1] // step
    return x[: h2 * step, : w2 * step].reshape(h2, step, w2, step, *x.shape[2:]).mean((1, 3))


def _downsample_image(gray: torch.Tensor, skin: torch.Tensor, scale: float, res: int):
    """Area-average a grey image (h, w) and its skin mask (h, w) so the long side is at
    most ``res``; the mask keeps pixels wholly on skin.
    Returns (grey, skin, scale) with scale = image pixels per photo pixel."""
    step = _area_step(*skin.shape, res)
    if step == 1:
        return gray, skin, scale
    return _area_mean(gray, step), _area_mean(skin.to(gray.dtype), step) > 0.999, scale / step


def _downsample_colour(rgb: torch.Tensor, scale: float, res: int):
    """Area-average a colour image (h, w, 3) so the long side is at most ``res``.
    Returns (rgb, scale) with scale = image pixels per photo pixel."""
    step = _area_step(*rgb.shape[:2], res)
    if step == 1:
        return rgb, scale
    return _area_mean(rgb, step), scale / step
