"""The optimisation loop: stages from a schedule, one record per iteration.

For each stage: an Adam optimiser over that stage's variables (one parameter
group per variable, learning rates from the schedule), bounded controllers
projected back after each step, pins and pause/cancel read from the
``FitControl`` between iterations. While pins act, the head's placement
(pose, cameras, focal lengths, neck chain) is held, so a pin sculpts the
head rather than sliding it with the camera in tow; the placement to hold is
taken on the host when the pins change, and put back on the device after
each step.

The loop is shaped for a GPU: an iteration never waits for the device. Loss
values and a "something was not finite" flag stay on the device; every
``check_every`` iterations (``CHECK_EVERY``, at most the plateau patience)
they are read once, together. A non-finite or diverging window rolls back to
the snapshot taken at the last good check (variables and optimiser moments,
cloned on the device) and halves the steps. The plateau test also runs on the
device, every iteration: from the iteration it fires, steps are switched off
(``Adam.step(active=...)``), so a stage that stops at the next read ends with
exactly the variables of the iteration where the plateau was seen.
Non-finite gradients are zeroed before the step, so no frame shows a broken
mesh while the window runs. Records are lazy (``FitRecord``): the vertices
and losses of an iteration are computed only when a consumer reads them.

A bundle-adjustment stage (``kind="bundle_adjust"``) is one call to a solver
(``core/fit/bundle_adjust.py``): it yields one record and hands the later
stages new variables (adjusted cameras, vertex corrections as offsets) and,
when it hid back-facing landmarks, a new objective; ``FitState`` carries them.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch

from core.geometry.large_steps import LargeSteps
from core.multiview import BAResult

from .api import FitRecord
from .bundle_adjust import run_bundle_adjust
from .control import FitControl
from .optim import Adam
from .objective import Objective
from .schedule import BUNDLE_ADJUST, StageSpec, schedule_to_dict
from .variables import FitVariables

# A loss this many times the best seen in the stage counts as divergence.
DIVERGENCE_FACTOR = 50.0
MAX_ROLLBACKS = 20
# Iterations between reads of the loss on the host (rollback and plateau tests).
CHECK_EVERY = 10


@dataclass
class StageReport:
    name: str
    iterations: int = 0
    seconds: float = 0.0
    losses: dict = field(default_factory=dict)
    rollbacks: int = 0
    stopped_early: bool = False


@dataclass
class FitState:
    """What the stages work on. A bundle-adjustment stage replaces ``variables`` (and
    ``objective`` when it hid landmarks) and leaves its solver's result in ``ba``."""

    variables: FitVariables
    objective: Objective
    ba: BAResult | None = None


class _Snapshot:
    """The variables and the optimiser's moments at the last good check, cloned on their device."""

    def __init__(self, variables: FitVariables, opt: Adam):
        self.variables, self.opt = variables, opt
        self.take()

    def take(self) -> None:
        self.values = self.variables.snapshot()
        self.state = {p: {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in st.items()}
                      for p, st in self.opt.state.items()}

    def restore(self) -> None:
        self.variables.restore(self.values)
        self.opt.state.clear()
        for p, st in self.state.items():
            self.opt.state[p] = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in st.items()}


class _Plateau:
    """The plateau test on the device: the stage's losses since the last reset and an ``active`` gate
    that turns 0 once a loss improved by less than ``rel`` on the one ``patience`` iterations before it."""

    def __init__(self, spec: StageSpec, device):
        self.patience, self.rel = spec.plateau_patience, spec.plateau_rel
        self.losses = torch.zeros(max(spec.iterations, 1), dtype=torch.float64, device=device)
        self.reset()

    def reset(self) -> None:
        self.count = 0  # losses kept since the reset (known on the host: no read)
        self.active = torch.ones((), dtype=torch.float64, device=self.losses.device)

    def add(self, loss: torch.Tensor) -> None:
        value = loss.detach().double()
        self.losses[self.count] = value
        if self.count >= self.patience:
            old = self.losses[self.count - self.patience]
            self.active = self.active * ((old - value) >= self.rel * old.abs()).double()
        self.count += 1

    def state(self) -> tuple[int, torch.Tensor]:
        return self.count, self.active.clone()

    def restore(self, state: tuple[int, torch.Tensor]) -> None:
        self.count, self.active = state[0], state[1].clone()


