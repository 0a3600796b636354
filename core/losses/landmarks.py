"""Landmark alignment (paper §4.2.1, eq. 1): corner MSE + one-sided Chamfer on contours."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from ..geometry.checks import check_index
from ..geometry.safe import safe_divide, safe_norm


@dataclasses.dataclass(frozen=True)
class LandmarkLayout:
    """Which landmark ids are corners and which form contours.

    Fields: num_landmarks L; corners (Nc,) int64 ids (eye and mouth corners);
    contour_ids (K, N) int64 ids of each contour, padded with 0;
    contour_lengths (K,) int64 number of ids per contour.
    """

    num_landmarks: int
    corners: torch.Tensor
    contour_ids: torch.Tensor
    contour_lengths: torch.Tensor

    @classmethod
    def from_ids(
        cls,
        num_landmarks: int,
        corners: Sequence[int] | torch.Tensor,
        contours: Sequence[Sequence[int] | torch.Tensor] = (),
        device: torch.device | str = "cpu",
    ) -> "LandmarkLayout":
        """corners: landmark ids; contours: one id sequence per contour (eye lines, jaw line)."""
        corners_t = torch.as_tensor(corners, dtype=torch.int64).reshape(-1)
        check_index(corners_t, "corners", num_landmarks)
        seqs = [torch.as_tensor(c, dtype=torch.int64).reshape(-1) for c in contours]
        for k, s in enumerate(seqs):
            if s.numel() == 0:
                raise ValueError(f"contour {k} is empty")
            check_index(s, f"contour {k}", num_landmarks)
        width = max((s.numel() for s in seqs), default=0)
        ids = torch.zeros(len(seqs), width, dtype=torch.int64)
        for k, s in enumerate(seqs):  # once per contour at build time
            ids[k, : s.numel()] = s
        lengths = torch.tensor([s.numel() for s in seqs], dtype=torch.int64)
        return cls(num_landmarks, corners_t.to(device), ids.to(device), lengths.to(device))

    def to(self, device: torch.device | str) -> "LandmarkLayout":
        """A copy on ``device``."""
        return LandmarkLayout(
            self.num_landmarks, self.corners.to(device), self.contour_ids.to(device), self.contour_lengths.to(device)
        )


def interocular_distance(detected: torch.Tensor, left: int, right: int) -> torch.Tensor:
    """Distance between two detected landmarks, the usual scale: the outer eye corners.

    detected: (B, L, 2) float pixels. Returns (B,) pixels.
    """
    return safe_norm(detected[:, left] - detected[:, right])


def landmark_terms(
    projected: torch.Tensor,
    detected: torch.Tensor,
    layout: LandmarkLayout,
    scale: torch.Tensor,
    confidence: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two terms of eq. 1 per image, each divided by scale^2.

    projected: (B, L, 2) float pixels, template landmarks projected into each
    view. detected: (B, L, 2) float pixels. scale: (B,) float pixels, e.g.
    :func:`interocular_distance`, so both terms are dimensionless and
    independent of image size. confidence: optional (B, L) float >= 0; a
    detection with confidence 0 is ignored.

    Corner term: sum_c w_c |u^_c - u_c|^2 / sum_c w_c. Contour term: for each
    projected contour point, the squared distance to the nearest valid
    detected point of the same contour (one-sided Chamfer, so points may slide
    along the contour), weighted by that detection's confidence and averaged.
    Returns (corner (B,), contour (B,)); a term with no valid points is 0.
    """
    _check_landmarks(projected, detected, layout, scale, confidence)
    conf = torch.ones_like(projected[..., 0]) if confidence is None else confidence.to(projected.dtype)
    inv_scale2 = safe_divide(torch.ones_like(scale), scale.to(projected.dtype) ** 2)

    c = layout.corners
    w = conf[:, c]
    corner_sq = ((projected[:, c] - detected[:, c]) ** 2).sum(-1)
    corner = safe_divide((w * corner_sq).sum(-1), w.sum(-1)) * inv_scale2

    if layout.contour_ids.shape[0] == 0:
        return corner, torch.zeros_like(corner)
    ids = layout.contour_ids  # (K, N)
    present = torch.arange(ids.shape[1], device=ids.device) < layout.contour_lengths[:, None]  # (K, N)
    p = projected[:, ids]  # (B, K, N, 2)
    d = detected[:, ids]
    d_conf = conf[:, ids] * present.to(conf.dtype)  # (B, K, N)
    pair_sq = ((p[:, :, :, None] - d[:, :, None, :]) ** 2).sum(-1)  # (B, K, Np, Nd)
    usable = d_conf[:, :, None, :] > 0
    big = torch.finfo(pair_sq.dtype).max
    nearest_sq, nearest = torch.where(usable, pair_sq, torch.full_like(pair_sq, big)).min(dim=-1)  # (B, K, Np)
    matched_conf = torch.gather(d_conf, 2, nearest)  # 0 where no detection was usable
    weight = matched_conf * present.to(conf.dtype)
    nearest_sq = torch.where(weight > 0, nearest_sq, torch.zeros_like(nearest_sq))
    contour = safe_divide((weight * nearest_sq).sum((1, 2)), weight.sum((1, 2))) * inv_scale2
    return corner, contour


def landmark_loss(
    projected: torch.Tensor,
    detected: torch.Tensor,
    layout: LandmarkLayout,
    scale: torch.Tensor,
    confidence: torch.Tensor | None = None,
) -> torch.Tensor:
    """L_land = corner term + contour term (eq. 1), averaged over the batch.

    Shapes as :func:`landmark_terms`. Returns a dimensionless scalar (squared
    error in units of the scale, e.g. inter-ocular distance).
    """
    corner, contour = landmark_terms(projected, detected, layout, scale, confidence)
    return (corner + contour).mean()


def _check_landmarks(projected, detected, layout, scale, confidence) -> None:
    expected = (projected.shape[0], layout.num_landmarks, 2)
    for name, t in (("projected", projected), ("detected", detected)):
        if t.dim() != 3 or tuple(t.shape) != expected:
            raise ValueError(f"{name} landmarks must have shape (B, L, 2) = {expected}, got {tuple(t.shape)}")
    if scale.shape != (projected.shape[0],):
        raise ValueError(f"scale must have shape (B,) = ({projected.shape[0]},), got {tuple(scale.shape)}")
    if confidence is not None and confidence.shape != expected[:2]:
        raise ValueError(f"confidence must have shape (B, L) = {expected[:2]}, got {tuple(confidence.shape)}")
