"""Qwen2-VL/Qwen3-VL image pre-processing, our own (no torchvision on the robot PC).

Same semantics as `transformers`' Qwen2VLImageProcessor (tests compare with its PIL backend): resize to
sides that are multiples of patch·merge with the area clamped to [min_pixels, max_pixels] (bicubic, only when
the size changes), scale to [0, 1], normalise by mean/std, repeat the frame `temporal_patch_size` times, and
flatten patches in merge-block order (gh/m, gw/m, m, m | C, T, p, p), with `image_grid_thw` = (1, gh, gw).
Batches of same-size frames are patchified in one tensor op on the policy's device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from lastr1.policy.errors import PolicyError


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    if max(height, width) / min(height, width) > 200:
        raise PolicyError(f"image aspect ratio {height}x{width} is beyond 200:1")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


@dataclass
class ImageProcessor:
    patch_size: int = 16
    merge_size: int = 2
    temporal_patch_size: int = 2
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    min_pixels: int = 1024
    max_pixels: int = 16777216

    def target_size(self, height: int, width: int) -> tuple[int, int]:
        f = self.patch_size * self.merge_size
        return smart_resize(height, width, f, self.min_pixels, self.max_pixels)

    def grid(self, height: int, width: int) -> tuple[int, int, int]:
        """(t, gh, gw) patches of a frame of this size; the LLM sees gh·gw / merge² tokens."""
        h, w = self.target_size(height, width)
        return 1, h // self.patch_size, w // self.patch_size

    def tokens(self, height: int, width: int) -> int:
        _, gh, gw = self.grid(height, width)
        return gh * gw // self.merge_size**2

    def resize(self, frames: np.ndarray) -> np.ndarray:
        """(B, H, W, 3) uint8 → (B, H', W', 3) uint8 at the processor's size (PIL bicubic, as `transformers`)."""
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise PolicyError(f"expected uint8 frames (B, H, W, 3), got {frames.dtype} {frames.shape}")
        h, w = self.target_size(*frames.shape[1:3])
        if (h, w) == frames.shape[1:3]:
            return frames
        from PIL import Image

        return np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.Resampling.BICUBIC)) for f in frames])

    def __call__(self, frames, device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """(B, H, W, 3) uint8 frames (numpy or tensor) → pixel_values (B·gh·gw, 3·T·p·p) float32 and
        image_grid_thw (B, 3) int64, both on `device`."""
        if isinstance(frames, torch.Tensor):
            frames = frames.cpu().numpy()
        frames = self.resize(np.asarray(frames))
        b, height, width, c = frames.shape
        p, m, t = self.patch_size, self.merge_size, self.temporal_patch_size
        gh, gw = height // p, width // p
        x = torch.from_numpy(np.ascontiguousarray(frames)).to(device)
        x = x.permute(0, 3, 1, 2).float() / 255.0
        mean = torch.tensor(self.mean, device=device).view(1, c, 1, 1)
        std = torch.tensor(self.std, device=device).view(1, c, 1, 1)
        x = (x - mean) / std
        x = x.reshape(b, c, gh // m, m, p, gw // m, m, p)
        x = x.permute(0, 2, 5, 3, 6, 1, 4, 7)  # (B, gh/m, gw/m, m, m, C, p, p)
        x = x.unsqueeze(6).expand(*x.shape[:6], t, p, p)  # the still frame fills the temporal patch
        pixel_values = x.reshape(b * gh * gw, c * t * p * p)
        grid = torch.tensor([[1, gh, gw]] * b, dtype=torch.long, device=device)
        return pixel_values, grid
