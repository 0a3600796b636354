"""Many people in one optimisation: B heads, one photo each, fitted side by side.

A studio batch fits hundreds of people with the same schedule. Fitting them one
after another launches the same small kernels B times an iteration; here every
person's variables carry a leading people dimension, so an iteration deforms
the B heads in one call, renders their normal maps in one call a map size, and
evaluates every loss term for all of them at once. Each term is computed per
person (a (B,) vector, the value a solo fit of that person gets), and the
optimiser steps on their sum: a person's gradient is then their own solo
gradient, and Adam's element-wise steps keep each person on their solo
trajectory (``tests/core/fit/test_people.py`` checks the heads against solo
fits).

What stays per person, as in a solo fit (``core/fit/loop.py``): the plateau
gate (a person whose loss stopped improving takes no more steps while the
others go on), the divergence test and its rollback (a person's slice of the
variables and moments goes back to their last good check, their steps halve),
and the step count of Adam's bias correction. A person that stays non-finite
after ``MAX_ROLLBACKS`` is dropped from the batch with their error; the others
finish. The clock is shared: a stage ends once every person has stopped.

Batched here: one photo a person, the stages' gradient steps and the terms in
``PEOPLE_TERMS`` (everything the single-photo schedules weight). Several
photos of one person, bundle adjustment, pins and the photo-colour terms run
as solo fits (``fit_people`` sends them there).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from core.geometry.camera import Cameras
from core.geometry.constants import MM
from core.geometry.large_steps import LargeSteps
from core.geometry.safe import safe_divide
from core.losses.conformal import conformal_per_corner
from core.losses.curve_flow import curve_flow_per_feature
from core.losses.displacement import displacement_per_vertex
from core.losses.evgcc import evgcc_per_vertex
from core.losses.face_flip import face_flip_per_face
from core.losses.landmarks import landmark_terms
from core.losses.laplacian_energy import laplacian_energy_per_vertex
from core.losses.normal_consistency import normal_consistency_map
from core.losses.symmetry import symmetry_per_vertex
from core.losses.top_k import resolve_k
from core.render import render_normals
from core.template import Template, TemplateModel
from core.template.deform import JOINT_PARAM_DIM

from .camera_init import initial_cameras
from .consistency import sample_images
from .control import FitControl
from .loop import CHECK_EVERY, DIVERGENCE_FACTOR, MAX_ROLLBACKS, StageReport, run_meta
from .objective import OUTLINE_BAND_COS, Objective, outline_value, term_inputs
from .observations import ViewObservation
from .options import FitOptions
from .result import assemble_result
from .schedule import OPTIMISE, StageSpec, schedule_for, schedule_to_dict
from .variables import JOINT_TRANSLATION_UNIT, FitVariables

# The loss terms a batched fit evaluates per person (a stage weighting any other runs solo).
PEOPLE_TERMS = frozenset({"landmark", "normal", "outline", "pins", "evgcc", "conformal", "flip", "curve", "disp",
                          "laplacian", "symmetry", "controller_prior", "joint_prior"})


class PeopleVariables(FitVariables):
    """The fit's variables for B people, one photo each: every tensor has a leading people dimension
    (shape (B, S), joints (B, J, 9), offsets (B, N, 3); cameras (B, ...) as B views)."""

    def __init__(self, model: TemplateModel, cameras: list[Cameras]):
        """cameras: one batch-1 ``Cameras`` a person (their photo's)."""
        super().__init__(model, cameras, shared_focal=False)
        self.people = b = len(cameras)
        with torch.no_grad():
            for name in ("shape", "expression", "pose", "joints", "offsets"):
                solo = getattr(self, name)
                setattr(self, name, solo.detach()[None].repeat(b, *([1] * solo.dim())).requires_grad_(True))

    def controllers(self, expression_scale: float = 1.0) -> torch.Tensor:
        """(B, R) full controller vectors."""
        ctrl = self.model.ctrl_default[None].repeat(self.people, 1)
        ctrl[:, self.shape_ids] = self.shape
        ctrl[:, self.expr_ids] = self.expression * expression_scale
        return ctrl

    def joint_params(self, with_pose: bool = True) -> torch.Tensor:
        """(B, J, 9) joint parameters with each person's head pose folded in."""
        unit = torch.ones(JOINT_PARAM_DIM, device=self.joints.device, dtype=self.joints.dtype)
        unit[3:6] = JOINT_TRANSLATION_UNIT
        params = self.joints * unit
        if with_pose:
            pose = torch.zeros_like(params)
            pose[:, self.pose_joint, :3] = self.pose
            params = params + pose
        return params

    def vertex_offsets(self) -> torch.Tensor:
        """(B, N, 3) offsets (through the large-steps solve when it is active)."""
        if self.offset_solver is not None:
            return self.offset_solver(self.offsets)
        return self.offsets

    def restore_people(self, snap: list[torch.Tensor], people: torch.Tensor) -> None:
        """Put back the named people's slices (``people``: (B,) bool on the device) from a ``snapshot``."""
        with torch.no_grad():
            for x, s in zip(self.all_tensors(), snap):
                x.copy_(torch.where(people.reshape(-1, *([1] * (x.dim() - 1))), s, x))

    def person(self, b: int, camera: Cameras) -> FitVariables:
        """Person ``b`` as a solo ``FitVariables`` (``camera``: their batch-1 initial camera), for the result."""
        solo = FitVariables(self.model, [camera], shared_focal=False)
        with torch.no_grad():
            for x, value in zip(solo.all_tensors(), self.all_tensors()):
                x.copy_(value.detach()[b:b + 1] if x.dim() == value.dim() else value.detach()[b])
        solo.offset_solver = self.offset_solver
        return solo


class PeopleObjective(Objective):
    """The objective for B people with one view each (view b is person b's photo), every term a (B,)
    vector of per-person values (``terms``)."""

    def __init__(self, model: TemplateModel, views: list[ViewObservation]):
        super().__init__(model, views)
        # The outline images grouped by size: (people (G,) on the device, images (G, h, w, 2), scales (G,)
        # float64, as the solo term's Python floats).
        groups: dict[tuple[int, int], list[int]] = {}
        for i, outline in enumerate(self.outlines):
            if outline is not None:
                groups.setdefault(tuple(outline[0].shape[:2]), []).append(i)
        dev = model.device
        self._outline_stacks = [
            (torch.as_tensor(ids, device=dev), torch.stack([self.outlines[i][0] for i in ids]),
             torch.as_tensor([self.outlines[i][1] for i in ids], device=dev, dtype=torch.float64))
            for ids in groups.values()]

    def begin_stage(self, spec: StageSpec, variables: PeopleVariables) -> None:
        other = sorted(k for k, w in spec.weights.items() if w and k not in PEOPLE_TERMS)
        if other:
            raise ValueError(f"stage {spec.name!r} weights {other}, which a batched fit does not evaluate")
        super().begin_stage(spec, variables)

    def set_normal_res(self, res: int) -> None:
        super().set_normal_res(res)
        # Per size group: the people (device index), their target maps and weights, and the scales (image to
        # map) of their cameras' intrinsics, stacked once.
        dev, dt = self.model.device, self.model.dtype
        self._normal_stacks = []
        for views in self._normal_groups:
            scale = torch.tensor([self._stage_normals[i][2] for i in views], dtype=dt, device=dev)
            self._normal_stacks.append((
                torch.as_tensor(views, device=dev), torch.stack([self._stage_normals[i][0] for i in views]),
                torch.stack([self._stage_normals[i][1] for i in views]).to(dt),
                torch.diag_embed(torch.stack([scale, scale, torch.ones_like(scale)], -1))))

    def landmark_points(self, verts: torch.Tensor) -> torch.Tensor:
        """verts (B, N, 3) -> (B, L, 3) each person's embedded landmarks."""
        tri = self.model.tris[self.lmk_tri]  # (L, 3)
        return (verts[:, tri] * self.lmk_bary[..., None]).sum(2)

    def _outline_candidates(self, verts: torch.Tensor, variables: PeopleVariables):
        """(ids (M,), select (B, M)): as the solo objective's, each person's own mesh in their own view."""
        from core.geometry.normals import vertex_normals

        with torch.no_grad():
            n = vertex_normals(verts, self.model.tris)
            cams = self.cameras(variables)
            select = (self._grazing(verts, n, cams).abs() < OUTLINE_BAND_COS) & self.outline_vertices[None]
            for i, outline in enumerate(self.outlines):  # once a stage
                if outline is None:
                    select[i] = False
                    continue
                select[i] &= self._near_background(verts[i:i + 1], variables, i)
            ids = torch.nonzero(select.any(0))[:, 0]  # once a stage: the only host read
        return ids, select[:, ids].to(verts.dtype)

    def _outline_terms(self, verts: torch.Tensor, variables: PeopleVariables) -> torch.Tensor:
        """(B,) each person's outline term (0 without an outline or candidates)."""
        from core.geometry.normals import vertex_normals

        out = verts.new_zeros(verts.shape[0])
        if self.outline_select is None:
            return out
        ids, select = self.outline_select
        cams = self.cameras(variables)
        points = verts[:, ids]  # (B, M, 3)
        with torch.no_grad():
            cos = self._grazing(points, vertex_normals(verts, self.model.tris)[:, ids], cams)
        px, _ = cams.to(dtype=torch.float64).project(points.double())  # (B, M, 2), as the solo term
        for people, fields, scale in self._outline_stacks:  # the photos whose outline images share a size
            field = sample_images(fields, (px[people] * scale[:, None, None]).to(verts.dtype))  # (G, M, 2)
            out = out.index_put((people,), outline_value(field, cos[people], select[people], self.iod[people]).to(verts.dtype))
        return out

    def terms(self, variables: PeopleVariables, weights: dict[str, float] | None = None) -> dict[str, torch.Tensor]:
        """The loss terms by name, each (B,): person b's value is what a solo fit of them computes."""
        def wanted(name: str) -> bool:
            return weights is None or weights.get(name, 0.0) != 0.0

        # Each term gets its own copy of the heads and builds its own cameras, as the solo objective
        # does: the gradients then add up in the same order (``term_inputs``).
        verts_of = term_inputs(self.posed(variables).verts, wanted)  # (B, N, 3) a term
        b = verts_of["landmark"].shape[0]
        zeros = verts_of["landmark"].new_zeros(b)
        out: dict[str, torch.Tensor] = {}
        uv, _ = self.cameras(variables).project(self.landmark_points(verts_of["landmark"]))
        corner, contour = landmark_terms(uv, self.target_lmk, self.layout, self.iod, self.lmk_weight)
        out["landmark"] = corner + contour
        if wanted("normal"):
            verts = verts_of["normal"]
            normal = zeros
            K, R, t = variables.cameras()
            for people, n_t, m_t, S in self._normal_stacks:  # the photos whose maps share a size: one render
                h, w = n_t.shape[1:3]
                cams = Cameras(S @ K[people], R[people], t[people], w, h)
                rendered, mask = render_normals(verts[people], self.model.tris, cams, cull_back=True)
                weight = mask * m_t
                value = safe_divide((weight * normal_consistency_map(n_t, rendered)).sum((1, 2)), weight.sum((1, 2)))
                normal = normal.index_put((people,), value)
            out["normal"] = normal
        if wanted("outline"):
            out["outline"] = self._outline_terms(verts_of["outline"], variables)
        if wanted("pins"):
            out["pins"] = zeros
        ref, tg = self.reference, self._targets
        regularisers = {
            "evgcc": lambda v: evgcc_per_vertex(v, ref, self.topology, target=tg["evgcc"]).mean(-1),
            "conformal": lambda v: _top_k_rows(conformal_per_corner(v, ref, self.topology.polygon_corners,
                                                                    tg["conformal"]), self.top_k),
            "flip": lambda v: _top_k_rows(face_flip_per_face(v, ref, self.model.tris, tg["flip"]), self.top_k),
            "curve": lambda v: (curve_flow_per_feature(v, ref, self.curves, target=tg["curve"]).flatten(1).sum(-1)
                                / self.curves.feature_mask().sum()) if self.curves is not None else zeros,
            "disp": lambda v: displacement_per_vertex(variables.vertex_offsets()).mean(-1),
            "laplacian": lambda v: laplacian_energy_per_vertex(v * MM, ref * MM, self.laplacian).mean(-1),
            "symmetry": lambda v: symmetry_per_vertex(v * MM, self.mirror).sum(-1)
            / (self.mirror >= 0).sum().clamp(min=1),
            "controller_prior": lambda v: (variables.shape ** 2).mean(-1) + (variables.expression ** 2).mean(-1),
            "joint_prior": lambda v: (variables.joints ** 2).flatten(1).mean(-1),
        }
        for name, term in regularisers.items():
            if wanted(name):
                out[name] = term(verts_of[name])
        return out


def _top_k_rows(values: torch.Tensor, k) -> torch.Tensor:
    """(B, n) -> (B,) the mean of each row's k largest entries (``core.losses.top_k``'s, per row)."""
    kk = resolve_k(k, values.shape[1])
    if kk == values.shape[1]:
        return values.mean(-1)
    return torch.topk(values, kk, dim=1, sorted=False).values.mean(-1)


class PeopleAdam:
    """Adam over tensors with a leading people dimension (``core/fit/optim.py``'s steps, per person):
    a step only where ``active`` (B,) is on, bias corrections from each person's own step count and a
    learning-rate factor per person (halved by their rollbacks). While the people agree on both (no
    plateau or rollback yet) the arithmetic is the solo optimiser's, scalar for scalar."""

    def __init__(self, groups: list[dict], people: int, betas=(0.9, 0.999), eps: float = 1e-8):
        self.param_groups = [{"betas": betas, "eps": eps, "uniform": False, **g, "params": list(g["params"])}
                             for g in groups]
        self.people = people
        # Each person's Adam steps: on the host, one more each step (so no read), and on the device the
        # steps each person really took (a plateau gate off takes none); ``count_steps`` sets the host
        # count from the device's at a read. Between reads the host count runs ahead only for people whose
        # steps are off, where it is not used.
        self.steps = np.zeros(people, np.int64)
        self.taken: torch.Tensor | None = None
        self.lr_scale = np.ones(people)  # 0.5 ** rollbacks
        self.state: dict[torch.Tensor, dict] = {}

    def zero_grad(self) -> None:
        for g in self.param_groups:
            for p in g["params"]:
                p.grad = None

    def _per_person(self, values: list[float], like: torch.Tensor) -> torch.Tensor:
        """(B, 1, ...) ``like``'s dtype: one value a person, rounded as the solo step rounds its scalar."""
        return torch.as_tensor(values, dtype=like.dtype, device=like.device).reshape(-1, *([1] * (like.dim() - 1)))

    @torch.no_grad()
    def step(self, lr_anneal: float, active: torch.Tensor) -> None:
        """One step of every group at the schedule's rate times ``lr_anneal``; ``active``: (B,) 0/1.

        Person b's numbers are the solo ``Adam.step``'s bit for bit: the bias corrections and rates are
        the same Python float expressions, and ``p + (lr * m) / (s + eps)`` is how the solo
        ``addcdiv(m, s + eps, value=lr)`` groups its operations (``lr * (m / (s + eps))`` rounds
        differently)."""
        self.steps += 1
        on_people = (active > 0).to(torch.int64)
        self.taken = on_people if self.taken is None else self.taken + on_people
        steps = [float(t) for t in self.steps]
        for group in self.param_groups:
            b1, b2 = group["betas"]
            bc2 = [1 - b2 ** t for t in steps]
            rate = [-(group["lr"] * lr_anneal * k) / (1 - b1 ** t) for k, t in zip(self.lr_scale.tolist(), steps)]
            for p in group["params"]:
                if p.grad is None:
                    continue
                st = self.state.setdefault(p, {})
                if not st:
                    st["exp_avg"], st["exp_avg_sq"] = torch.zeros_like(p), torch.zeros_like(p)
                m, v, g = st["exp_avg"], st["exp_avg_sq"], p.grad
                on = active.reshape(-1, *([1] * (p.dim() - 1))) > 0
                m_new = m.mul(b1).add_(g, alpha=1 - b1)
                v_new = v.mul(b2).addcmul_(g, g, value=1 - b2)
                scale = (v_new / self._per_person(bc2, p)).sqrt()
                if group["uniform"]:
                    scale = scale.flatten(1).amax(1).reshape(-1, *([1] * (p.dim() - 1)))
                p_new = p + (self._per_person(rate, p) * m_new) / (scale + group["eps"])
                p.copy_(torch.where(on, p_new, p))
                m.copy_(torch.where(on, m_new, m))
                v.copy_(torch.where(on, v_new, v))

    def count_steps(self, taken: np.ndarray) -> None:
        """The steps each person took, as read from ``taken``."""
        self.steps[:] = taken

    def snapshot(self) -> dict:
        return {"state": {p: {k: v.clone() for k, v in st.items()} for p, st in self.state.items()},
                "steps": self.steps.copy(), "taken": None if self.taken is None else self.taken.clone()}

    def restore_people(self, snap: dict, people: np.ndarray) -> None:
        """Put back the named people's (host (B,) bool) moments and step counts."""
        mask = torch.as_tensor(people)
        for p, st in self.state.items():
            old = snap["state"].get(p)
            for k, v in st.items():
                keep = mask.to(v.device).reshape(-1, *([1] * (v.dim() - 1)))
                v.copy_(torch.where(keep, old[k], v) if old is not None else torch.where(keep, 0.0, v))
        self.steps[people] = snap["steps"][people]
        if self.taken is not None:
            before = snap["taken"] if snap["taken"] is not None else torch.zeros_like(self.taken)
            self.taken = torch.where(mask.to(self.taken.device), before, self.taken)


@dataclass
class PeopleRun:
    """What a batched run of stages left per person: their stage reports and their error (or None)."""

    reports: list[list[StageReport]]
    errors: list[str | None] = field(default_factory=list)


def run_people_stages(variables: PeopleVariables, objective: PeopleObjective, stages: list[StageSpec],
                      control: FitControl | None = None, progress=None) -> PeopleRun:
    """Run the stages for B people at once (see the module's notes). ``progress(stage, iteration, step,
    total)`` is called after every iteration without reading the device."""
    control = control or FitControl()
    b = variables.people
    dev = variables.model.device
    run = PeopleRun([[] for _ in range(b)], [None] * b)
    alive = np.ones(b, bool)
    total = sum(s.iterations for s in stages)
    step = 0
    for spec in stages:
        if spec.kind != OPTIMISE:
            raise ValueError(f"stage {spec.name!r} is a {spec.kind} stage, which a batched fit does not run")
        start = time.perf_counter()
        reports = [StageReport(spec.name) for _ in range(b)]
        for person, r in enumerate(reports):
            run.reports[person].append(r)
        variables.train_only(spec.variables)
        if spec.large_steps_lambda > 0 and "offsets" in spec.variables:
            variables.set_large_steps(LargeSteps(objective.topology, spec.large_steps_lambda, dev))
        objective.begin_stage(spec, variables)
        uniform = spec.large_steps_lambda > 0 and spec.uniform_offsets
        opt = PeopleAdam([{"params": variables.tensors(v), "lr": spec.lr[v], "uniform": uniform and v == "offsets"}
                          for v in spec.variables], b)
        params = [p for g in opt.param_groups for p in g["params"]]
        good_vars, good_opt = variables.snapshot(), opt.snapshot()
        live = torch.as_tensor(alive, device=dev).to(torch.float64)
        active = live.clone()  # the plateau gate, per person
        good_active = active.clone()
        history = torch.zeros(max(spec.iterations, 1), b, dtype=torch.float64, device=dev)
        count = 0  # losses in ``history`` since the last reset
        best = np.full(b, math.inf)
        check_every = max(1, min(CHECK_EVERY, spec.plateau_patience))
        levels = max(1, spec.normal_levels)
        level = 0
        window: list[torch.Tensor] = []
        broken = torch.zeros(b, dtype=torch.bool, device=dev)
        stopped = np.zeros(b, bool)
        last_bad = np.zeros(b, bool)  # rolled back at the last check: no good state since
        it = 0
        while it < spec.iterations:
            if levels > 1 and it >= (level * spec.iterations) // levels:
                objective.set_normal_res(max(8, spec.normal_res >> (levels - 1 - level)))
                level += 1
                count, best = 0, np.full(b, math.inf)
                active = live.clone()
            control.checkpoint()
            opt.zero_grad()
            terms = objective.terms(variables, spec.weights)
            loss = sum(spec.weights[k] * v for k, v in terms.items() if spec.weights.get(k, 0.0))
            if isinstance(loss, torch.Tensor) and loss.requires_grad:
                torch.where(live > 0, loss, torch.zeros_like(loss)).sum().backward()
            finite = torch.isfinite(loss.detach())
            for p in params:
                if p.grad is not None:
                    finite = finite & torch.isfinite(p.grad).reshape(b, -1).all(1)
                    p.grad.nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)
            broken = broken | ~finite
            anneal = spec.lr_final + (1.0 - spec.lr_final) * 0.5 * (1.0 + math.cos(math.pi * it / spec.iterations))
            opt.step(anneal, active * live)
            variables.project_bounds()
            value = loss.detach().double()
            history[count] = value
            if count >= spec.plateau_patience:
                old = history[count - spec.plateau_patience]
                active = active * ((old - value) >= spec.plateau_rel * old.abs()).double()
            count += 1
            window.append(value)
            it += 1
            step += 1
            if progress is not None:
                progress(spec.name, it, step, total)
            at_level = levels > 1 and level < levels and it >= (level * spec.iterations) // levels
            if len(window) < check_every and it < spec.iterations and not at_level:
                continue
            # The one read of the window: every person's losses, broken flags, plateau gates, Adam steps
            # taken and last terms.
            n, names = len(window), list(terms)
            last = torch.stack([terms[k].detach().double() for k in names]) if names else history[:0]
            read = torch.cat([torch.stack(window).reshape(-1), broken.double(), active, opt.taken.double(),
                              last.reshape(-1)]).cpu().numpy()
            values, rest = read[:n * b].reshape(n, b), read[n * b:].reshape(-1, b)
            bad, gate, last_terms = rest[0] != 0, rest[1], rest[3:]
            opt.count_steps(rest[2].astype(np.int64))
            window, broken = [], torch.zeros_like(broken)
            running = best.copy()
            for k in range(n):  # each loss against the person's best before it, as a solo fit reads them
                diverged = ~np.isfinite(values[k]) | (values[k] > DIVERGENCE_FACTOR * np.maximum(running, 1e-12))
                bad |= diverged
                running = np.where(bad, running, np.minimum(running, values[k]))
            bad &= alive
            last_bad = bad.copy()
            for person in np.flatnonzero(bad):
                reports[person].rollbacks += 1
                if reports[person].rollbacks > MAX_ROLLBACKS:
                    alive[person] = False
                    run.errors[person] = (f"stage {spec.name!r}: loss or gradients stayed non-finite or diverging "
                                          f"after {MAX_ROLLBACKS} rollbacks; check the photo")
                else:
                    opt.lr_scale[person] *= 0.5
            if bad.any():
                mask = torch.as_tensor(bad, device=dev)
                variables.restore_people(good_vars, mask)
                opt.restore_people(good_opt, bad)
                active = torch.where(mask, good_active, active)
                live = torch.as_tensor(alive, device=dev).to(torch.float64)
                gate = np.where(bad, 1.0, gate)
            ok = ~bad & alive
            best = np.where(ok, running, best)
            good_vars, good_opt, good_active = variables.snapshot(), opt.snapshot(), active.clone()
            for person in np.flatnonzero(ok):
                reports[person].losses = {**{k: float(last_terms[j, person]) for j, k in enumerate(names)},
                                          "total": float(values[-1, person])}
            for person in np.flatnonzero((gate == 0) & alive & ~stopped):
                stopped[person] = True
                reports[person].iterations = it
            if np.all((gate == 0) | ~alive):
                if levels > 1 and level < levels:
                    # Everyone reached a plateau at a coarse level: on at the next one (as a solo fit skips).
                    skip = max(0, (level * spec.iterations) // levels - it)
                    it += skip
                    step += skip
                    stopped[:] = False
                    continue
                break
            if at_level:
                stopped[:] = False
        for person in np.flatnonzero(last_bad & alive):
            # A solo fit would go on retrying this stage's last window; on the shared clock the stage is over.
            alive[person] = False
            run.errors[person] = (f"stage {spec.name!r}: loss or gradients were non-finite or diverging at its end; "
                                  "check the photo")
        seconds = time.perf_counter() - start
        for person, r in enumerate(reports):
            r.stopped_early = bool(stopped[person])
            r.iterations = r.iterations if stopped[person] else it
            r.seconds = seconds
        step += spec.iterations - it
    return run


def batchable(views: list[ViewObservation], stages: list[StageSpec]) -> bool:
    """Whether a person (their views and schedule) can join a batched fit: one photo, gradient stages only,
    and no term outside ``PEOPLE_TERMS``."""
    return len(views) == 1 and all(s.kind == OPTIMISE and all(k in PEOPLE_TERMS for k, w in s.weights.items() if w)
                                   for s in stages)


def fit_people(template: Template, people: list[list[ViewObservation]], options: FitOptions | None = None,
               control: FitControl | None = None, device: str = "cpu", progress=None,
               batch_size: int | None = None) -> list:
    """Fit several people (each a list of their views); returns, per person, a ``FitResult`` or the
    ``Exception`` that stopped their fit (the others go on).

    People whose views and schedule are ``batchable`` and equal are fitted together, ``batch_size`` at a
    time (None: all); the others run solo (``fit_views``). ``progress(stage, iteration, step, total)``
    follows the batched runs.
    """
    from .pipeline import fit_views

    options = options or FitOptions()
    dtype = torch.float64 if options.float64 else torch.float32
    model = TemplateModel(template, device=device, dtype=dtype)
    results: list = [None] * len(people)
    groups: dict[str, tuple[list[StageSpec], list[int]]] = {}
    for i, views in enumerate(people):
        try:
            stages = schedule_for(options, views)
        except Exception as exc:  # a person's own trouble: their error, the others go on
            results[i] = exc
            continue
        if batchable(views, stages):
            key = json.dumps(schedule_to_dict(stages), sort_keys=True, default=str)
            groups.setdefault(key, (stages, []))[1].append(i)
            continue
        try:
            for record in fit_views(template, views, options, control, device):
                results[i] = record.result or results[i]
        except Exception as exc:
            results[i] = exc
    for stages, members in groups.values():
        size = batch_size or len(members)
        for lo in range(0, len(members), size):
            chunk = members[lo:lo + size]
            for i, res in zip(chunk, _fit_batch(model, [people[i][0] for i in chunk], stages, control, progress)):
                results[i] = res
    return results


def _fit_batch(model: TemplateModel, views: list[ViewObservation], stages: list[StageSpec],
               control: FitControl | None, progress) -> list:
    """One batched optimisation of one photo a person; a ``FitResult`` or an ``Exception`` per person."""
    start = time.perf_counter()
    out: list = [None] * len(views)
    cams: list[Cameras | None] = []
    for i, v in enumerate(views):
        try:
            cams.append(initial_cameras(model, [v])[0])
        except Exception as exc:
            out[i] = exc
            cams.append(None)
    ids = [i for i, c in enumerate(cams) if c is not None]
    if not ids:
        return out
    variables = PeopleVariables(model, [cams[i] for i in ids])
    objective = PeopleObjective(model, [views[i] for i in ids])
    run = run_people_stages(variables, objective, stages, control, progress)
    seconds = time.perf_counter() - start
    # The result's landmark readout needs only the template's embedding and the cameras: one solo
    # objective serves every person.
    solo = Objective(model, [views[ids[0]]])
    for b, i in enumerate(ids):
        if run.errors[b] is not None:
            out[i] = FloatingPointError(run.errors[b])
            continue
        try:
            person = variables.person(b, cams[i])
            result = assemble_result(person, solo, [views[i]])
            result.meta.update(run_meta(run.reports[b], stages, start, model.device))
            result.meta["batch"] = {"people": len(ids), "fit_seconds": round(seconds, 3)}
            out[i] = result
        except Exception as exc:
            out[i] = exc
    return out
