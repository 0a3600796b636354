"""Mesh topology built once from faces and cached as tensors on a device."""

from __future__ import annotations

import dataclasses

import torch

from .checks import check_index


@dataclasses.dataclass(frozen=True)
class MeshTopology:
    """Connectivity of a triangle mesh (optionally with its source polygons).

    Built once with :meth:`from_faces`; every losses/geometry op gathers and
    scatters with these tensors instead of looping. All index tensors are int64.

    Fields:
        num_verts: V.
        faces: (F, 3) triangle vertex ids, counter-clockwise seen from outside.
        edges: (E, 2) unique undirected edges, ``edges[:, 0] < edges[:, 1]``.
        edge_faces: (E, 2) the first two triangles using each edge, -1 where absent
            (boundary edges have one face; edges with more than two are non-manifold).
        edge_face_count: (E,) how many triangles use each edge.
        face_edges: (F, 3) edge id of triangle side (f0,f1), (f1,f2), (f2,f0).
        interior_edges: (Ei,) ids of the edges with exactly two triangles.
        hinge_verts: (Ei, 2) each interior edge directed as it runs in ``hinge_faces[:, 0]``.
        hinge_faces: (Ei, 2) the two triangles of each interior edge.
        face_corners: (3F, 3) (previous, vertex, next) for every triangle corner.
        polygon_corners: (C, 3) the same for the source polygons (quads kept) when
            given, else ``face_corners``.
        vertex_degree: (V,) number of edges at each vertex.
    """

    num_verts: int
    faces: torch.Tensor
    edges: torch.Tensor
    edge_faces: torch.Tensor
    edge_face_count: torch.Tensor
    face_edges: torch.Tensor
    interior_edges: torch.Tensor
    hinge_verts: torch.Tensor
    hinge_faces: torch.Tensor
    face_corners: torch.Tensor
    polygon_corners: torch.Tensor
    vertex_degree: torch.Tensor

    @classmethod
    def from_faces(
        cls, faces: torch.Tensor, num_verts: int, polygons: torch.Tensor | None = None
    ) -> "MeshTopology":
        """Build the topology.

        faces: (F, 3) int64 triangles. num_verts: V (may exceed the ids used).
        polygons: optional (P, K) int64 polygons (K >= 3, e.g. quads (Q, 4)) with
            -1 padding at the end of a row for polygons with fewer corners; their
            corner angles are what an artist's edge flow keeps.
        """
        if not isinstance(faces, torch.Tensor) or faces.dim() != 2 or faces.shape[1] != 3:
            shape = tuple(faces.shape) if isinstance(faces, torch.Tensor) else type(faces).__name__
            raise ValueError(f"faces must be an (F, 3) int64 tensor of triangles, got {shape}")
        check_index(faces, "faces", num_verts)
        device = faces.device
        num_faces = faces.shape[0]

        sides = torch.stack([faces, faces.roll(-1, dims=1)], dim=-1).reshape(-1, 2)  # (3F, 2) directed
        lo, hi = sides.min(dim=1).values, sides.max(dim=1).values
        keys, side_edge = torch.unique(lo * num_verts + hi, return_inverse=True)
        edges = torch.stack([keys // num_verts, keys % num_verts], dim=1)
        num_edges = edges.shape[0]

        # Rank each side among the sides of its edge: the first two become edge_faces.
        order = torch.argsort(side_edge, stable=True)
        count = torch.bincount(side_edge, minlength=num_edges)
        start = torch.cumsum(count, 0) - count
        rank = torch.empty_like(order)
        rank[order] = torch.arange(order.numel(), device=device) - start[side_edge[order]]
        side_face = torch.arange(num_faces, device=device).repeat_interleave(3)
        edge_faces = torch.full((num_edges, 2), -1, dtype=torch.int64, device=device)
        edge_side = torch.full((num_edges, 2), -1, dtype=torch.int64, device=device)
        first_two = rank < 2
        edge_faces[side_edge[first_two], rank[first_two]] = side_face[first_two]
        edge_side[side_edge[first_two], rank[first_two]] = torch.arange(sides.shape[0], device=device)[first_two]

        interior = torch.nonzero(count == 2).squeeze(1)
        hinge_verts = sides[edge_side[interior, 0]]
        hinge_faces = edge_faces[interior]

        face_corners = torch.stack([faces.roll(1, dims=1), faces, faces.roll(-1, dims=1)], dim=-1).reshape(-1, 3)
        polygon_corners = face_corners if polygons is None else _polygon_corners(polygons.to(device), num_verts)

        degree = torch.bincount(edges.reshape(-1), minlength=num_verts)
        return cls(
            num_verts=num_verts,
            faces=faces,
            edges=edges,
            edge_faces=edge_faces,
            edge_face_count=count,
            face_edges=side_edge.reshape(num_faces, 3),
            interior_edges=interior,
            hinge_verts=hinge_verts,
            hinge_faces=hinge_faces,
            face_corners=face_corners,
            polygon_corners=polygon_corners,
            vertex_degree=degree,
        )

    def to(self, device: torch.device | str) -> "MeshTopology":
        """A copy with every tensor on ``device``."""
        return dataclasses.replace(
            self,
            **{
                f.name: getattr(self, f.name).to(device)
                for f in dataclasses.fields(self)
                if isinstance(getattr(self, f.name), torch.Tensor)
            },
        )

    @property
    def device(self) -> torch.device:
        return self.faces.device


def _polygon_corners(polygons: torch.Tensor, num_verts: int) -> torch.Tensor:
    """(P, K) polygons with trailing -1 padding -> (C, 3) (previous, vertex, next) corners."""
    if polygons.dim() != 2 or polygons.shape[1] < 3:
        raise ValueError(f"polygons must have shape (P, K) with K >= 3, got {tuple(polygons.shape)}")
    check_index(polygons, "polygons", num_verts, allow_negative=True)
    valid = polygons >= 0
    sizes = valid.sum(dim=1)
    if bool((sizes < 3).any()):
        raise ValueError("every polygon needs at least 3 corners (rows are padded with -1 at the end only)")
    position = torch.arange(polygons.shape[1], device=polygons.device).expand_as(polygons)
    if bool((valid != (position < sizes[:, None])).any()):
        raise ValueError("polygons may be padded with -1 only at the end of a row")
    n = sizes[:, None]
    prev = torch.gather(polygons, 1, (position - 1) % n)
    nxt = torch.gather(polygons, 1, (position + 1) % n)
    return torch.stack([prev, polygons, nxt], dim=-1)[valid]
