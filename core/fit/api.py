"""What the server, the CLI and the add-on see of a fit.

``run_fit(job, control)`` is a generator: it yields a ``FitRecord`` per
optimiser iteration (stage, iteration, loss terms, current vertices) and its
last record carries the ``FitResult``. ``control`` (a ``FitControl``) delivers
pins, pause/resume and cancel between iterations. ``job.options`` is a
``FitOptions`` (``core/fit/options.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .options import FitOptions


@dataclass
class PhotoInput:
    """One photo: a path on the core's machine or the encoded file bytes."""

    name: str
    path: str | None = None
    data: bytes | None = None
    face_index: int | None = None  # which face when several (None: the largest)

    def __post_init__(self):
        if (self.path is None) == (self.data is None):
            raise ValueError(f"photo {self.name!r}: give exactly one of path or data")


@dataclass
class FitJob:
    """A fit request. ``template`` None means the default head template."""

    photos: list[PhotoInput]
    template: object | None = None
    options: FitOptions = field(default_factory=FitOptions)
    device: str = "cpu"

    def __post_init__(self):
        if not self.photos:
            raise ValueError("a fit needs at least one photo")
        if not isinstance(self.options, FitOptions):
            raise TypeError(f"FitJob.options must be a FitOptions (FitOptions.from_dict reads a dict), "
                            f"got {type(self.options).__name__}")
        if self.options.cues is not None:
            self.options.cues.check_count(len(self.photos))


@dataclass
class FitResult:
    """Everything a fit produced, as plain arrays + JSON-able metadata.

    arrays: name -> numpy array (fitted posed vertices ``verts`` (N, 3) float32,
    neutral identity ``verts_neutral``, ``joint_rest`` (J, 3), camera ``K``,
    ``R``, ``t`` per view, controllers, ...); meta: the report (stages,
    seconds, device, landmark error, ...).
    """

    arrays: dict[str, np.ndarray]
    meta: dict
    # ``core.texture.TextureMaps`` from the photos, when a job made them.
    textures: object | None = None

    def wire_arrays(self) -> dict[str, np.ndarray]:
        """What a client receives: the arrays, with the UV maps ``albedo`` and ``normal_map``
        ((S, S, 3) uint8) when there are textures."""
        if self.textures is None:
            return dict(self.arrays)
        return {**self.arrays, "albedo": self.textures.albedo, "normal_map": self.textures.normal}


class FitRecord:
    """One optimiser iteration (or one solver stage, or the final "done" record).

    stage, iteration, and step / total_steps over all stages (for a progress bar)
    are plain values. The state of the fit at this iteration is read on demand,
    each part once, then kept: ``losses`` {term: float} (a dict, or a callable
    returning it: a few numbers copied off the device), and ``verts`` (N, 3)
    float32 current posed vertices (world, metres) with ``camera`` (the first
    view's current camera: {"K": (3, 3), "R": (3, 3), "t": (3,)} float32,
    "width", "height"), from ``frame``, a callable returning (verts, camera).
    A consumer reads what it wants before it advances the fit's generator; one
    that only shows progress never pays for a frame (no second deformation, no
    copy of the mesh off the device).
    """

    __slots__ = ("stage", "iteration", "step", "total_steps", "result", "_losses", "_frame")

    def __init__(self, stage: str, iteration: int, step: int, total_steps: int, losses=None,
                 verts: np.ndarray | None = None, result: FitResult | None = None, camera: dict | None = None,
                 frame=None):
        self.stage, self.iteration, self.step, self.total_steps = stage, iteration, step, total_steps
        self.result = result
        self._losses = losses if callable(losses) else dict(losses or {})
        self._frame = frame if frame is not None else (verts, camera)

    @property
    def losses(self) -> dict[str, float]:
        if callable(self._losses):
            self._losses = self._losses()
        return self._losses

    def _read(self) -> tuple:
        if callable(self._frame):
            self._frame = self._frame()
        return self._frame

    @property
    def verts(self) -> np.ndarray:
        return self._read()[0]

    @property
    def camera(self) -> dict | None:
        return self._read()[1]
