"""The coarse-to-fine stage schedule, as plain data.

A schedule is a list of ``StageSpec``: which variables a stage optimises, for
how many iterations, with which learning rates and loss weights. Presets cover
the common cases; any field can be overridden from JSON/dict options
(``{"stages": {"vertex": {"iterations": 300}}}``) without touching code.

Most stages are gradient steps on the objective (kind ``"optimise"``). A
``"bundle_adjust"`` stage instead hands the views' landmark correspondences to
a solver (``method``: ``core.multiview``'s topology-aware adjustment or the
COLMAP baseline), which moves cameras and vertices in one go; the same loop
runs it between the others (``core/fit/loop.py``). Several photos get one
after the rig stage when the ``multiview_ba`` fit option names a method.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the bundle adjustment (torch) loads only where a stage asks for one
    from core.multiview import BAOptions

# Variables a stage may optimise.
# Largest whole number a schedule override may set (iterations, patience, ...).
MAX_OVERRIDE_INT = 1_000_000

VARIABLES = (
    "shape",        # bounded identity controllers, [-1, 1]
    "expression",   # bounded expression controllers, [0, 1]
    "pose",         # head rotation relative to the neck (axis-angle)
    "camera",       # per-view world-to-camera rotation + translation
    "focal",        # per-view focal length (log)
    "joints",       # per-joint local rotation / translation / log-scale
    "offsets",      # per-vertex offsets (optionally Laplacian-parameterised)
)

# What a stage does: gradient steps on the objective, or one call to a bundle-adjustment solver.
OPTIMISE = "optimise"
BUNDLE_ADJUST = "bundle_adjust"
KINDS = (OPTIMISE, BUNDLE_ADJUST)
# Bundle-adjustment solvers (core/multiview): one objective with a Laplacian energy,
# or COLMAP's point adjustment followed by a separate large-steps template fit.
BA_METHODS = ("topology_ba", "colmap_then_largesteps")

# Loss terms a stage may weight (names match core/fit/objective.py).
LOSSES = (
    "landmark", "normal", "shading", "consistency", "dense", "outline", "pins",
    "evgcc", "conformal", "flip", "curve", "disp", "laplacian", "symmetry", "anchor",
    "controller_prior", "joint_prior",
)


@dataclass
class StageSpec:
    name: str
    variables: tuple[str, ...]
    iterations: int
    lr: dict[str, float]
    weights: dict[str, float]
    # Stop early when the total loss improved by less than ``plateau_rel``
    # (relative) over the last ``plateau_patience`` iterations.
    plateau_patience: int = 30
    plateau_rel: float = 1e-3
    # The learning rates fall along a half cosine from the schedule's over the stage's
    # iterations to this fraction of them at its end (1: constant).
    lr_final: float = 1.0
    # Vertex stage: optimise offsets through (I + lambda L) ("large steps").
    large_steps_lambda: float = 0.0
    # With large steps: one Adam step scale for all offsets (the largest second
    # moment, core/fit/optim.py), so steps follow the gradient's size. Used with
    # several views; with one view plain Adam measured slightly better (median
    # face RMSE over 5 bench cases 1.64 vs 1.76 mm at lr 1e-3, 1.68 at 3e-3).
    uniform_offsets: bool = False
    # Conformal / face-flip terms use the k largest deviations.
    top_k: int = 512
    # Normal maps are compared at most this many pixels on their long side
    # (coarse stages need less detail and run faster).
    normal_res: int = 256
    # Coarse-to-fine normal maps within the stage: ``normal_levels`` resolutions
    # halving down from ``normal_res``, each for an equal share of the
    # iterations, coarsest first (wide basins first, detail last).
    normal_levels: int = 1
    # OPTIMISE or BUNDLE_ADJUST. A bundle adjustment writes back the variables it
    # lists: "camera" (always), "focal" (refined, else held), "offsets" (its vertex
    # corrections become the per-vertex offsets; else only its cameras are kept).
    # It counts as ``iterations`` steps of progress; lr and weights are unused.
    kind: str = OPTIMISE
    method: str = ""  # BUNDLE_ADJUST: one of BA_METHODS
    solver: dict = field(default_factory=dict)  # BUNDLE_ADJUST: overrides of core.multiview.BAOptions
    # BUNDLE_ADJUST: first drop surface landmarks whose normal faces away from
    # their view's camera (cosine below ``min_cos``), for this and later stages.
    hide_backfacing: bool = True
    min_cos: float = 0.1

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"stage {self.name!r}: kind {self.kind!r} is unknown; use one of {KINDS}")
        if self.kind == BUNDLE_ADJUST:
            if self.method not in BA_METHODS:
                raise ValueError(f"stage {self.name!r}: bundle adjustment method {self.method!r} is unknown; "
                                 f"use one of {BA_METHODS}")
            solver_options(self.solver, f"stage {self.name!r}: solver")
        unknown = set(self.variables) - set(VARIABLES)
        if unknown:
            raise ValueError(f"stage {self.name!r}: unknown variables {sorted(unknown)}; known: {VARIABLES}")
        unknown = set(self.weights) - set(LOSSES)
        if unknown:
            raise ValueError(f"stage {self.name!r}: unknown loss weights {sorted(unknown)}; known: {LOSSES}")
        if not 0.0 < self.lr_final <= 1.0:
            raise ValueError(f"stage {self.name!r}: lr_final must be in (0, 1], got {self.lr_final}")
        missing = set(self.variables) - set(self.lr)
        if missing and self.kind == OPTIMISE:
            raise ValueError(f"stage {self.name!r}: no learning rate for {sorted(missing)}")
        if self.iterations < 0:
            raise ValueError(f"stage {self.name!r}: iterations must be >= 0")


def solver_options(settings: dict, where: str = "solver") -> BAOptions:
    """``BAOptions`` with ``settings`` (name -> value) applied; ValueError names ``where`` and the setting."""
    from core.multiview import BAOptions

    if not isinstance(settings, dict):
        raise ValueError(f"{where} must map BAOptions settings to values")
    known = {f.name: f.default for f in dataclasses.fields(BAOptions)}
    unknown = set(settings) - set(known)
    if unknown:
        raise ValueError(f"{where}: unknown settings {sorted(unknown)}; known: {sorted(known)}")
    for key, value in settings.items():
        default = known[key]
        if isinstance(default, bool):
            ok, want = isinstance(value, bool), "true or false"
        elif isinstance(default, int):
            ok, want = isinstance(value, int) and not isinstance(value, bool), "a whole number"
        else:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            want = "a finite number"
        if not ok:
            raise ValueError(f"{where}: {key} must be {want}, got {value!r:.40}")
    try:
        return BAOptions(**settings)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


# The head's silhouette in each photo (the face prior's head mask, trusted where it meets the
# background; core/priors/outline.py), in every stage. Chosen on bench photo's tuning people
# (301-304, EXIF, mean surface distance over the face): 3 photos 0.780 -> 0.708 mm with
# weight 300 (100: 0.736, 1000: 0.735, 3000: 0.797 with an earlier, looser contour band);
# one photo 0.884 -> 0.864.
OUTLINE_WEIGHT = 300.0


def _rig(iterations: int) -> StageSpec:
    return StageSpec(
        name="rig",
        variables=("shape", "expression", "pose", "camera", "focal"),
        iterations=iterations,
        lr={"shape": 0.05, "expression": 0.03, "pose": 0.005, "camera": 0.002, "focal": 0.005},
        weights={"landmark": 100.0, "normal": 1.0, "outline": OUTLINE_WEIGHT, "pins": 1.0, "controller_prior": 0.3},
        normal_res=128,
    )


def _joint(iterations: int) -> StageSpec:
    return StageSpec(
        name="joint",
        variables=("joints", "camera"),
        iterations=iterations,
        lr={"joints": 0.004, "camera": 0.0005},
        weights={"landmark": 100.0, "normal": 1.0, "outline": OUTLINE_WEIGHT, "pins": 1.0, "joint_prior": 1e-2,
                 "evgcc": 0.05,
                 "conformal": 0.05, "flip": 0.05},
        normal_res=192,
        plateau_patience=40,
        plateau_rel=1e-4,
    )


def _vertex(iterations: int) -> StageSpec:
    return StageSpec(
        name="vertex",
        # The cameras stay free (small steps): with a camera held slightly wrong,
        # the normal term would bend the surface to explain the camera's error.
        variables=("offsets", "camera", "focal"),
        iterations=iterations,
        # Offsets move through (I + 20 L)^-1 (large steps): smooth updates.
        lr={"offsets": 1e-3, "camera": 5e-4, "focal": 2e-3},
        weights={"landmark": 50.0, "normal": 1.0, "outline": OUTLINE_WEIGHT, "pins": 1.0, "evgcc": 0.1,
                 "conformal": 0.1, "flip": 0.1,
                 "curve": 0.01, "disp": 1e-3, "laplacian": 0.5},
        large_steps_lambda=20.0,
        plateau_patience=60,
        plateau_rel=1e-4,
    )


PRESETS: dict[str, list[StageSpec]] = {
    "draft": [_rig(60), _joint(30), _vertex(40)],
    "default": [_rig(150), _joint(80), _vertex(150)],
    "high": [_rig(250), _joint(150), _vertex(300)],
}


# Several views with normal maps see most face-mask vertices, so the vertex
# stage can follow the normals further: weaker shape regularisers, twice the
# iterations, uniform Adam steps at a larger rate. Detected landmarks then only
# place the head: their view-dependent bias (MediaPipe on renders: 1.4-2.1 px
# median, eye-corner distance up to 7 % off on turned heads) contradicts the
# normals of other views. What no view sees is held by the anchor term (weight
# by how unseen a vertex is, core/fit/objective.py): without it the weak
# regularisers let unseen parts drift (two views: 3.9 mm against 2.1 from one).
# Measured on Cycles renders (MediaPipe landmarks + ground-truth normal maps,
# plain fit, face RMSE mm): with the single-view settings 2 / 4 views give
# 2.55 / 2.41 (identity 1) and 3.48 / 1.79 (identity 2); with these 2.16 / 2.13
# and 2.46 / 1.86 (one view: 2.07 and 3.23). Without normal maps there is
# nothing to follow, so they apply from two views with normal maps on.
MULTIVIEW_MIN_VIEWS = 2
# A network's normal maps (the face prior's estimate) count toward these settings too:
# on bench photo's tuning people (301-304, 3 photos, EXIF) the fit with the face prior
# reached 0.753 mm with them against 0.857 with the single-view settings and the
# consistency term.
PREDICTED_NORMALS_MULTIVIEW = True
MULTIVIEW_NORMALS_OVERRIDES = {"stages": {
    "rig": {"weights": {"landmark": 10.0}},
    "joint": {"weights": {"landmark": 10.0}},
    "vertex": {
        "iterations_scale": 2.0,
        "uniform_offsets": True,
        "lr": {"offsets": 3e-3},
        "weights": {"landmark": 0.5, "laplacian": 0.0, "evgcc": 0.01, "conformal": 0.01, "flip": 0.01,
                    "anchor": 0.1},
    },
}}


# Several photos: the colours they show at each point of the face must agree
# (core/fit/consistency.py), a cue every set of photos has, unlike normal maps.
# Weight 10 in every stage, on `likeness bench photo`'s tuning people (mean surface
# distance over the face, mm, EXIF photos): 3 photos 1.567 -> 1.366, 7 photos
# 1.480 -> 1.142; weight 1 gave 1.436 (3 photos), 30 gave 1.618, and 10 with the
# vertex stage's landmark weight at 5 gave 1.534.
PHOTO_CONSISTENCY_WEIGHT = 10.0
PHOTO_CONSISTENCY_OVERRIDES = {"stages": {name: {"weights": {"consistency": PHOTO_CONSISTENCY_WEIGHT}}
                                          for name in ("rig", "joint", "vertex")}}


# Many photos whose normal maps are predicted (the face prior's) disagree where the network errs;
# their colours then add what the maps miss. On the tuning people (301-304, EXIF), consistency
# on top of the multi-view settings: 7 photos 0.802 -> 0.767 mm, but 3 photos 0.753 -> 0.847,
# so it joins from this many photos.
CONSISTENCY_WITH_PREDICTED_MIN_VIEWS = 5


# One photo whose normal map is predicted (the face prior's), default preset: stages a third as
# long whose steps fall to a tenth along a half cosine (``StageSpec.lr_final``), run to their end
# (annealed steps settle by themselves; a plateau test over a third of a stage's length stopped
# one held-out rig stage after 13 steps). The map's errors are what a long fit follows; stopping
# sooner loses little. On bench photo's people (one EXIF photo, mean surface distance over the
# face, mm; one thread) the full-length constant-step stages gave tuning 0.836 / held out 1.047;
# halved and annealed 0.820 / 1.033. Since the rig-ready template (same commit, both ways):
# halved 0.798 / 1.038, a third run to the end 0.806 / 1.038, 10.1-10.8 -> 8.7-9.1 s a fit.
# Exact normal maps keep the full stages: on bench fit's five cases
# (ground-truth maps) the median face RMSE went 1.583 -> 1.973 mm halved and annealed, and
# 1.724 annealed at full length. Several photos keep them too: there shorter rig and joint
# stages cost (3 photos, tuning: 0.684 -> 0.712 at a third) and annealing gained nothing (0.689).
# The presets whose stages the two settings below shorten (draft and high keep theirs).
SHORTER_STAGE_PRESETS = ("default",)
ONE_VIEW_OVERRIDES = {"stages": {name: {"iterations_scale": 1 / 3, "lr_final": 0.1, "plateau_patience": MAX_OVERRIDE_INT}
                                 for name in ("rig", "joint", "vertex")}}
# A few photos (fewer than CONSISTENCY_WITH_PREDICTED_MIN_VIEWS) whose maps are all predicted,
# default preset: the multi-view vertex stage at the preset's length instead of twice it, its
# steps annealed to a tenth. Tuning people, 3 photos: 0.684 -> 0.673 mm (0.677 without the
# anneal); held out 0.901 -> 0.892; 26 -> 20 s a fit on one thread. With 7 photos (and the
# consistency term) it cost 0.736 -> 0.749 on the tuning people, so many photos keep the full stage.
FEW_PREDICTED_VIEWS_OVERRIDES = {"stages": {"vertex": {"iterations_scale": 1.0, "lr_final": 0.1}}}


def check_overrides(overrides) -> dict:
    """``overrides`` if it is shaped like schedule overrides (see make_schedule), else ValueError naming the part."""
    def number(v) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    if overrides is None:
        return {}
    if not isinstance(overrides, dict):
        raise ValueError(f"schedule overrides must be a JSON object, got {type(overrides).__name__}")
    unknown = set(overrides) - {"stages", "only"}
    if unknown:
        raise ValueError(f"schedule overrides: unknown keys {sorted(unknown)}; use 'stages' and 'only'")
    only = overrides.get("only", [])
    if not isinstance(only, list) or not all(isinstance(n, str) for n in only):
        raise ValueError("schedule 'only' must be a list of stage names")
    stages = overrides.get("stages", {})
    if not isinstance(stages, dict):
        raise ValueError("schedule 'stages' must map stage names to settings")
    defaults = {f.name: f.default for f in dataclasses.fields(StageSpec)}
    for name, settings in stages.items():
        if not isinstance(settings, dict):
            raise ValueError(f"stage {name!r}: settings must be a JSON object")
        for key, value in settings.items():
            default = defaults.get(key, dataclasses.MISSING) if key != "iterations_scale" else 1.0
            where = f"stage {name!r}: {key!r}"
            if key in ("name", "kind"):
                raise ValueError(f"{where} cannot be overridden")
            if key in ("iterations", "plateau_patience", "top_k", "normal_res", "normal_levels"):
                if not (isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_OVERRIDE_INT):
                    raise ValueError(f"{where} must be a whole number in 0..{MAX_OVERRIDE_INT}, got {value!r:.40}")
            elif key in ("lr", "weights"):
                if not (isinstance(value, dict) and all(isinstance(k, str) and number(v) for k, v in value.items())):
                    raise ValueError(f"{where} must map names to finite numbers")
            elif key == "method":
                if not isinstance(value, str):
                    raise ValueError(f"{where} must be a solver name, one of {BA_METHODS}")
            elif key == "solver":
                if not (isinstance(value, dict) and all(isinstance(k, str) and (number(v) or isinstance(v, bool))
                                                        for k, v in value.items())):
                    raise ValueError(f"{where} must map solver settings to numbers or true/false")
            elif key == "variables":
                if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                    raise ValueError(f"{where} must be a list of variable names")
            elif isinstance(default, bool) or key == "uniform_offsets":
                if not isinstance(value, bool):
                    raise ValueError(f"{where} must be true or false")
            elif key in defaults or key == "iterations_scale":
                if not number(value):
                    raise ValueError(f"{where} must be a finite number, got {value!r:.40}")
    return overrides


def merge_overrides(base: dict, extra: dict | None) -> dict:
    """Schedule overrides ``extra`` on top of ``base`` (per stage, per field; dicts merge)."""
    out = copy.deepcopy(base)
    extra = check_overrides(extra)
    for key, value in extra.items():
        if key != "stages":
            out[key] = copy.deepcopy(value)
    stages = out.setdefault("stages", {})
    for name, fields in extra.get("stages", {}).items():
        mine = stages.setdefault(name, {})
        for key, value in fields.items():
            if isinstance(value, dict) and isinstance(mine.get(key), dict):
                mine[key] = {**mine[key], **value}
            else:
                mine[key] = copy.deepcopy(value)
    return out


def bundle_adjust_stage(method: str, solver: dict | None = None, hide_backfacing: bool = True,
                        min_cos: float = 0.1, init_offsets: bool = True) -> StageSpec:
    """A bundle-adjustment stage: ``method`` one of BA_METHODS, ``solver`` BAOptions overrides;
    with ``init_offsets`` its vertex corrections become the later stages' starting offsets."""
    return StageSpec(name=BUNDLE_ADJUST, kind=BUNDLE_ADJUST, method=method,
                     variables=("camera", "focal", "offsets") if init_offsets else ("camera", "focal"),
                     iterations=1, lr={}, weights={}, solver=dict(solver or {}),
                     hide_backfacing=hide_backfacing, min_cos=min_cos)


