"""MeshTopology against loop references on closed, open and polygon meshes."""

from __future__ import annotations

import pytest
import torch

from core.geometry import MeshTopology
from core.geometry.primitives import grid, torus, triangulate


def edge_faces_naive(faces: list[list[int]]) -> dict[tuple[int, int], list[int]]:
    out: dict[tuple[int, int], list[int]] = {}
    for fi, face in enumerate(faces):
        for s in range(3):
            a, b = face[s], face[(s + 1) % 3]
            out.setdefault((min(a, b), max(a, b)), []).append(fi)
    return out


@pytest.mark.parametrize("mesh", ["torus", "grid"])
def test_edges_and_adjacency_match_naive(mesh):
    verts, quads = torus(7, 5) if mesh == "torus" else grid(5, 4)
    faces = triangulate(quads)
    topo = MeshTopology.from_faces(faces, verts.shape[0], quads)
    ref = edge_faces_naive(faces.tolist())

    assert sorted(ref) == [tuple(e) for e in topo.edges.tolist()]
    for e, (a, b) in enumerate(topo.edges.tolist()):
        expected = ref[(a, b)]
        assert int(topo.edge_face_count[e]) == len(expected)
        got = [f for f in topo.edge_faces[e].tolist() if f >= 0]
        assert sorted(got) == sorted(expected[:2])
    interior = sorted(i for i, (k, fs) in enumerate(sorted(ref.items())) if len(fs) == 2)
    assert topo.interior_edges.tolist() == interior
    for f in range(faces.shape[0]):
        for s in range(3):
            a, b = faces[f, s].item(), faces[f, (s + 1) % 3].item()
            assert tuple(topo.edges[topo.face_edges[f, s]].tolist()) == (min(a, b), max(a, b))
    degree = [0] * verts.shape[0]
    for a, b in ref:
        degree[a] += 1
        degree[b] += 1
    assert topo.vertex_degree.tolist() == degree


def test_hinges_run_along_their_first_face():
    verts, quads = torus(6, 4)
    faces = triangulate(quads)
    topo = MeshTopology.from_faces(faces, verts.shape[0])
    for (a, b), (f1, f2) in zip(topo.hinge_verts.tolist(), topo.hinge_faces.tolist()):
        first, second = faces[f1].tolist(), faces[f2].tolist()
        assert any((first[s], first[(s + 1) % 3]) == (a, b) for s in range(3))
        # Consistent winding: the second face runs the edge the other way.
        assert any((second[s], second[(s + 1) % 3]) == (b, a) for s in range(3))


def test_polygon_corners_keep_quads_and_padded_triangles():
    faces = torch.tensor([[0, 1, 2], [0, 2, 3], [2, 1, 4]])
    polygons = torch.tensor([[0, 1, 2, 3], [2, 1, 4, -1]])
    topo = MeshTopology.from_faces(faces, 5, polygons)
    expected = [[3, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 0], [4, 2, 1], [2, 1, 4], [1, 4, 2]]
    assert topo.polygon_corners.tolist() == expected
    assert topo.face_corners.tolist()[:3] == [[2, 0, 1], [0, 1, 2], [1, 2, 0]]


def test_non_manifold_edge_is_not_a_hinge():
    faces = torch.tensor([[0, 1, 2], [1, 0, 3], [0, 1, 4]])
    topo = MeshTopology.from_faces(faces, 5)
    e = topo.edges.tolist().index([0, 1])
    assert int(topo.edge_face_count[e]) == 3
    assert topo.interior_edges.numel() == 0


@pytest.mark.parametrize(
    "faces, polygons, match",
    [
        (torch.tensor([[0, 1]]), None, r"\(F, 3\)"),
        (torch.tensor([[0, 1, 9]]), None, r"faces has values"),
        (torch.tensor([[0.0, 1.0, 2.0]]), None, "int64"),
        (torch.tensor([[0, 1, 2]]), torch.tensor([[0, -1, 1, 2]]), "only at the end"),
        (torch.tensor([[0, 1, 2]]), torch.tensor([[0, 1, -1, -1]]), "at least 3"),
    ],
)
def test_bad_input_is_reported(faces, polygons, match):
    with pytest.raises((ValueError, TypeError), match=match):
        MeshTopology.from_faces(faces, 4, polygons)


def test_to_device_moves_every_tensor():
    verts, quads = grid(3, 3)
    topo = MeshTopology.from_faces(triangulate(quads), verts.shape[0], quads).to("cpu")
    assert topo.device.type == "cpu" and topo.num_verts == 9
