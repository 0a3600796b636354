"""Our own dense face prior: a small encoder-decoder that reads a face crop and predicts,
per pixel, the camera-space normal, the template UV, a head mask and a confidence.

Trained only on synthetic people rendered with the project's rasteriser
(``tools/prior_data.py``, ``tools/train_prior.py``); the trained weights ship in
``core/data/face_prior.pt`` and load from there (or from a checkpoint the user
names). Nothing is downloaded.

The crop rule (``face_box``) is shared with the training data: a square around the
478 landmarks' bounding box, ``FACE_SCALE`` times its larger side.

Outputs, at the crop's resolution:
- normals: unit camera-space normals in OpenCV axes (facing the camera: n_z < 0);
- uv: template UV in [0, 1];
- mask: probability that the pixel shows the head's skin surface (not hair
  geometry, eyes, teeth or background);
- confidence: min(1, NORMAL_ERROR_REF · exp(-s)) from the predicted log-scale s of the
  normal error (the network is trained with a Laplace likelihood on the chord error, so
  exp(s) is its expected size).
"""

from __future__ import annotations

import os
import pathlib
from dataclasses import asdict, dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .crop import crop_square
from .dense import CueMap, CueProvider, DenseCues
from .errors import CheckpointError
from .image import Photo
from .landmarks import FaceLandmarks, detect_landmarks

# Crop side as a multiple of the larger side of the landmarks' box.
FACE_SCALE = 1.5
DEFAULT_WEIGHTS = pathlib.Path(__file__).resolve().parents[1] / "data" / "face_prior.pt"
# Output channels: normals 3, uv 2, mask logit 1, log-scale of the normal error 1.
OUT_CHANNELS = 7
# Confidence 1 for a predicted normal error (chord length) at or below this (about 6°),
# falling as 1 / error above it.
NORMAL_ERROR_REF = 0.1


@dataclass(frozen=True)
class FacePriorConfig:
    """size: crop side in pixels (a multiple of 2 ** (len(widths) + 1)); widths: encoder widths per level."""

    size: int = 192
    widths: tuple[int, ...] = (32, 48, 64, 96, 128)

    @classmethod
    def from_dict(cls, d: dict) -> "FacePriorConfig":
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise CheckpointError(f"the face prior checkpoint's config has unknown keys {unknown}")
        d = dict(d)
        if "widths" in d:
            d["widths"] = tuple(int(w) for w in d["widths"])
        cfg = cls(**d)
        if cfg.size % (2 ** (len(cfg.widths) + 1)):
            raise CheckpointError(f"crop size {cfg.size} must be a multiple of {2 ** (len(cfg.widths) + 1)}")
        return cfg

    def to_dict(self) -> dict:
        d = asdict(self)
        d["widths"] = list(self.widths)
        return d


def face_box(points: np.ndarray) -> tuple[np.ndarray, float]:
    """(centre (2,), side) of the square crop around landmark pixels (N, 2)."""
    p = np.asarray(points, np.float64)
    lo, hi = p.min(0), p.max(0)
    return (lo + hi) / 2.0, float(FACE_SCALE * (hi - lo).max())


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


class FacePriorNet(nn.Module):
    """A U-Net: a stem at full resolution, one strided level per width, skip connections up."""

    def __init__(self, config: FacePriorConfig = FacePriorConfig()) -> None:
        super().__init__()
        self.config = config
        w = config.widths
        # The stem halves the resolution at once: the maps are predicted at S/2 and upsampled
        # (the fit compares normals at a few hundred pixels at most; full-resolution layers
        # would triple the training cost on a CPU).
        self.stem = nn.Sequential(nn.Conv2d(3, w[0], 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(w[0]),
                                  nn.ReLU(inplace=True), _block(w[0], w[0]))
        self.down = nn.ModuleList(
            nn.Sequential(nn.Conv2d(w[i], w[i + 1], 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(w[i + 1]),
                          nn.ReLU(inplace=True), _block(w[i + 1], w[i + 1]))
            for i in range(len(w) - 1)
        )
        self.up = nn.ModuleList(_block(w[i + 1] + w[i], w[i]) for i in reversed(range(len(w) - 1)))
        self.head = nn.Conv2d(w[0], OUT_CHANNELS, 1)
        self.register_buffer("mean", torch.tensor([0.5, 0.45, 0.4]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.25, 0.25, 0.25]).view(1, 3, 1, 1))

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """image: (B, 3, S, S) float sRGB in [0, 1]. Returns (B, C, S, S) maps: "normals" (3, unit),
        "uv" (2), "mask_logit" (1), "log_scale" (1)."""
        x = self.stem((image - self.mean) / self.std)
        skips = [x]
        for level in self.down:
            x = level(x)
            skips.append(x)
        skips.pop()
        for level in self.up:
            skip = skips.pop()
            x = level(torch.cat([F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False), skip], 1))
        out = F.interpolate(self.head(x), size=image.shape[-2:], mode="bilinear", align_corners=False)
        return {
            "normals": F.normalize(out[:, 0:3], dim=1, eps=1e-6),
            "uv": torch.sigmoid(out[:, 3:5]),
            "mask_logit": out[:, 5:6],
            "log_scale": out[:, 6:7].clamp(-6.0, 3.0),
        }


