"""A fit's options, typed: what the CLI, the server (a job's ``options`` on the
wire) and the batch runner ask of ``run_fit``.

``FitOptions.from_dict`` reads the wire's JSON object (every key optional,
unknown keys refused) and says in one line what is wrong and how to fix it;
``to_dict`` gives back only what differs from the defaults, so
``from_dict(o.to_dict()) == o``.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field

from core.priors.image import FOCAL_AUTO, focal_option
from core.texture.uv_layout import MAX_TEXTURE_SIZE

from .schedule import BA_METHODS, PRESETS, check_overrides, solver_options

# UV texture maps a fit returns (pixels per side).
DEFAULT_TEXTURE_SIZE = 1024
# Smallest texture map; 0 asks for none.
MIN_TEXTURE_SIZE = 8

# Several photos: no bundle adjustment by default, the stages run on all views
# from the per-view PnP cameras. On MediaPipe landmarks (+ normal maps) of
# Cycles renders this beat the topology-aware adjustment in 7 of 8 cases
# (2 identities x 2/4/8/16 views; README, *Several photos*): the adjustment
# triangulates the detector's view-dependent bias into the mesh. It pays with
# dense correspondences; ``"multiview_ba": "topology_ba"`` selects it.
DEFAULT_MULTIVIEW_BA = "off"

# Where dense per-pixel cues come from (core/priors/dense.py): the user's map files, or our
# face prior network (core/priors/face_prior.py; its shipped weights unless ``weights`` names a file).
CUE_PROVIDERS = ("files", "face_prior")
# The maps a provider may give (core/priors/dense.py): camera-space normals, template UV, the head's mask
# (whose outline the outline term follows).
CUE_MAPS = ("normals", "uv", "head")


@dataclass(frozen=True)
class CueOptions:
    """Dense cues for the photos: ``provider`` one of CUE_PROVIDERS; for "files",
    ``normal_maps`` holds one camera-space normal map path per photo (None: no map); for
    "face_prior", ``weights`` is a checkpoint path (None: the shipped weights). ``maps`` names
    which of the provider's maps the fit reads (empty: all it gives); ``("head",)`` keeps only
    the head's outline, as ``bench photo``'s "outline" ablation does."""

    provider: str = "files"
    normal_maps: tuple[str | None, ...] = ()
    weights: str | None = None
    maps: tuple[str, ...] = ()

    def __post_init__(self):
        if self.provider not in CUE_PROVIDERS:
            raise ValueError(f"cues: provider {self.provider!r} is unknown; use {', '.join(CUE_PROVIDERS)}")
        maps = self.normal_maps
        if not isinstance(maps, (list, tuple)) or not all(m is None or isinstance(m, str) for m in maps):
            raise ValueError("cues: normal_maps must be a list of file paths (null for a photo without one)")
        if self.provider == "face_prior" and maps:
            raise ValueError("cues: normal_maps are for the 'files' provider; the face prior makes its own")
        if self.weights is not None and (self.provider != "face_prior" or not isinstance(self.weights, str)):
            raise ValueError("cues: weights is a checkpoint path for the 'face_prior' provider")
        object.__setattr__(self, "normal_maps", tuple(maps))
        if not isinstance(self.maps, (list, tuple)) or not set(self.maps) <= set(CUE_MAPS):
            raise ValueError(f"cues: maps must be a list drawn from {', '.join(CUE_MAPS)}")
        object.__setattr__(self, "maps", tuple(self.maps))

    def reads(self, kind: str) -> bool:
        """Whether the fit reads the provider's ``kind`` map (one of CUE_MAPS)."""
        return not self.maps or kind in self.maps

    @classmethod
    def from_dict(cls, d) -> "CueOptions":
        if not isinstance(d, dict):
            raise ValueError(f"cues must be a JSON object like {{\"provider\": \"files\", \"normal_maps\": [...]}}, "
                             f"got {type(d).__name__}")
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"cues: unknown keys {sorted(unknown)}; use 'provider', 'normal_maps', 'weights' and 'maps'")
        return cls(**d)

    def to_dict(self) -> dict:
        out = {"provider": self.provider, "normal_maps": list(self.normal_maps)}
        if self.weights is not None:
            out["weights"] = self.weights
        if self.maps:
            out["maps"] = list(self.maps)
        return out

    def check_count(self, photos: int) -> None:
        if self.provider == "files" and len(self.normal_maps) != photos:
            raise ValueError(f"cues: one normal map per photo ({photos}), got {len(self.normal_maps)}")

    def providers(self, photos: int) -> list:
        """One ``core.priors.dense.CueProvider`` per photo (None: no cues for it)."""
        from core.priors.dense import FileCues

        self.check_count(photos)
        if self.provider == "face_prior":
            from core.priors.face_prior import FacePriorCues

            net = FacePriorCues(self.weights)
            return [net] * photos
        return [None if path is None else FileCues(normal_map=path) for path in self.normal_maps]


# Photos get the face prior's normals unless the caller says otherwise (cues None: none;
# a "files" CueOptions: the user's maps). On bench photo's held-out people it takes the
# one-photo fit from about 1.6 to about 0.9 mm (README, *A face prior of our own*).
DEFAULT_CUES = CueOptions(provider="face_prior")


