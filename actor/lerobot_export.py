"""Our episode dataset → the LeRobotDataset v2.1 layout, so LeRobot, openpi and GR00T loaders can read it.

    <out>/meta/info.json                  codebase_version v2.1, fps, features, path templates
    <out>/meta/episodes.jsonl             {"episode_index", "tasks": [instruction], "length"}
    <out>/meta/tasks.jsonl                {"task_index", "task"}
    <out>/meta/episodes_stats.jsonl       {"episode_index", "stats": {feature: {min, max, mean, std, count}}}
    <out>/meta/stats.json                 the same over all episodes (what v2.0 readers look for)
    <out>/data/chunk-000/episode_000000.parquet
        observation.state (P floats), action (D floats), timestamp, frame_index, episode_index, index,
        task_index, next.reward, next.done, complementary_info.is_intervention
    <out>/videos/chunk-000/observation.images.<camera>/episode_000000.mp4   (H.264, yuv420p)

Vectors are Arrow fixed-size lists (what `datasets.Sequence(length=n)` writes). Image statistics are per
channel in [0, 1] with shape (3, 1, 1), as LeRobot computes them. `action` is our normalised action (per arm
xyz, rotation-vector deltas, gripper, in [-1, 1]); `observation.state` our proprio (per arm position,
quaternion xyzw, gripper width).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from lastr1.errors import require
from lastr1.transport.demo_store import Episode, load_dataset

CODEBASE_VERSION = "v2.1"
CHUNKS_SIZE = 1000
DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"


def _stats(x: np.ndarray, axis, keepdims: bool = False) -> dict:
    x = np.asarray(x, np.float64)
    out = {name: f(x, axis=axis, keepdims=keepdims).tolist()
           for name, f in (("min", np.min), ("max", np.max), ("mean", np.mean), ("std", np.std))}
    return {**out, "count": [int(x.shape[0])]}


def _image_stats(frames: np.ndarray) -> dict:
    # LeRobot samples frames; ours are short, so every 4th frame is plenty and exact enough.
    x = np.asarray(frames[::4], np.float64).transpose(0, 3, 1, 2) / 255.0
    s = _stats(x, axis=(0, 2, 3), keepdims=True)
    for k in ("min", "max", "mean", "std"):
        s[k] = s[k][0]  # (1, 3, 1, 1) → (3, 1, 1)
    s["count"] = [int(len(frames))]
    return s


def _merge(stats: list[dict]) -> dict:
    """Pooled statistics over episodes (weighted by count), as LeRobot's aggregate_stats does."""
    out = {}
    for key in stats[0]:
        n = np.array([s[key]["count"][0] for s in stats], np.float64)
        means = np.array([s[key]["mean"] for s in stats], np.float64)
        var = np.array([s[key]["std"] for s in stats], np.float64) ** 2
        w = (n / n.sum()).reshape(-1, *([1] * (means.ndim - 1)))
        mean = (w * means).sum(0)
        total_var = (w * (var + (means - mean) ** 2)).sum(0)
        out[key] = {"min": np.min([s[key]["min"] for s in stats], 0).tolist(),
                    "max": np.max([s[key]["max"] for s in stats], 0).tolist(),
                    "mean": mean.tolist(), "std": np.sqrt(total_var).tolist(), "count": [int(n.sum())]}
    return out


