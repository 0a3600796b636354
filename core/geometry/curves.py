"""Ordered vertex curves (eyelid lines) and their turning-flow features (eqs. 4-5)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from .indexing import gather
from .constants import CURVE_SEGMENT_FLOOR
from .safe import safe_atan2, safe_divide, safe_norm3, safe_normalize3
from .vectors import components, cross, dot


@dataclasses.dataclass(frozen=True)
class CurveSet:
    """K ordered vertex curves packed into one padded tensor.

    Fields: indices (K, N) int64 vertex ids, padded with 0 past each curve's
    end; lengths (K,) int64 number of vertices per curve (each >= 4, the
    fewest that give one flow feature).
    """

    indices: torch.Tensor
    lengths: torch.Tensor

    @classmethod
    def from_sequences(
        cls, sequences: Sequence[Sequence[int] | torch.Tensor], num_verts: int, device: torch.device | str = "cpu"
    ) -> "CurveSet":
        """Pack ordered vertex-id sequences (each of >= 4 ids in [0, num_verts))."""
        seqs = [torch.as_tensor(s, dtype=torch.int64).reshape(-1) for s in sequences]
        if not seqs:
            raise ValueError("a CurveSet needs at least one curve")
        for k, s in enumerate(seqs):
            if s.numel() < 4:
                raise ValueError(f"curve {k} has {s.numel()} vertices; a flow feature needs at least 4")
            if int(s.min()) < 0 or int(s.max()) >= num_verts:
                raise ValueError(f"curve {k} has vertex ids outside [0, {num_verts - 1}]")
        width = max(s.numel() for s in seqs)
        indices = torch.zeros(len(seqs), width, dtype=torch.int64)
        for k, s in enumerate(seqs):  # once per curve at build time, not per step
            indices[k, : s.numel()] = s
        lengths = torch.tensor([s.numel() for s in seqs], dtype=torch.int64)
        return cls(indices.to(device), lengths.to(device))

    def segment_mask(self) -> torch.Tensor:
        """(K, N-1) bool: segment i (v_i -> v_i+1) exists."""
        return torch.arange(self.indices.shape[1] - 1, device=self.indices.device) < (self.lengths[:, None] - 1)

    def feature_mask(self) -> torch.Tensor:
        """(K, N-3) bool: flow feature i (vertices i..i+3) exists."""
        return torch.arange(self.indices.shape[1] - 3, device=self.indices.device) < (self.lengths[:, None] - 3)

    def to(self, device: torch.device | str) -> "CurveSet":
        """A copy on ``device``."""
        return CurveSet(self.indices.to(device), self.lengths.to(device))


def mean_segment_length(verts: torch.Tensor, curves: CurveSet) -> torch.Tensor:
    """Mean segment length of each curve. verts: (B, V, 3) float. Returns (B, K) in mesh units."""
    seg = _segment_lengths(verts, curves)
    mask = curves.segment_mask().to(seg.dtype)
    return (seg * mask).sum(-1) / mask.sum(-1)


def curve_flow_features(verts: torch.Tensor, curves: CurveSet, unit_length: torch.Tensor) -> torch.Tensor:
    """Turning-flow features f_i of eq. 5, made dimensionless by a length unit.

    d_i = (u_i + u_i+1) / 2 with u_i the unit direction of segment v_i -> v_i+1
    (eq. 4); f_i = angle(d_i, d_i+1) * l / max(|v_i+1 - v_i|, eps * l), with l =
    ``unit_length`` and eps = ``CURVE_SEGMENT_FLOOR``: eq. 5 times l, so f is in
    radians per l and a collapsed segment cannot divide by zero.

    verts: (B, V, 3) float. unit_length: (B, K) or (K,) float, e.g. the
    template curve's mean segment length. Returns (B, K, N-3); entries past a
    curve's end are 0 (see ``curves.feature_mask()``).
    """
    points = gather(components(verts), curves.indices)  # (3, B, K, N)
    seg = points[..., 1:] - points[..., :-1]
    u = safe_normalize3(seg)
    d = 0.5 * (u[..., :-1] + u[..., 1:])  # (3, B, K, N-2)
    d0, d1 = d[..., :-1], d[..., 1:]
    angle = safe_atan2(safe_norm3(cross(d0, d1)), dot(d0, d1))  # (B, K, N-3)
    length = safe_norm3(seg[..., :-2])
    unit = unit_length.to(verts.dtype).expand(verts.shape[0], -1)[:, :, None]
    f = safe_divide(angle * unit, torch.maximum(length, CURVE_SEGMENT_FLOOR * unit))
    return f * curves.feature_mask().to(f.dtype)


def _segment_lengths(verts: torch.Tensor, curves: CurveSet) -> torch.Tensor:
    points = gather(components(verts), curves.indices)
    return safe_norm3(points[..., 1:] - points[..., :-1])