@dataclass(frozen=True)
class FitOptions:
    """What a fit is asked to do. A bad value raises ValueError whose message starts
    with the option's name (the CLI swaps in its flag).

    preset: a schedule preset ("draft", "default", "high").
    schedule: overrides of the preset's stages (``core/fit/schedule.py``,
        ``{"stages": {"vertex": {"iterations": 300}}, "only": [...]}``).
    focal: "auto", "estimate" or a 35 mm-equivalent focal length in mm for every
        photo (``core.priors.image.focal_option``).
    texture_size: side of the UV albedo and normal maps in pixels; 0 makes none.
    float64: fit in double precision.
    cues: where dense per-pixel cues (normal maps) come from (default: the face prior
        network), or None for none.
    Several photos:
    multiview_ba: "off" (the stages on all views from per-view PnP cameras) or
        a bundle-adjustment method run as a stage after the rig stage
        ("topology_ba", "colmap_then_largesteps").
    multiview_ba_options: overrides of ``core.multiview.BAOptions``.
    multiview_init_offsets: the adjustment's vertex corrections start the later
        stages' per-vertex offsets (else only its cameras are kept).
    multiview_hide_backfacing, multiview_min_cos: before the adjustment, drop
        surface landmarks facing away from their camera (cosine below min_cos).
    multiview_shared_focal: the views share one focal length relative to image
        size (photos from one camera). Left per view, focals drift apart
        (measured on 16 renders with one lens: 0.8-1.7x the true focal).
    holdout_landmarks: a check of the fit on real photos, where no true head is known: every
        HOLDOUT_EVERY-th FaceMesh point and the face oval are left out of the objective (and of
        the camera's start), and the result reports how far the fitted head lands from them
        (``heldout_landmark_error_iod``, in eye distances).
    """

    preset: str = "default"
    schedule: dict | None = None
    focal: str | float = FOCAL_AUTO
    texture_size: int = DEFAULT_TEXTURE_SIZE
    float64: bool = False
    cues: CueOptions | None = DEFAULT_CUES
    multiview_ba: str = DEFAULT_MULTIVIEW_BA
    multiview_ba_options: dict = field(default_factory=dict)
    multiview_init_offsets: bool = True
    multiview_hide_backfacing: bool = True
    multiview_min_cos: float = 0.1
    multiview_shared_focal: bool = True
    holdout_landmarks: bool = False

    def __post_init__(self):
        if self.preset not in PRESETS:
            raise ValueError(f"preset {self.preset!r} is unknown; use one of {', '.join(PRESETS)}")
        try:
            check_overrides(self.schedule)
        except ValueError as exc:
            raise ValueError(f"schedule: {exc}") from None
        object.__setattr__(self, "focal", focal_option(self.focal))
        size = self.texture_size
        if not (isinstance(size, int) and not isinstance(size, bool)
                and (size == 0 or MIN_TEXTURE_SIZE <= size <= MAX_TEXTURE_SIZE)):
            raise ValueError(f"texture_size must be 0 (no maps) or a whole number of pixels in "
                             f"{MIN_TEXTURE_SIZE}..{MAX_TEXTURE_SIZE}, got {size!r:.40}")
        for name in ("float64", "multiview_init_offsets", "multiview_hide_backfacing", "multiview_shared_focal"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r:.40}")
        if self.cues is not None and not isinstance(self.cues, CueOptions):
            raise ValueError("cues must be a CueOptions")
        if self.multiview_ba != "off" and self.multiview_ba not in BA_METHODS:
            raise ValueError(f"multiview_ba {self.multiview_ba!r} is unknown; use 'off' or one of {', '.join(BA_METHODS)}")
        cos = self.multiview_min_cos
        if not (isinstance(cos, (int, float)) and not isinstance(cos, bool) and -1.0 <= cos <= 1.0):
            raise ValueError(f"multiview_min_cos must be a cosine in -1..1, got {cos!r:.40}")
        solver_options(self.multiview_ba_options, "multiview_ba_options")  # fails before any photo is read

    @classmethod
    def from_dict(cls, d: dict | None) -> "FitOptions":
        """The options in a job's JSON object (None or {} for the defaults); ValueError names what is wrong."""
        if d is None:
            return cls()
        if not isinstance(d, dict):
            raise ValueError(f"fit options must be a JSON object, got {type(d).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ValueError(f"unknown fit options {unknown}; known: {', '.join(known)}")
        values = copy.deepcopy(d)
        if values.get("cues") is not None:
            values["cues"] = CueOptions.from_dict(values["cues"])
        elif "cues" in values and values["cues"] is None:
            values["cues"] = None
        if "focal" in values and values["focal"] is None:
            values["focal"] = FOCAL_AUTO
        return cls(**values)

    def to_dict(self) -> dict:
        """The JSON object ``from_dict`` reads back: the fields that differ from the defaults."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            if value != default:
                out[f.name] = value.to_dict() if isinstance(value, CueOptions) else value
        return out