def _roll_back(spec: StageSpec, report: StageReport, snapshot: _Snapshot, opt: Adam, what: str) -> None:
    """Restore the last good check's variables and optimiser state and halve the steps;
    give up after ``MAX_ROLLBACKS`` in one stage."""
    report.rollbacks += 1
    if report.rollbacks > MAX_ROLLBACKS:
        raise FloatingPointError(
            f"stage {spec.name!r}: {what} after {MAX_ROLLBACKS} rollbacks; "
            "check the inputs (landmarks, normal maps) or lower the learning rates"
        )
    snapshot.restore()
    for g in opt.param_groups:
        g["lr0"] *= 0.5


def _lazy_state(objective: Objective, variables: FitVariables, terms: dict, total: torch.Tensor):
    """A record's state, read on demand: (losses as floats, (verts (N, 3) float32, first view's camera))."""
    values = [v.detach() for v in terms.values()] + [total.detach()]
    names = [*terms, "total"]

    def losses():
        return dict(zip(names, torch.stack([v.reshape(()).to(total.dtype) for v in values]).tolist()))

    def frame():
        with torch.no_grad():
            return objective.current_verts(variables), variables.camera_record(0)
    return losses, frame


def _solver_frame(state: FitState):
    """A bundle-adjustment record's frame, read on demand: its mesh, the first view's adjusted camera."""
    ba, variables = state.ba, state.variables
    return lambda: (ba.verts, variables.camera_record(0))


