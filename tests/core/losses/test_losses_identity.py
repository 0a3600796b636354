"""Normal consistency and landmark alignment (eq. 1) against loop references, with float64 gradchecks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from core.losses import (
    LandmarkLayout,
    interocular_distance,
    landmark_loss,
    landmark_terms,
    normal_consistency_loss,
)


def random_normal_maps(seed, b=2, h=5, w=4):
    g = torch.Generator().manual_seed(seed)
    unit = lambda x: x / x.norm(dim=-1, keepdim=True)  # noqa: E731
    pred = unit(torch.randn(b, h, w, 3, generator=g, dtype=torch.float64))
    rend = unit(torch.randn(b, h, w, 3, generator=g, dtype=torch.float64))
    mask = torch.rand(b, h, w, generator=g, dtype=torch.float64) * (torch.rand(b, h, w, generator=g) > 0.3)
    return pred, rend, mask


def normal_consistency_naive(pred, rend, mask):
    num = den = 0.0
    b, h, w, _ = pred.shape
    for i in range(b):
        for y in range(h):
            for x in range(w):
                num += mask[i, y, x].item() * sum(abs(pred[i, y, x, c].item() - rend[i, y, x, c].item()) for c in range(3))
                den += mask[i, y, x].item()
    return num / den if den else 0.0


def test_normal_consistency_matches_naive():
    pred, rend, mask = random_normal_maps(0)
    assert normal_consistency_loss(pred, rend, mask).item() == pytest.approx(normal_consistency_naive(pred, rend, mask))
    binary = mask > 0
    assert normal_consistency_loss(pred, rend, binary).item() == pytest.approx(
        normal_consistency_naive(pred, rend, binary.double())
    )


def test_normal_consistency_is_zero_for_identical_maps_and_empty_masks():
    pred, rend, mask = random_normal_maps(1)
    assert normal_consistency_loss(pred, pred, mask).item() == 0.0
    rend.requires_grad_(True)
    loss = normal_consistency_loss(pred, rend, torch.zeros_like(mask))
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(rend.grad).all()


def test_normal_consistency_gradcheck():
    pred, rend, mask = random_normal_maps(2)
    assert torch.autograd.gradcheck(lambda r: normal_consistency_loss(pred, r, mask), (rend.requires_grad_(True),))


def test_normal_consistency_rejects_mismatched_shapes():
    pred, rend, mask = random_normal_maps(3)
    with pytest.raises(ValueError, match=r"\(B, H, W, 3\)"):
        normal_consistency_loss(pred, rend[..., :2], mask)
    with pytest.raises(ValueError, match="mask"):
        normal_consistency_loss(pred, rend, mask[:, :-1])


CONTOURS = [[4, 5, 6, 7, 8], [9, 10, 11], [12, 13, 14, 15, 16, 17]]
CORNERS = [0, 1, 2, 3]


def random_landmarks(seed, b=2, num=18):
    g = torch.Generator().manual_seed(seed)
    detected = 200 * torch.rand(b, num, 2, generator=g, dtype=torch.float64)
    projected = detected + 8 * torch.randn(b, num, 2, generator=g, dtype=torch.float64)
    confidence = torch.rand(b, num, generator=g, dtype=torch.float64)
    confidence[:, 6] = 0.0  # an undetected contour point
    return projected, detected, confidence


def landmark_naive(projected, detected, confidence, scale):
    out = []
    for b in range(projected.shape[0]):
        p, d, c, s = projected[b].numpy(), detected[b].numpy(), confidence[b].numpy(), scale[b].item()
        corner = sum(c[i] * np.sum((p[i] - d[i]) ** 2) for i in CORNERS) / sum(c[i] for i in CORNERS)
        num = den = 0.0
        for contour in CONTOURS:
            for i in contour:
                best, best_j = math.inf, None
                for j in contour:
                    if c[j] > 0 and np.sum((p[i] - d[j]) ** 2) < best:
                        best, best_j = np.sum((p[i] - d[j]) ** 2), j
                num += c[best_j] * best
                den += c[best_j]
        out.append((corner / s**2, num / den / s**2))
    return out


def test_landmark_terms_match_naive_eq1():
    projected, detected, confidence = random_landmarks(0)
    layout = LandmarkLayout.from_ids(18, CORNERS, CONTOURS)
    scale = interocular_distance(detected, 0, 1)
    corner, contour = landmark_terms(projected, detected, layout, scale, confidence)
    for b, (c_ref, k_ref) in enumerate(landmark_naive(projected, detected, confidence, scale)):
        assert corner[b].item() == pytest.approx(c_ref)
        assert contour[b].item() == pytest.approx(k_ref)
    total = landmark_loss(projected, detected, layout, scale, confidence)
    assert total.item() == pytest.approx((corner + contour).mean().item())


def test_contour_points_may_slide_along_the_detected_contour():
    _, detected, _ = random_landmarks(1)
    layout = LandmarkLayout.from_ids(18, CORNERS, CONTOURS)
    projected = detected.clone()
    projected[:, CONTOURS[2]] = detected[:, CONTOURS[2]].roll(1, dims=1)  # same points, other order
    corner, contour = landmark_terms(projected, detected, layout, torch.ones(2, dtype=torch.float64))
    assert corner.abs().max() == 0 and contour.abs().max() == 0
    projected[:, 0] += 3.0
    corner, _ = landmark_terms(projected, detected, layout, torch.full((2,), 2.0, dtype=torch.float64))
    assert torch.allclose(corner, torch.full_like(corner, 18.0 / 4 / 4))


def test_landmark_loss_gradcheck():
    projected, detected, confidence = random_landmarks(2)
    layout = LandmarkLayout.from_ids(18, CORNERS, CONTOURS)
    scale = interocular_distance(detected, 0, 1)
    assert torch.autograd.gradcheck(
        lambda p: landmark_loss(p, detected, layout, scale, confidence), (projected.requires_grad_(True),)
    )


def test_landmarks_without_confident_detections_give_zero_and_finite_gradients():
    projected, detected, _ = random_landmarks(3)
    layout = LandmarkLayout.from_ids(18, CORNERS, CONTOURS)
    projected.requires_grad_(True)
    loss = landmark_loss(projected, detected, layout, torch.zeros(2, dtype=torch.float64), torch.zeros(2, 18, dtype=torch.float64))
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(projected.grad).all()


def test_landmark_input_errors_are_readable():
    projected, detected, confidence = random_landmarks(4)
    layout = LandmarkLayout.from_ids(18, CORNERS, CONTOURS)
    with pytest.raises(ValueError, match=r"\(B, L, 2\)"):
        landmark_loss(projected[:, :10], detected, layout, torch.ones(2))
    with pytest.raises(ValueError, match="scale"):
        landmark_loss(projected, detected, layout, torch.ones(3))
    with pytest.raises(ValueError, match="corners has values"):
        LandmarkLayout.from_ids(18, [0, 18])
