"""Camera image → policy image: centre crop to a square, then resize (Pillow, as openpi does; no torchvision)."""

from __future__ import annotations

import numpy as np
from PIL import Image


def center_square(h: int, w: int) -> tuple[int, int, int]:
    """(top, left, side) of the largest centred square in an h × w image."""
    side = min(h, w)
    return (h - side) // 2, (w - side) // 2, side


def center_crop_resize(img: np.ndarray, size: int | None, nearest: bool = False) -> np.ndarray:
    """Centre-crop (H, W[, C]) to a square and resize it to size × size; always returns a new contiguous array,
    so the caller may release the buffer it came from. `nearest` for depth (never blend depths across an edge);
    otherwise Pillow's bilinear, which low-passes when shrinking so fine texture does not alias."""
    top, left, side = center_square(img.shape[0], img.shape[1])
    crop = img[top : top + side, left : left + side]
    if size is None or size == side:
        return np.array(crop, copy=True, order="C")
    resample = Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(np.ascontiguousarray(crop)).resize((size, size), resample)).copy()


def crop_resize_intrinsics(fx: float, fy: float, ppx: float, ppy: float, h: int, w: int, size: int | None):
    """Pinhole intrinsics of the image `center_crop_resize` makes from an h × w image."""
    top, left, side = center_square(h, w)
    s = 1.0 if size is None else size / side
    # Pixel centres: a pixel u of the crop covers [u, u+1); scaling maps its centre u+0.5 to s(u+0.5).
    return fx * s, fy * s, (ppx - left + 0.5) * s - 0.5, (ppy - top + 0.5) * s - 0.5
