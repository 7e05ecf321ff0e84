"""MP4 files from uint8 frames (H.264, yuv420p: what every player and LeRobot's decoders read)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lastr1.errors import require


def write_mp4(path: str | Path, frames, fps: float) -> Path:
    """`frames`: (T, H, W, 3) uint8 (an array or a list of arrays). Odd sides are padded by one pixel (yuv420p
    needs even sides) rather than resized, so pixels stay where they were."""
    imageio = require("imageio.v2", "video", "writing MP4 files")
    require("imageio_ffmpeg", "video", "writing MP4 files")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.mp4")
    writer = imageio.get_writer(tmp, fps=float(fps), codec="libx264", pixelformat="yuv420p", macro_block_size=1,
                                ffmpeg_log_level="error", output_params=["-crf", "18"])
    try:
        for f in frames:
            f = np.asarray(f, dtype=np.uint8)
            h, w = f.shape[:2]
            if h % 2 or w % 2:
                f = np.pad(f, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
            writer.append_data(f)
    finally:
        writer.close()
    tmp.replace(path)
    return path


def read_mp4(path: str | Path) -> np.ndarray:
    imageio = require("imageio.v2", "video", "reading MP4 files")
    with imageio.get_reader(path) as r:
        return np.stack([np.asarray(f) for f in r])