def export_lerobot(src: str | Path, out: str | Path, *, robot_type: str = "franka", only_success: bool = True,
                   overwrite: bool = False) -> Path:
    """Write the episodes of our dataset at `src` as a LeRobotDataset v2.1 at `out`; returns `out`."""
    pa = require("pyarrow", "video", "the LeRobot export")
    pq = require("pyarrow.parquet", "video", "the LeRobot export")
    from lastr1.actor.video import write_mp4

    episodes = load_dataset(src, only_success=only_success)
    out = Path(out)
    if out.exists():
        if not overwrite and any(out.iterdir()):
            from lastr1.actor.loop import ActorError

            raise ActorError(f"{out} exists and is not empty", hint="pick a new folder, or pass --overwrite")
        shutil.rmtree(out)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "meta").mkdir(parents=True)

    first: Episode = episodes[0]
    cameras = list(first.meta["cameras"])
    fps = float(first.meta.get("fps", 10.0))
    tasks: dict[str, int] = {}
    index = 0
    ep_lines, stat_lines, all_stats = [], [], []
    for i, ep in enumerate(episodes):
        if list(ep.meta["cameras"]) != cameras or ep.action.shape[1] != first.action.shape[1]:
            from lastr1.actor.loop import ActorError

            raise ActorError(f"{ep.path}: cameras/action size differ from {first.path}",
                             hint="export episodes of one task and robot setup together")
        T = len(ep)
        task_index = tasks.setdefault(ep.instruction, len(tasks))
        chunk = i // CHUNKS_SIZE
        reward = np.asarray(ep.reward, np.float32)
        done = np.zeros(T, bool)
        done[-1] = True
        cols: dict[str, np.ndarray] = {
            "observation.state": np.asarray(ep.proprio, np.float32),
            "action": np.asarray(ep.action, np.float32),
            "timestamp": (np.arange(T) / fps).astype(np.float32),
            "frame_index": np.arange(T, dtype=np.int64),
            "episode_index": np.full(T, i, np.int64),
            "index": np.arange(index, index + T, dtype=np.int64),
            "task_index": np.full(T, task_index, np.int64),
            "next.reward": reward,
            "next.done": done,
            "complementary_info.is_intervention": np.asarray(ep.intervention, bool),
        }
        arrays = []
        for v in cols.values():
            arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1)), v.shape[1]) if v.ndim == 2
                          else pa.array(v))
        path = tmp / DATA_PATH.format(episode_chunk=chunk, episode_index=i)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_arrays(arrays, names=list(cols)), path)
        stats = {k: _stats(v if v.ndim == 2 else v.reshape(-1, 1), axis=0) for k, v in cols.items()}
        for c in cameras:
            key = f"observation.images.{c}"
            write_mp4(tmp / VIDEO_PATH.format(episode_chunk=chunk, video_key=key, episode_index=i), ep.images[c], fps)
            stats[key] = _image_stats(np.asarray(ep.images[c]))
        ep_lines.append({"episode_index": i, "tasks": [ep.instruction], "length": T})
        stat_lines.append({"episode_index": i, "stats": stats})
        all_stats.append(stats)
        index += T

    def vec(n, names=None, dtype="float32"):
        return {"dtype": dtype, "shape": [n], "names": names}

    P, D = first.proprio.shape[1], first.action.shape[1]
    features = {
        "observation.state": vec(P, _names(P, ("x", "y", "z", "qx", "qy", "qz", "qw", "gripper_width"))),
        "action": vec(D, _names(D, ("x", "y", "z", "roll", "pitch", "yaw", "gripper"))),
    }
    for c in cameras:
        h, w = first.images[c].shape[1:3]
        features[f"observation.images.{c}"] = {
            "dtype": "video", "shape": [h, w, 3], "names": ["height", "width", "channel"],
            "info": {"video.fps": fps, "video.height": h, "video.width": w, "video.channels": 3, "video.codec": "h264",
                     "video.pix_fmt": "yuv420p", "video.is_depth_map": False, "has_audio": False},
        }
    features.update({
        "timestamp": vec(1), "frame_index": vec(1, dtype="int64"), "episode_index": vec(1, dtype="int64"),
        "index": vec(1, dtype="int64"), "task_index": vec(1, dtype="int64"), "next.reward": vec(1),
        "next.done": vec(1, dtype="bool"), "complementary_info.is_intervention": vec(1, dtype="bool"),
    })
    n = len(episodes)
    info = {
        "codebase_version": CODEBASE_VERSION, "robot_type": robot_type, "total_episodes": n, "total_frames": index,
        "total_tasks": len(tasks), "total_videos": n * len(cameras), "total_chunks": (n - 1) // CHUNKS_SIZE + 1,
        "chunks_size": CHUNKS_SIZE, "fps": int(fps) if float(fps).is_integer() else fps,
        "splits": {"train": f"0:{n}"}, "data_path": DATA_PATH,
        "video_path": VIDEO_PATH if cameras else None, "features": features,
    }
    (tmp / "meta/info.json").write_text(json.dumps(info, indent=4))
    _jsonl(tmp / "meta/episodes.jsonl", ep_lines)
    _jsonl(tmp / "meta/tasks.jsonl", [{"task_index": i, "task": t} for t, i in tasks.items()])
    _jsonl(tmp / "meta/episodes_stats.jsonl", stat_lines)
    (tmp / "meta/stats.json").write_text(json.dumps(_merge(all_stats), indent=4))
    tmp.rename(out)
    return out


def _names(n: int, per_arm: tuple[str, ...]) -> list[str]:
    k = len(per_arm)
    if n % k:
        return [f"{i}" for i in range(n)]
    return [f"arm{a}.{name}" for a in range(n // k) for name in per_arm]


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
