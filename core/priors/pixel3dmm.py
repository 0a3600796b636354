"""A Pixel3DMM-style network: DINOv2 ViT backbone + light prediction head (Pixel3DMM §3.1.1).

The head is four transformer blocks, three 2x up-convolutions and one linear
layer whose output is unpatchified 2x2 per position, so a 32x32 token grid
gives a 512x512 map of normals (3 channels, [-1, 1]) or UVs (2 channels, [0, 1]).

The ViT is written here in torch (timm cannot be imported next to the CPU
torch build without a matching torchvision); its parameter names follow the
official DINOv2 release, so its weights load under the ``backbone.`` prefix.
Weights come only from a local checkpoint file the user supplies:
- ``.pt``/``.pth``: ``{"config": {...}, "state_dict": {...}}`` (see ``save_checkpoint``),
- ``.safetensors``: tensors plus a ``config`` JSON string in the metadata.
The config names the task and the backbone size.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .crop import crop_square
from .dense import CueMap, CueProvider, DenseCues
from .errors import CheckpointError
from .image import Photo
from .landmarks import FaceLandmarks, detect_landmarks

# DINOv2 sizes: (embed_dim, depth, num_heads).
BACKBONES = {
    "vits14": (384, 12, 6),
    "vitb14": (768, 12, 12),
    "vitl14": (1024, 24, 16),
    "vitg14": (1536, 40, 24),
}
TASK_CHANNELS = {"normals": 3, "uv": 2}
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Pixel3DMMConfig:
    """task: "normals" or "uv". backbone: a BACKBONES name, or "custom" with the sizes given.
    img_size: network input side in pixels (a multiple of patch_size).
    face_scale: crop side as a multiple of the landmark box's larger side.
    """

    task: str = "normals"
    backbone: str = "vitb14"
    embed_dim: int | None = None
    depth: int | None = None
    num_heads: int | None = None
    patch_size: int = 14
    img_size: int = 448
    num_register_tokens: int = 0
    pos_grid: int = 37
    mlp_ratio: float = 4.0
    head_depth: int = 4
    head_channels: tuple[int, ...] = field(default=(256, 128, 64))
    face_scale: float = 1.6

    def sizes(self) -> tuple[int, int, int]:
        if self.backbone in BACKBONES:
            return BACKBONES[self.backbone]
        if self.backbone == "custom" and None not in (self.embed_dim, self.depth, self.num_heads):
            return int(self.embed_dim), int(self.depth), int(self.num_heads)
        raise CheckpointError(
            f"unknown backbone {self.backbone!r}; use one of {sorted(BACKBONES)} "
            "or 'custom' with embed_dim, depth and num_heads"
        )

    @classmethod
    def from_dict(cls, d: dict) -> "Pixel3DMMConfig":
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise CheckpointError(f"the checkpoint config has unknown keys {unknown}")
        d = dict(d)
        if "head_channels" in d:
            d["head_channels"] = tuple(int(c) for c in d["head_channels"])
        cfg = cls(**d)
        if cfg.task not in TASK_CHANNELS:
            raise CheckpointError(f"the checkpoint's task is {cfg.task!r}; expected 'normals' or 'uv'")
        if cfg.img_size % cfg.patch_size:
            raise CheckpointError(f"img_size {cfg.img_size} is not a multiple of patch_size {cfg.patch_size}")
        if len(cfg.head_channels) != 3:
            raise CheckpointError("head_channels must list the three up-convolution widths")
        cfg.sizes()
        return cfg


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, T, D) float32 -> (B, T, D)."""
        b, t, d = x.shape
        q, k, v = self.qkv(x).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, t, d))


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class _LayerScale(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), 1e-5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class _Block(nn.Module):
    """Pre-norm transformer block with DINOv2's layer scale."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = _Attention(dim, heads)
        self.ls1 = _LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = _Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = _LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class _PatchEmbed(nn.Module):
    def __init__(self, patch: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class DinoViT(nn.Module):
    """DINOv2 vision transformer returning patch tokens.

    forward: images (B, 3, S, S) float32, ImageNet-normalised -> tokens (B, S/p * S/p, D).
    """

    def __init__(self, cfg: Pixel3DMMConfig) -> None:
        super().__init__()
        dim, depth, heads = cfg.sizes()
        self.patch = cfg.patch_size
        self.num_reg = cfg.num_register_tokens
        self.patch_embed = _PatchEmbed(cfg.patch_size, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + cfg.pos_grid**2, dim))
        self.register_tokens = nn.Parameter(torch.zeros(1, self.num_reg, dim)) if self.num_reg else None
        self.blocks = nn.ModuleList(_Block(dim, heads, cfg.mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)

    def _pos(self, grid: int) -> torch.Tensor:
        """Position embeddings (1, 1 + grid², D), resampled from the stored grid."""
        cls_pos, patch_pos = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        n = int(math.isqrt(patch_pos.shape[1]))
        if n == grid:
            return self.pos_embed
        p = patch_pos.reshape(1, n, n, -1).permute(0, 3, 1, 2)
        p = F.interpolate(p, size=(grid, grid), mode="bicubic", align_corners=False)
        return torch.cat([cls_pos, p.permute(0, 2, 3, 1).reshape(1, grid * grid, -1)], dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(images)
        b, d, g, _ = x.shape
        x = torch.cat([self.cls_token.expand(b, -1, -1), x.flatten(2).transpose(1, 2)], dim=1)
        x = x + self._pos(g)
        if self.register_tokens is not None:
            x = torch.cat([x[:, :1], self.register_tokens.expand(b, -1, -1), x[:, 1:]], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)[:, 1 + self.num_reg :]


class Pixel3DMMNet(nn.Module):
    """Backbone + prediction head.

    forward: images (B, 3, S, S) float32 ImageNet-normalised ->
    maps (B, C, 16 S/p, 16 S/p) float32: unit normals (C=3) or UVs in [0, 1] (C=2).
    """

    def __init__(self, cfg: Pixel3DMMConfig) -> None:
        super().__init__()
        self.config = cfg
        dim, _, heads = cfg.sizes()
        self.backbone = DinoViT(cfg)
        self.head_blocks = nn.ModuleList(_Block(dim, heads, cfg.mlp_ratio) for _ in range(cfg.head_depth))
        self.head_norm = nn.LayerNorm(dim, eps=1e-6)
        chans = (dim, *cfg.head_channels)
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(chans[i], chans[i + 1], kernel_size=2, stride=2) for i in range(3)
        )
        self.out_channels = TASK_CHANNELS[cfg.task]
        self.linear = nn.Linear(chans[-1], self.out_channels * 4)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        tokens = self.backbone(images)
        for block in self.head_blocks:
            tokens = block(tokens)
        tokens = self.head_norm(tokens)
        b, t, d = tokens.shape
        g = int(math.isqrt(t))
        x = tokens.transpose(1, 2).reshape(b, d, g, g)
        for i, up in enumerate(self.up):
            x = up(x)
            if i < len(self.up) - 1:
                x = F.gelu(x)
        x = self.linear(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        x = F.pixel_shuffle(x, 2)
        if self.config.task == "normals":
            return F.normalize(torch.tanh(x), dim=1, eps=1e-6)
        return torch.sigmoid(x)


def save_checkpoint(net: Pixel3DMMNet, path: str | os.PathLike) -> None:
    """Write ``net`` as .pt/.pth (torch) or .safetensors, with its config."""
    path = os.fspath(path)
    cfg = asdict(net.config)
    cfg["head_channels"] = list(cfg["head_channels"])
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    if path.endswith(".safetensors"):
        from safetensors.torch import save_file

        save_file(state, path, metadata={"config": json.dumps(cfg)})
    else:
        torch.save({"config": cfg, "state_dict": state}, path)


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> Pixel3DMMNet:
    """Build the network a local checkpoint describes and load its weights (eval mode)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(
            f"network checkpoint not found: {path!r}. Likeness never downloads weights; "
            "pass the path of a Pixel3DMM-style checkpoint on this machine"
        )
    try:
        if path.endswith(".safetensors"):
            from safetensors import safe_open
            from safetensors.torch import load_file

            with safe_open(path, framework="pt") as f:
                meta = f.metadata() or {}
            if "config" not in meta:
                raise CheckpointError(f"{path!r} has no 'config' entry in its safetensors metadata")
            config, state = json.loads(meta["config"]), load_file(path)
        else:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(blob, dict) or "config" not in blob or "state_dict" not in blob:
                raise CheckpointError(f"{path!r} must hold a dict with 'config' and 'state_dict'")
            config, state = blob["config"], blob["state_dict"]
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(f"cannot read checkpoint {path!r}: {exc}") from exc
    if not isinstance(config, dict):
        raise CheckpointError(f"{path!r}: the config must be a dict, got {type(config).__name__}")
    net = Pixel3DMMNet(Pixel3DMMConfig.from_dict(config))
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:400]
        raise CheckpointError(
            f"{path!r} does not match its config (missing, unexpected or wrong-shape tensors): {detail}"
        ) from exc
    return net.to(device).eval()


