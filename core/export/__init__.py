"""Writers for fitted results: OBJ (quads + UVs) and binary glTF (mesh +
armature + skin weights + shape keys + material), and their readers. numpy only."""

from .gltf import Armature, GltfMesh, Material, MeshData, Skin, read_gltf, write_glb
from .obj import ObjMesh, read_obj, write_obj

__all__ = ["Armature", "GltfMesh", "Material", "MeshData", "ObjMesh", "Skin", "read_gltf", "read_obj", "write_glb",
           "write_obj"]