def run_stages(state: FitState, stages: list[StageSpec], control: FitControl | None = None,
               reports: list[StageReport] | None = None) -> Iterator[FitRecord]:
    """Run the stages on ``state``, yielding a (lazy) record per iteration."""
    control = control or FitControl()
    reports = reports if reports is not None else []
    total = sum(s.iterations for s in stages)
    step = 0
    for spec in stages:
        report = StageReport(spec.name)
        reports.append(report)
        start = time.perf_counter()
        if spec.kind == BUNDLE_ADJUST:
            control.checkpoint()
            state.variables, state.objective, state.ba = run_bundle_adjust(spec, state.variables, state.objective,
                                                                           control)
            losses = {"reprojection_rms_px": float(np.nanmean(state.ba.rms_px)), "seconds": state.ba.seconds}
            step += spec.iterations
            report.iterations, report.losses, report.seconds = spec.iterations, losses, time.perf_counter() - start
            yield FitRecord(spec.name, spec.iterations, step, total, losses, frame=_solver_frame(state))
            continue
        variables, objective = state.variables, state.objective
        variables.train_only(spec.variables)
        if spec.large_steps_lambda > 0 and "offsets" in spec.variables:
            variables.set_large_steps(LargeSteps(objective.topology, spec.large_steps_lambda, variables.model.device))
        objective.begin_stage(spec, variables)
        uniform = spec.large_steps_lambda > 0 and spec.uniform_offsets
        groups = [{"params": variables.tensors(v), "lr": spec.lr[v], "lr0": spec.lr[v], "name": v,
                   "uniform": uniform and v == "offsets"} for v in spec.variables]
        params = [p for g in groups for p in g["params"]]
        opt = Adam(groups)
        snapshot = _Snapshot(variables, opt)
        plateau = _Plateau(spec, variables.model.device)
        plateau_good = plateau.state()
        check_every = max(1, min(CHECK_EVERY, spec.plateau_patience))
        best = math.inf
        history: list[float] = []
        window: list[torch.Tensor] = []  # the window's total losses, on the device
        broken = None  # device bool: a loss or gradient of the window was not finite
        pins_version = -1
        held = None  # the head placement held while pins act (device copies)
        it = 0
        levels = max(1, spec.normal_levels)
        level = 0
        terms: dict = {}
        while it < spec.iterations:
            if levels > 1 and it >= (level * spec.iterations) // levels:
                objective.set_normal_res(max(8, spec.normal_res >> (levels - 1 - level)))
                level += 1
                # A finer level changes the objective: divergence and plateau tests start over.
                history.clear()
                plateau.reset()
                best = math.inf
            control.checkpoint()
            version, pins = control.pins()
            if version != pins_version:
                objective.set_pins(pins, variables)
                held = variables.head_placement() if pins is not None else None
                pins_version = version
                # New pins change the objective: divergence and plateau tests start over.
                history.clear()
                plateau.reset()
                best = math.inf
            opt.zero_grad(set_to_none=True)
            terms = objective.terms(variables, spec.weights)
            loss = sum(spec.weights.get(k, 0.0) * v for k, v in terms.items() if spec.weights.get(k, 0.0))
            if not isinstance(loss, torch.Tensor):
                loss = torch.as_tensor(float(loss), device=variables.model.device)
            if loss.requires_grad:
                loss.backward()
            grads = [p.grad for p in params if p.grad is not None]
            finite = torch.isfinite(loss.detach())
            if grads:
                finite = finite & torch.stack([torch.isfinite(g).all() for g in grads]).all()
                for g in grads:
                    g.nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)
            broken = ~finite if broken is None else broken | ~finite
            if held is not None:
                variables.hold_head_placement(held)  # clears those gradients before the step
            anneal = spec.lr_final + (1.0 - spec.lr_final) * 0.5 * (1.0 + math.cos(math.pi * it / spec.iterations))
            for g in opt.param_groups:  # lr0: the schedule's, halved by each rollback
                g["lr"] = g["lr0"] * anneal
            opt.step(active=plateau.active)  # no step once the plateau test fired
            if held is not None:
                variables.hold_head_placement(held)
            variables.project_bounds()
            plateau.add(loss)
            window.append(loss.detach())
            it += 1
            step += 1
            losses, frame = _lazy_state(objective, variables, terms, loss)
            yield FitRecord(spec.name, it, step, total, losses, frame=frame)
            # Read before the objective changes (a finer level, new pins), so each window has one objective.
            at_level = levels > 1 and level < levels and it >= (level * spec.iterations) // levels
            new_pins = control.pins()[0] != pins_version
            if len(window) < check_every and it < spec.iterations and not at_level and not new_pins:
                continue
            # The one read of the window: its losses, the last terms, and whether anything was not finite.
            n = len(window)
            dt = window[0].dtype
            read = torch.cat([torch.stack(window), torch.stack([v.detach().reshape(()).to(dt) for v in terms.values()]),
                              broken.reshape(1).to(dt)]).tolist()
            values, last_terms, bad = read[:n], read[n:-1], read[-1] != 0
            window, broken = [], None
            running = best
            for value in values:  # each loss against the best before it, as if read every iteration
                if not math.isfinite(value) or value > DIVERGENCE_FACTOR * max(running, 1e-12):
                    bad = True
                    break
                running = min(running, value)
            if bad:
                _roll_back(spec, report, snapshot, opt, "loss or gradients stayed non-finite or diverging")
                plateau.restore(plateau_good)
                it -= n
                step -= n
                continue
            snapshot.take()
            plateau_good = plateau.state()
            best = running
            report.losses = {**dict(zip(terms, last_terms)), "total": values[-1]}
            stop = False
            for k, value in enumerate(values):  # the device's plateau test, replayed on the values read
                history.append(value)
                if len(history) > spec.plateau_patience:
                    old = history[-spec.plateau_patience - 1]
                    if old - value < spec.plateau_rel * abs(old):
                        stop = True
                        # the steps after iteration k were switched off: the stage ended there
                        it, step = it - (n - 1 - k), step - (n - 1 - k)
                        opt.uncount(n - 1 - k)
                        break
            if stop:
                if 1 < levels and level < levels:
                    # Plateau at a coarse level: go on at the next one.
                    skip = max(0, (level * spec.iterations) // levels - it)
                    it += skip
                    step += skip
                    continue
                report.stopped_early = True
                break
        report.iterations = it
        report.seconds = time.perf_counter() - start
        step += spec.iterations - it  # keep the progress bar honest when a stage stops early


def run_meta(reports: list[StageReport], stages, start: float, device) -> dict:
    """The report keys every fit shares: stages, seconds, device, schedule."""
    return {
        "stages": [{"name": r.name, "iterations": r.iterations, "seconds": round(r.seconds, 3),
                    "losses": r.losses, "rollbacks": r.rollbacks, "stopped_early": r.stopped_early}
                   for r in reports],
        "seconds": round(time.perf_counter() - start, 3),
        "device": str(device),
        "schedule": schedule_to_dict(stages),
    }
