"""Eyeline curve flow (paper §4.2.3, eqs. 4-5): turning features of ordered curves vs the template's."""

from __future__ import annotations

import torch

from ..geometry.checks import check_same_batch, check_verts
from ..geometry.curves import CurveSet, curve_flow_features, mean_segment_length


def curve_flow_target(target_verts: torch.Tensor, curves: CurveSet) -> tuple[torch.Tensor, torch.Tensor]:
    """The target's side of the term, (unit (1 or B, K), features f_t): compute it once for a
    target that stays fixed and pass it as ``target``."""
    check_verts(target_verts, "target_verts")
    unit = mean_segment_length(target_verts.detach(), curves)
    return unit, curve_flow_features(target_verts, curves, unit)


def curve_flow_per_feature(verts: torch.Tensor, target_verts: torch.Tensor, curves: CurveSet,
                           target: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """|f_i^s - f_i^t| per flow feature.

    verts: (B, V, 3) float. target_verts: (1 or B, V, 3) float (the template).
    curves: ordered vertex curves (eyelids, crease). Features are measured in
    the target curve's mean segment length (detached), so the result is in
    radians per mean segment and does not depend on the mesh's units.
    target: ``curve_flow_target(target_verts, curves)`` when already computed.
    Returns (B, K, N-3); 0 past each curve's end.
    """
    check_verts(verts)
    check_verts(target_verts, "target_verts", verts.shape[1])
    check_same_batch(verts, target_verts, "verts", "target_verts")
    unit, f_t = curve_flow_target(target_verts, curves) if target is None else target
    f_s = curve_flow_features(verts, curves, unit.expand(verts.shape[0], -1))
    return (f_s - f_t).abs()


def curve_flow_loss(verts: torch.Tensor, target_verts: torch.Tensor, curves: CurveSet,
                    target: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """L_curve = mean over all features of all curves (and the batch) of |f_i^s - f_i^t|.

    The paper sums over i = 1..n-3 per curve; the mean keeps weights
    independent of how many curve vertices a template has. target: as in
    ``curve_flow_per_feature``. A scalar, dimensionless.
    """
    per_feature = curve_flow_per_feature(verts, target_verts, curves, target)
    count = curves.feature_mask().sum() * verts.shape[0]
    return per_feature.sum() / count
