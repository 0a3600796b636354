"""Built-in face-id rasteriser: pure torch, CPU and CUDA, no gradients.

Each triangle's screen bounding box is expanded into candidate pixels with
``repeat_interleave``; edge functions decide coverage at pixel centres and a
z-buffer keeps the nearest surface via ``scatter_reduce(amin)`` on a packed
int64 key (depth's float bits << 32 | face id): nearest wins, ties go to the
lower face id, so the result is deterministic on every device.
"""

from __future__ import annotations

import torch

from bridge.conventions import PIXEL_CENTER_OFFSET

MAX_CANDIDATES = 1 << 23
"""Candidate pixels processed at once; more are split into triangle chunks."""

MIN_SCREEN_AREA = 1e-8
"""Triangles with a smaller |2 x screen area| (pixels²) cover nothing."""

_EMPTY_KEY = torch.iinfo(torch.int64).max


@torch.no_grad()
def rasterize_face_ids(uvz: torch.Tensor, faces: torch.Tensor, height: int, width: int, near: float) -> torch.Tensor:
    """Nearest face per pixel.

    uvz: (B, V, 3) float, pixel coordinates u, v and camera depth z.
    faces: (F, 3) int64. Returns face_id (B, H, W) int64, -1 where empty.
    Triangles with a vertex closer than ``near`` are dropped (no clipping).
    """
    B = uvz.shape[0]
    F = faces.shape[0]
    device = uvz.device
    # Float32 suffices for coverage once coordinates are local to each bbox.
    tri = uvz.float()[:, faces].reshape(B * F, 3, 3)
    x, y, z = tri[..., 0], tri[..., 1], tri[..., 2]
    finite = torch.isfinite(tri).flatten(1).all(1)
    x = torch.nan_to_num(x).clamp(-1e7, 1e7)
    y = torch.nan_to_num(y).clamp(-1e7, 1e7)

    # Pixel i is covered when its centre i + 0.5 lies in the triangle.
    x0 = torch.ceil(x.amin(1) - PIXEL_CENTER_OFFSET).clamp(0, width)
    x1 = torch.floor(x.amax(1) - PIXEL_CENTER_OFFSET).clamp(-1, width - 1)
    y0 = torch.ceil(y.amin(1) - PIXEL_CENTER_OFFSET).clamp(0, height)
    y1 = torch.floor(y.amax(1) - PIXEL_CENTER_OFFSET).clamp(-1, height - 1)
    nx = (x1 - x0 + 1).clamp(min=0).long()
    ny = (y1 - y0 + 1).clamp(min=0).long()

    # Edge functions relative to the bbox's first pixel centre keep float32 exact enough.
    ox = x0 + PIXEL_CENTER_OFFSET
    oy = y0 + PIXEL_CENTER_OFFSET
    lx = x - ox[:, None]
    ly = y - oy[:, None]
    i1, i2 = [1, 2, 0], [2, 0, 1]
    a = ly[:, i1] - ly[:, i2]  # d(edge)/dx for the edge opposite each vertex
    b = lx[:, i2] - lx[:, i1]  # d(edge)/dy
    c = lx[:, i1] * ly[:, i2] - lx[:, i2] * ly[:, i1]  # edge value at the bbox origin
    area2 = c.sum(1)
    valid = finite & (z.amin(1) >= near) & (area2.abs() > MIN_SCREEN_AREA)
    inv_area = torch.where(valid, 1.0 / torch.where(valid, area2, torch.ones_like(area2)), torch.zeros_like(area2))
    # Barycentrics w = (a dx + b dy + c) / area2; 1/z is linear in screen space.
    inv_z = 1.0 / torch.where(valid[:, None], z, torch.ones_like(z))
    coef = torch.cat([a, b, c], 1) * inv_area[:, None]  # (T, 9)
    coef = torch.cat([coef, (coef.view(-1, 3, 3) * inv_z[:, None, :]).sum(2)], 1)  # (T, 12)

    counts = torch.where(valid, nx * ny, torch.zeros_like(nx))
    live = counts.nonzero().squeeze(1)
    zbuf = torch.full((B * height * width,), _EMPTY_KEY, dtype=torch.int64, device=device)
    if live.numel() == 0:
        return torch.full((B, height, width), -1, dtype=torch.int64, device=device)
    counts = counts[live]
    tri_batch = live // F
    base = tri_batch * (height * width) + y0[live].long() * width + x0[live].long()
    face = live % F
    coef = coef[live]
    nx = nx[live]

    ends = torch.cumsum(counts, 0)
    # Chunk boundaries so no chunk holds more than MAX_CANDIDATES pixels (a
    # single huge triangle is its own chunk).
    bounds = [0]
    while bounds[-1] < live.numel():
        start_count = int(ends[bounds[-1] - 1]) if bounds[-1] > 0 else 0
        nxt = int(torch.searchsorted(ends, start_count + MAX_CANDIDATES, right=True))
        bounds.append(max(nxt, bounds[-1] + 1))
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        _scatter_chunk(zbuf, counts[lo:hi], base[lo:hi], face[lo:hi], coef[lo:hi], nx[lo:hi], width)

    face_id = torch.where(zbuf == _EMPTY_KEY, torch.full_like(zbuf, -1), zbuf & 0xFFFFFFFF)
    return face_id.view(B, height, width)


def _scatter_chunk(zbuf, counts, base, face, coef, nx, width) -> None:
    """Expand one chunk of triangles into candidate pixels and z-buffer them."""
    n = int(counts.sum())
    owner = torch.repeat_interleave(torch.arange(counts.numel(), device=counts.device), counts, output_size=n)
    first = torch.cumsum(counts, 0) - counts
    local = torch.arange(n, device=counts.device) - first[owner]
    row_len = nx[owner]
    dy = torch.div(local, row_len, rounding_mode="floor")
    dx = local - dy * row_len
    k = coef[owner]
    fdx = dx.to(k.dtype)[:, None]
    fdy = dy.to(k.dtype)[:, None]
    w = k[:, 0:3] * fdx + k[:, 3:6] * fdy + k[:, 6:9]
    inv_z = k[:, 9:10] * fdx + k[:, 10:11] * fdy + k[:, 11:12]
    inside = (w >= 0).all(1) & (inv_z[:, 0] > 0)
    depth_bits = (1.0 / inv_z[:, 0].clamp(min=1e-30)).view(torch.int32).to(torch.int64)
    key = torch.where(inside, (depth_bits << 32) | face[owner], torch.full_like(depth_bits, _EMPTY_KEY))
    pixel = base[owner] + dy * width + dx
    zbuf.scatter_reduce_(0, pixel, key, reduce="amin")
