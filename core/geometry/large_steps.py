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


class LargeSteps:
    """d = (I + lam L)^-1 u, differentiable in u. u, d: (N, 3) float tensors."""

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
        """u = (I + lam L) d for offsets d: (N, 3)."""
        return (self.matrix @ d.detach().to(torch.float64)).to(d.dtype)


def _solve(solver, b: torch.Tensor) -> torch.Tensor:
    b32 = b.detach().to(torch.float32).contiguous()
    x = torch.empty_like(b32)
    solver.solve(b32, x)
    return x.to(b.dtype)


class _Solve(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, solver):
        ctx.solver = solver
        return _solve(solver, u)

    @staticmethod
    def backward(ctx, grad):
        return _solve(ctx.solver, grad), None
