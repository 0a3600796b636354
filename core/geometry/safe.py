"""Gradient-safe elementary operations.

Mesh losses meet exactly degenerate input (zero-length edges, collapsed
triangles, coincident vertices). Plain ``norm``/``atan2``/division give NaN
gradients there; these versions return finite values and zero gradients at the
degenerate point and are exact everywhere else. They need no scale-dependent
epsilon: a quantity counts as degenerate only when its square underflows to
the dtype's smallest normal number.
"""

from __future__ import annotations

import torch

from .constants import NORMALIZE_EPS
from .vectors import dot


def _tiny(x: torch.Tensor) -> float:
    return torch.finfo(x.dtype).tiny


def _sqrt_or_zero(sq: torch.Tensor) -> torch.Tensor:
    nonzero = sq > _tiny(sq)
    return torch.where(nonzero, torch.sqrt(torch.where(nonzero, sq, torch.ones_like(sq))), torch.zeros_like(sq))


def safe_norm(x: torch.Tensor, dim: int = -1, keepdim: bool = False) -> torch.Tensor:
    """Euclidean norm along ``dim`` with a zero (not NaN) gradient at the zero vector.

    x: (..., D, ...) float. Returns the norm with ``dim`` reduced (kept if ``keepdim``).
    """
    return _sqrt_or_zero((x * x).sum(dim=dim, keepdim=keepdim))


def safe_norm3(c: torch.Tensor) -> torch.Tensor:
    """:func:`safe_norm` of component-major vectors. c: (3, ...) float. Returns (...)."""
    return _sqrt_or_zero(dot(c, c))


def safe_normalize(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """``x / |x|`` along ``dim``; the zero vector maps to the zero vector (finite gradient).

    x: (..., D, ...) float. Returns the same shape.
    """
    n = safe_norm(x, dim=dim, keepdim=True)
    return x / torch.where(n > 0, n, torch.ones_like(n))


def safe_normalize3(c: torch.Tensor) -> torch.Tensor:
    """:func:`safe_normalize` of component-major vectors. c: (3, ...) float. Returns (3, ...)."""
    n = safe_norm3(c)
    return c / torch.where(n > 0, n, torch.ones_like(n))


def normalize_clamped(x: torch.Tensor, eps: float = NORMALIZE_EPS) -> torch.Tensor:
    """``x / max(|x|, eps)`` along the last axis in one ``rsqrt``: normals to shade and render.

    x: (..., 3) float. Returns the same shape. Cheaper than :func:`safe_normalize`; the zero
    vector stays zero with a finite gradient, but a vector shorter than ``eps`` comes out
    shorter than 1.
    """
    sq = (x * x).sum(-1, keepdim=True)
    return x * torch.rsqrt(sq.clamp(min=eps * eps))


def safe_divide(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``num / den`` where ``den != 0``, else 0 (zero gradient). Broadcasting shapes."""
    ok = den != 0
    return torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(num * den))


def safe_atan2(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``atan2(y, x)`` with value 0 and zero gradient where ``x = y = 0``.

    y, x: broadcastable float tensors. Used for every angle instead of ``acos``,
    whose gradient is infinite at 0 and pi.
    """
    degenerate = (x * x + y * y) <= _tiny(x)
    return via_float64(torch.atan2, torch.where(degenerate, torch.zeros_like(y), y),
                       torch.where(degenerate, torch.ones_like(x), x))


def via_float64(fn, *xs: torch.Tensor) -> torch.Tensor:
    """``fn(*xs)`` for a transcendental ``fn`` (atan2, sin, cos, exp), evaluated in float64 and rounded
    to the first input's dtype.

    In float32 torch evaluates these with vector code over the body of a tensor and scalar code over
    its tail, which differ in the last bit, and which elements fall in the tail depends on the
    tensor's shape: a head fitted in a batch of people would not get the numbers it gets alone, and
    the fit turns one such bit into tenths of a millimetre (README, *Many people in one
    optimisation*). The two float64 results differ by about 1e-16, far below a float32 step, so the
    rounded values agree. The inputs are small (angles and weights, not images).
    """
    if xs[0].dtype == torch.float64:
        return fn(*xs)
    return fn(*(x.double() for x in xs)).to(xs[0].dtype)
