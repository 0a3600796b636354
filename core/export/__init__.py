"""Writers for fitted results: OBJ (quads + UVs) and binary glTF (mesh +
armature + skin weights + shape keys + material). numpy only."""

from .gltf import Armature, Material, MeshData, Skin, write_glb
from .obj import write_obj

__all__ = ["Armature", "Material", "MeshData", "Skin", "write_glb", "write_obj"]
