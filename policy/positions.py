"""Qwen3-VL's 3-D rotary positions (M-RoPE), computed from a token layout.

Text tokens advance all three rows (t, h, w) together; an image of merged grid (gh', gw') placed at `start`
gets t = start, h = start + row, w = start + col, and the text after it resumes at start + max(gh', gw').
This is `Qwen3VLModel.get_rope_index` (tests compare the two), kept here so the latent slots and the acting
tower's tokens continue the same numbering without the model's hidden `rope_deltas` state.
"""

from __future__ import annotations

import numpy as np


def mrope_positions(segments, merge: int, start: int = 0) -> tuple[np.ndarray, int]:
    """Positions (3, L) for [("text", n) | ("image", (t, gh, gw))] segments, and the next free position."""
    parts = []
    pos = start
    for kind, val in segments:
        if kind == "text":
            parts.append(np.broadcast_to(np.arange(pos, pos + val), (3, val)))
            pos += val
        else:
            t, gh, gw = val
            gh, gw = gh // merge, gw // merge
            tt, hh, ww = np.meshgrid(np.arange(t), np.arange(gh), np.arange(gw), indexing="ij")
            parts.append(np.stack([tt.ravel() + pos, hh.ravel() + pos, ww.ravel() + pos]))
            pos += max(gh, gw)
    out = np.concatenate(parts, axis=1) if parts else np.zeros((3, 0), np.int64)
    return out.astype(np.int64), pos