def save_checkpoint(path, net: FacePriorNet, extra: dict | None = None, half: bool = True) -> None:
    """Write ``{"config", "state_dict", "extra"}``; floating tensors stored as fp16 when ``half``."""
    state = {k: (v.half() if half and v.is_floating_point() else v).clone() for k, v in net.state_dict().items()}
    tmp = pathlib.Path(str(path) + ".tmp")
    torch.save({"kind": "likeness-face-prior", "config": net.config.to_dict(), "state_dict": state,
                "extra": extra or {}}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path) -> tuple[FacePriorNet, dict]:
    """The network (eval mode, float32, CPU) and the checkpoint's ``extra`` dict."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise CheckpointError(f"face prior weights {path} not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a damaged file
        raise CheckpointError(f"{path.name} is not a face prior checkpoint ({type(exc).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("kind") != "likeness-face-prior":
        raise CheckpointError(f"{path.name} is not a face prior checkpoint (made by tools/train_prior.py)")
    net = FacePriorNet(FacePriorConfig.from_dict(ckpt["config"]))
    try:
        net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()})
    except RuntimeError as exc:
        raise CheckpointError(f"{path.name}: weights do not match its config ({str(exc).splitlines()[0]})") from None
    return net.eval(), dict(ckpt.get("extra", {}))


def _average_with_mirror(out: dict, mirrored: dict) -> dict:
    """The network's maps averaged with its maps of the mirrored crop, mirrored back: the normals'
    x (right) flips sign, the mask and the error scale are plain images. The UV map is kept from
    the crop as given (the template's UV layout is not mirror-symmetric)."""
    back = {k: v.flip(-1) for k, v in mirrored.items()}
    n = back["normals"] * torch.tensor([-1.0, 1.0, 1.0], device=back["normals"].device).view(1, 3, 1, 1)
    return {"normals": F.normalize(out["normals"] + n, dim=1, eps=1e-6), "uv": out["uv"],
            "mask_logit": 0.5 * (out["mask_logit"] + back["mask_logit"]),
            "log_scale": 0.5 * (out["log_scale"] + back["log_scale"])}


class FacePriorCues(CueProvider):
    """Dense cues (normals, uv) from the face prior network, in the photo's pixel frame.

    Confidence is the predicted skin mask times the normal confidence; pixels the crop
    does not cover get 0. ``device``: where the network runs.
    """

    name = "face_prior"
    predicted = True

    def __init__(self, weights=None, device: str | torch.device = "cpu", min_mask: float = 0.5,
                 flip_average: bool = True) -> None:
        self.weights = pathlib.Path(weights) if weights else DEFAULT_WEIGHTS
        self.flip_average = bool(flip_average)
        self.device = torch.device(device)
        self.min_mask = float(min_mask)
        self._net: FacePriorNet | None = None

    @property
    def kinds(self) -> tuple[str, ...]:
        return ("normals", "uv", "head")

    @property
    def net(self) -> FacePriorNet:
        if self._net is None:
            self._net = load_checkpoint(self.weights)[0].to(self.device)
        return self._net

    def predict_crop(self, crop_rgb: np.ndarray) -> dict[str, np.ndarray]:
        """crop_rgb: (S, S, 3) uint8 at the network's size -> dict of (S, S, C) float32 maps
        "normals", "uv", "mask" (probability), "confidence"."""
        x = torch.as_tensor(crop_rgb, dtype=torch.float32, device=self.device).permute(2, 0, 1)[None] / 255.0
        with torch.no_grad():
            out = self.net(x)
            if self.flip_average:
                out = _average_with_mirror(out, self.net(x.flip(-1)))
        return {
            "normals": out["normals"][0].permute(1, 2, 0).cpu().numpy(),
            "uv": out["uv"][0].permute(1, 2, 0).cpu().numpy(),
            "mask": torch.sigmoid(out["mask_logit"][0, 0]).cpu().numpy(),
            "confidence": (NORMAL_ERROR_REF * torch.exp(-out["log_scale"][0, 0])).clamp(max=1.0).cpu().numpy(),
        }

    def predict(self, photo: Photo, face: FaceLandmarks | None = None) -> DenseCues:
        if face is None:
            face = detect_landmarks(photo)
        size = self.net.config.size
        centre, side = face_box(face.points)
        crop = crop_square(photo.rgb, centre, side, size)
        maps = self.predict_crop(crop.rgb)
        h, w = photo.rgb.shape[:2]
        # Crop -> photo: photo pixel centre (x + 0.5) maps to crop coordinate s * (x + 0.5 - origin).
        s, (ox, oy) = crop.scale, crop.origin
        matrix = np.array([[s, 0.0, s * (0.5 - ox) - 0.5], [0.0, s, s * (0.5 - oy) - 0.5]], np.float64)

        def back(img: np.ndarray) -> np.ndarray:
            return cv2.warpAffine(img, matrix, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                  borderMode=cv2.BORDER_CONSTANT, borderValue=0)

        keep = (maps["mask"] >= self.min_mask).astype(np.float32)
        conf = back(maps["confidence"] * keep)
        normals = back(np.ascontiguousarray(maps["normals"]))
        normals /= np.maximum(np.linalg.norm(normals, axis=-1, keepdims=True), 1e-6)
        uv = back(np.ascontiguousarray(maps["uv"]))
        # Bilinear resampling blurs across the mask's edge: keep only pixels whose whole
        # neighbourhood was inside it.
        inside = back(keep) > 0.999
        conf = np.where(inside, conf, 0.0).astype(np.float32)
        # The head mask (face, scalp, ears, neck) where the crop covers the photo: its outline
        # is the head's silhouette (core.priors.outline).
        head = back(np.ascontiguousarray(maps["mask"]))
        covered = back(np.ones_like(maps["mask"])) > 0.999
        return DenseCues(image_size=(w, h), maps={"normals": CueMap(normals.astype(np.float32), conf),
                                                  "uv": CueMap(uv.astype(np.float32), conf),
                                                  "head": CueMap(head[..., None].astype(np.float32),
                                                                 covered.astype(np.float32))},
                         source=f"face prior {self.weights.name}")