def schedule_for(options, views) -> list[StageSpec]:
    """The schedule a fit of ``views`` (ViewObservations) runs with ``options``
    (a ``FitOptions``): the preset, a bundle-adjustment stage after the rig stage
    when there are several views and ``options.multiview_ba`` names a method, the
    multi-view settings when at least ``MULTIVIEW_MIN_VIEWS`` views carry normal
    maps, else the consistency term when as many carry their photo's pixels, the
    one-view settings for a single view with a predicted normal map
    (``ONE_VIEW_OVERRIDES``), a shorter vertex stage for a few views with predicted
    maps (``FEW_PREDICTED_VIEWS_OVERRIDES``), then the
    caller's overrides (``options.schedule``). When every view
    knows its focal length, no stage optimises it."""
    several = sum(v.normals is not None and (PREDICTED_NORMALS_MULTIVIEW or not getattr(v, "cues_predicted", False))
                  for v in views) >= MULTIVIEW_MIN_VIEWS
    base = MULTIVIEW_NORMALS_OVERRIDES if several else {}
    if len(views) == 1 and options.preset in SHORTER_STAGE_PRESETS and views[0].normals is not None and \
            getattr(views[0], "cues_predicted", False):
        base = ONE_VIEW_OVERRIDES
    photos = sum(getattr(v, "image", None) is not None for v in views)
    if not several and photos >= MULTIVIEW_MIN_VIEWS:
        # Normal maps, where several photos have them, are the stronger cue: with exact ones
        # (bench photo's oracle_normals, person305, 7 photos) consistency took 0.290 to 0.356 mm.
        base = merge_overrides(PHOTO_CONSISTENCY_OVERRIDES, base)
    all_predicted = all(getattr(v, "cues_predicted", False) for v in views if v.normals is not None)
    if several and photos >= CONSISTENCY_WITH_PREDICTED_MIN_VIEWS and all_predicted:
        base = merge_overrides(base, PHOTO_CONSISTENCY_OVERRIDES)
    if several and len(views) < CONSISTENCY_WITH_PREDICTED_MIN_VIEWS and all_predicted and \
            options.preset in SHORTER_STAGE_PRESETS:
        base = merge_overrides(base, FEW_PREDICTED_VIEWS_OVERRIDES)
    ba = None
    if len(views) >= 2 and options.multiview_ba != "off":
        ba = bundle_adjust_stage(options.multiview_ba, options.multiview_ba_options, options.multiview_hide_backfacing,
                                 options.multiview_min_cos, options.multiview_init_offsets)
    stages = make_schedule(options.preset, merge_overrides(base, options.schedule), bundle_adjust=ba)
    if views and all(getattr(v, "focal_px", None) is not None for v in views):
        # Every view's focal length is known (EXIF or given): hold it. Estimated
        # from one photo it is poorly determined (0.55-1.67x the true value on
        # the 5 bench cases, where knowing it takes the median face RMSE from
        # 1.66 to 1.40 mm: `likeness bench fit --variants full,known_focal`).
        for spec in stages:
            spec.variables = tuple(v for v in spec.variables if v != "focal")
    return stages


