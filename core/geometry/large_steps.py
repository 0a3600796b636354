"""The "large steps" parameterisation of vertex offsets (Nicolet et al. 2021).

Offsets d are optimised through u = (I + lambda L) d with the combinatorial
Laplacian L = D - W (symmetric, so one Cholesky factor serves both the
solve and its gradient). A gradient step on u moves d smoothly, like a
Sobolev preconditioner, so normal-map fitting does not roughen the mesh.
The factor comes from ``cholespy`` and lives on the offsets' device (CPU or
CUDA). (The ``largesteps`` package's own Laplacian builder assumes CUDA, so
the matrix is assembled here.)
"""

from __future__ import annotations

import torch

from .laplacian import Laplacian
from .topology import MeshTopology


# cholespy's CUDA solve takes at most this many right-hand sides at once.
MAX_RHS = 128


class LargeSteps:
    """d = (I + lam L)^-1 u, differentiable in u. u, d: (N, 3) float tensors, or (B, N, 3) for
    B meshes of the one topology (one solve, their columns side by side)."""

    def __init__(self, topology: MeshTopology, lam: float, device: torch.device | str):
        from cholespy import CholeskySolverF, MatrixType

        if lam <= 0:
            raise ValueError(f"large-steps lambda must be positive, got {lam}")
        n = topology.num_verts
        laplacian = Laplacian.combinatorial(topology.to("cpu"), torch.float64).matrix()
        rows, cols = laplacian.indices()
        vals = lam * laplacian.values() + (rows == cols).to(torch.float64)
        dev = torch.device(device)
        self.matrix = torch.sparse_coo_tensor(laplacian.indices(), vals, (n, n), check_invariants=False).coalesce().to(dev)
        self.solver = CholeskySolverF(n, rows.to(torch.int32).to(dev).contiguous(),
                                      cols.to(torch.int32).to(dev).contiguous(), vals.to(dev).contiguous(),
                                      MatrixType.COO)

    def __call__(self, u: torch.Tensor) -> torch.Tensor:
        return _Solve.apply(u, self.solver)

    def to_differential(self, d: torch.Tensor) -> torch.Tensor:
        """u = (I + lam L) d for offsets d: (N, 3) or (B, N, 3)."""
        cols = _columns(d.detach().to(torch.float64))
        return _uncolumns(self.matrix @ cols, d.shape).to(d.dtype)


def _columns(b: torch.Tensor) -> torch.Tensor:
    """(N, 3) as it is; (B, N, 3) as (N, 3B), each mesh's three columns side by side."""
    return b if b.dim() == 2 else b.permute(1, 0, 2).reshape(b.shape[1], -1)


def _uncolumns(x: torch.Tensor, shape) -> torch.Tensor:
    return x if len(shape) == 2 else x.reshape(shape[1], shape[0], shape[2]).permute(1, 0, 2)


def _solve(solver, b: torch.Tensor) -> torch.Tensor:
    b32 = _columns(b.detach().to(torch.float32))
    step = MAX_RHS - MAX_RHS % 3  # whole meshes a call
    parts = []
    for lo in range(0, b32.shape[1], step):
        rhs = b32[:, lo:lo + step].contiguous()
        parts.append(torch.empty_like(rhs))
        solver.solve(rhs, parts[-1])
    return _uncolumns(parts[0] if len(parts) == 1 else torch.cat(parts, 1), b.shape).to(b.dtype)


class _Solve(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, solver):
        ctx.solver = solver
        return _solve(solver, u)

    @staticmethod
    def backward(ctx, grad):
        return _solve(ctx.solver, grad), None
