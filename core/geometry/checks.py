"""Readable shape and dtype checks for geometry and loss inputs."""

from __future__ import annotations

import torch


def check_verts(verts: torch.Tensor, name: str = "verts", num_verts: int | None = None) -> None:
    """Require ``verts`` to be a floating (B, V, 3) tensor (with V = ``num_verts`` if given)."""
    if not isinstance(verts, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, V, 3), got {type(verts).__name__}")
    if verts.dim() != 3 or verts.shape[-1] != 3:
        raise ValueError(f"{name} must have shape (B, V, 3), got {tuple(verts.shape)}")
    if not verts.is_floating_point():
        raise TypeError(f"{name} must be float32 or float64, got {verts.dtype}")
    if num_verts is not None and verts.shape[1] != num_verts:
        raise ValueError(f"{name} has {verts.shape[1]} vertices but the topology has {num_verts}")


def check_same_batch(a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str) -> None:
    """Require batch sizes of ``a`` and ``b`` to match or ``b`` to have batch 1 (broadcast)."""
    if b.shape[0] not in (1, a.shape[0]):
        raise ValueError(f"{name_b} has batch {b.shape[0]}; expected 1 or {a.shape[0]} to match {name_a}")


def check_index(index: torch.Tensor, name: str, upper: int, allow_negative: bool = False) -> None:
    """Require an int64 index tensor with values in [0, upper) (or -1 padding if allowed)."""
    if not isinstance(index, torch.Tensor) or index.dtype != torch.int64:
        got = index.dtype if isinstance(index, torch.Tensor) else type(index).__name__
        raise TypeError(f"{name} must be an int64 tensor, got {got}")
    if index.numel() == 0:
        return
    low = -1 if allow_negative else 0
    if int(index.min()) < low or int(index.max()) >= upper:
        raise ValueError(
            f"{name} has values in [{int(index.min())}, {int(index.max())}]; expected [{low}, {upper - 1}]"
        )