def make_schedule(preset: str = "default", overrides: dict | None = None,
                  bundle_adjust: StageSpec | None = None) -> list[StageSpec]:
    """A copy of a preset, with a bundle-adjustment stage after its rig stage
    (or first) when given, and per-stage overrides applied.

    overrides: {"stages": {"rig": {"iterations": 10, "lr": {...}, "weights": {...}}},
                "only": ["rig", "vertex"]}  (``only`` keeps the listed preset stages;
    the bundle adjustment, asked for on its own, stays).
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    stages = copy.deepcopy(PRESETS[preset])
    if bundle_adjust is not None:
        at = next((i + 1 for i, s in enumerate(stages) if s.name == "rig"), 0)
        stages.insert(at, copy.deepcopy(bundle_adjust))
    overrides = check_overrides(overrides)
    per_stage = overrides.get("stages", {})
    unknown = set(per_stage) - {s.name for s in stages}
    if unknown:
        raise ValueError(f"overrides name unknown stages {sorted(unknown)}")
    out = []
    for spec in stages:
        fields = asdict(spec)
        stage_over = dict(per_stage.get(spec.name, {}))
        scale = float(stage_over.pop("iterations_scale", 1.0))
        if scale <= 0:
            raise ValueError(f"stage {spec.name!r}: iterations_scale must be positive")
        fields["iterations"] = int(round(fields["iterations"] * scale))
        fields["plateau_patience"] = int(round(fields["plateau_patience"] * scale))
        for key, value in stage_over.items():
            if key not in fields:
                raise ValueError(f"stage {spec.name!r}: unknown setting {key!r}")
            if isinstance(fields[key], dict):
                fields[key] = {**fields[key], **value}
            else:
                fields[key] = value
        fields["variables"] = tuple(fields["variables"])
        out.append(StageSpec(**fields))
    if "only" in overrides:
        keep = list(overrides["only"])
        out = [s for s in out if s.name in keep or s.kind == BUNDLE_ADJUST]
    return out


def schedule_to_dict(stages: list[StageSpec]) -> list[dict]:
    return [asdict(s) for s in stages]
