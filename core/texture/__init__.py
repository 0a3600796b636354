"""UV texture and detail-normal-map extraction from photos, and previews.

Public API
----------
``extract_textures(template, verts, cameras, images, size=1024, *, remove_shading=True, guide=None,
upscale=1.0, device=None) -> TextureMaps``
    Albedo (S, S, 3) uint8 and tangent-space detail normals (S, S, 3) uint8
    of the fitted mesh ``verts (N, 3)`` from photos seen by ``cameras``.
``TextureMaps``: ``albedo``, ``normal``, ``coverage``, ``observed``, ``island``,
    ``lighting (V, 9, 3)``, ``seconds``; ``to_material()`` (glTF), ``save(dir)``.
``preview_image(mesh, verts, camera, photo, maps, view=0) -> (h, 2w, 3) uint8``
    The photo next to a software render of the textured head.
``render_textured(mesh, verts, camera, albedo, normal=None, light=None) -> (image, mask)``
``fit_texture_maps(template, arrays, images, size=1024, device="cpu") -> TextureMaps``
    The maps of a fit result (``FitResult.arrays``) from its photos.
``write_texture_files(out_dir, template, arrays, images, maps) -> {name: path}``
    ``albedo.png``, ``normal.png``, ``preview.png`` of those maps.
``UVMesh.from_template(template)``, ``rasterize_uv(tri_uvs, size) -> UVTexels``.
"""

from .extract import TextureMaps, as_uv_mesh, extract_textures
from .preview import preview_image, render_textured, studio_light
from .result import fit_texture_maps, result_cameras, write_texture_files
from .uv_layout import UVMesh, UVTexels, rasterize_uv, texel_surface

__all__ = [
    "TextureMaps", "UVMesh", "UVTexels", "as_uv_mesh", "extract_textures", "fit_texture_maps", "preview_image",
    "rasterize_uv", "render_textured", "result_cameras", "studio_light", "texel_surface", "write_texture_files",
]