class NetworkCues(CueProvider):
    """Normals and/or UVs from Pixel3DMM-style networks, in the photo's pixel frame.

    The face is cropped square around its landmarks (``face_scale`` x the box),
    resized to the network's input, predicted, and warped back; confidence is 1
    where the crop covered the photo and 0 elsewhere.
    """

    name = "pixel3dmm"
    predicted = True

    def __init__(
        self,
        *,
        normals: str | os.PathLike | Pixel3DMMNet | None = None,
        uv: str | os.PathLike | Pixel3DMMNet | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        self.device = torch.device(device)
        self.nets: dict[str, Pixel3DMMNet] = {}
        for task, src in (("normals", normals), ("uv", uv)):
            if src is None:
                continue
            net = src if isinstance(src, Pixel3DMMNet) else load_checkpoint(src, self.device)
            if net.config.task != task:
                raise CheckpointError(f"the {task} network's checkpoint is for {net.config.task!r}")
            self.nets[task] = net.to(self.device).eval()
        if not self.nets:
            raise ValueError("NetworkCues needs a normals and/or a uv checkpoint")

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(self.nets)

    @torch.no_grad()
    def predict(self, photo: Photo, face: FaceLandmarks | None = None) -> DenseCues:
        face = face if face is not None else detect_landmarks(photo)
        w, h = photo.size
        maps = {}
        for task, net in self.nets.items():
            cfg = net.config
            x0, y0, x1, y1 = (float(v) for v in face.bbox)
            side = cfg.face_scale * max(x1 - x0, y1 - y0)
            crop = crop_square(photo.rgb, ((x0 + x1) / 2, (y0 + y1) / 2), side, cfg.img_size)
            img = torch.from_numpy(crop.rgb).to(self.device, torch.float32).permute(2, 0, 1)[None] / 255.0
            mean = torch.tensor(_IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
            std = torch.tensor(_IMAGENET_STD, device=self.device).view(1, 3, 1, 1)
            out = net((img - mean) / std)[0].permute(1, 2, 0).cpu().numpy()
            maps[task] = _uncrop(out, crop, (w, h), normals=task == "normals")
        return DenseCues(image_size=(w, h), maps=maps, source=self.name)


def _uncrop(values: np.ndarray, crop, size: tuple[int, int], normals: bool) -> CueMap:
    """Crop-frame map (R, R, C) -> photo-frame CueMap (H, W, C) via the crop's affine map."""
    import cv2

    w, h = size
    r = values.shape[0]
    s = crop.scale * r / crop.rgb.shape[0]
    # Photo continuous coords -> map continuous coords: u = s (x - origin); OpenCV's are -0.5.
    m = np.array(
        [[s, 0.0, s * (0.5 - crop.origin[0]) - 0.5], [0.0, s, s * (0.5 - crop.origin[1]) - 0.5]]
    )
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    warped = cv2.warpAffine(values.astype(np.float32), m, (w, h), flags=flags, borderMode=cv2.BORDER_CONSTANT)
    if warped.ndim == 2:
        warped = warped[..., None]
    conf = cv2.warpAffine(
        np.ones((r, r), np.float32), m, (w, h), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP
    )
    warped = np.where(conf[..., None] > 0, warped, 0.0)
    if normals:
        norm = np.linalg.norm(warped, axis=2, keepdims=True)
        warped = np.where(norm > 1e-6, warped / np.maximum(norm, 1e-6), 0.0)
    return CueMap(warped.astype(np.float32), conf.astype(np.float32))
