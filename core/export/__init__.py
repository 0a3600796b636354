"""Writers for fitted results: OBJ (quads + UVs) and binary glTF (mesh +
armature + skin weights + shape keys + material), and the OBJ reader. numpy only."""

from .gltf import Armature, Material, MeshData, Skin, write_glb
from .obj import ObjMesh, read_obj, write_obj

__all__ = ["Armature", "Material", "MeshData", "ObjMesh", "Skin", "read_obj", "write_glb", "write_obj"]
