"""Our episode dataset → LeRobot's dataset layout: v3.0 (LeRobot 0.4 and later), or v2.1 for older readers.

v3.0 (the default) keeps all episodes in one file per stream, and says where each episode lies in it:

    <out>/meta/info.json                         codebase_version v3.0, fps, features, path templates
    <out>/meta/tasks.parquet                     index: the task text; column task_index
    <out>/meta/episodes/chunk-000/file-000.parquet
        episode_index, tasks, length, dataset_from_index, dataset_to_index, data/chunk_index, data/file_index,
        videos/<key>/{chunk_index, file_index, from_timestamp, to_timestamp}, meta/episodes/{chunk_index,
        file_index}, stats/<feature>/{min, max, mean, std, count}
    <out>/meta/stats.json                        statistics over all episodes
    <out>/data/chunk-000/file-000.parquet        every frame of every episode, in order
    <out>/videos/observation.images.<camera>/chunk-000/file-000.mp4   the episodes one after another

v2.1 (`version="v2.1"`): one parquet and one mp4 per episode, meta/episodes.jsonl, tasks.jsonl,
episodes_stats.jsonl and stats.json (what LeRobot 0.3 reads).

Frame columns in both: observation.state (P floats), action (D floats), timestamp, frame_index, episode_index,
index, task_index, next.reward, next.done, complementary_info.is_intervention. Vectors are Arrow fixed-size lists
(what `datasets.Sequence(length=n)` writes); videos are H.264 yuv420p. Image statistics are per channel in
[0, 1] with shape (3, 1, 1), as LeRobot computes them. `action` is our normalised action (per arm xyz,
rotation-vector deltas, gripper, in [-1, 1]); `observation.state` our proprio (per arm position, quaternion
xyzw, gripper width). The reverse direction (a LeRobot v3.0 folder as demonstrations) is
transport/lerobot_store.py.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from lastr1.errors import Lastr1Error, require
from lastr1.transport.demo_store import Episode, load_dataset

VERSIONS = ("v3.0", "v2.1")
CHUNKS_SIZE = 1000
DATA_PATH = {"v2.1": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
             "v3.0": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"}
VIDEO_PATH = {"v2.1": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
              "v3.0": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"}
EPISODES_PATH = "meta/episodes/chunk-000/file-000.parquet"


class ExportError(Lastr1Error):
    pass


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


def export_lerobot(src: str | Path, out: str | Path, *, version: str = "v3.0", robot_type: str = "franka",
                   only_success: bool = True, overwrite: bool = False,
                   progress: Callable[[Iterator], Iterator] | None = None) -> Path:
    """Write the episodes of our dataset at `src` as a LeRobotDataset (`version` v3.0 or v2.1) at `out`; returns
    `out`. `progress` wraps the loop over episodes (a tqdm bar in the CLI)."""
    if version not in VERSIONS:
        raise ExportError(f"LeRobot dataset version {version!r} is not one this export writes",
                          hint="use v3.0 (LeRobot ≥ 0.4) or v2.1 (LeRobot 0.3)")
    episodes = load_dataset(src, only_success=only_success)
    out = Path(out)
    if out.exists():
        if not overwrite and any(out.iterdir()):
            raise ExportError(f"{out} exists and is not empty", hint="pick a new folder, or pass --overwrite")
        shutil.rmtree(out)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "meta").mkdir(parents=True)
    first: Episode = episodes[0]
    cameras = list(first.meta["cameras"])
    for ep in episodes:
        if list(ep.meta["cameras"]) != cameras or ep.action.shape[1] != first.action.shape[1]:
            raise ExportError(f"{ep.path}: cameras/action size differ from {first.path}",
                              hint="export episodes of one task and robot setup together")
    fps = float(first.meta.get("fps", 10.0))
    write = _write_v30 if version == "v3.0" else _write_v21
    n_frames, tasks = write(tmp, episodes, cameras, fps, progress or (lambda it: it))
    n = len(episodes)
    info = {
        "codebase_version": version, "robot_type": robot_type, "total_episodes": n, "total_frames": n_frames,
        "total_tasks": len(tasks), "chunks_size": CHUNKS_SIZE, "fps": int(fps) if float(fps).is_integer() else fps,
        "splits": {"train": f"0:{n}"}, "data_path": DATA_PATH[version],
        "video_path": VIDEO_PATH[version] if cameras else None, "features": _features(first, cameras, fps),
    }
    if version == "v2.1":
        info.update(total_videos=n * len(cameras), total_chunks=(n - 1) // CHUNKS_SIZE + 1)
    else:
        info.update(data_files_size_in_mb=100, video_files_size_in_mb=500)
    (tmp / "meta/info.json").write_text(json.dumps(info, indent=4))
    tmp.rename(out)
    return out


def _columns(ep: Episode, i: int, start: int, task_index: int, fps: float) -> dict[str, np.ndarray]:
    """One episode's frame columns; `start`: the global index of its first frame."""
    T = len(ep)
    done = np.zeros(T, bool)
    done[-1] = True
    return {
        "observation.state": np.asarray(ep.proprio, np.float32),
        "action": np.asarray(ep.action, np.float32),
        "timestamp": (np.arange(T) / fps).astype(np.float32),
        "frame_index": np.arange(T, dtype=np.int64),
        "episode_index": np.full(T, i, np.int64),
        "index": np.arange(start, start + T, dtype=np.int64),
        "task_index": np.full(T, task_index, np.int64),
        "next.reward": np.asarray(ep.reward, np.float32),
        "next.done": done,
        "complementary_info.is_intervention": np.asarray(ep.intervention, bool),
    }


def _table(cols: dict[str, np.ndarray]):
    pa = require("pyarrow", "video", "the LeRobot export")
    arrays = [pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1)), v.shape[1]) if v.ndim == 2 else pa.array(v)
              for v in cols.values()]
    return pa.Table.from_arrays(arrays, names=list(cols))


def _episode_stats(ep: Episode, cols: dict[str, np.ndarray], cameras: list[str]) -> dict:
    stats = {k: _stats(v if v.ndim == 2 else v.reshape(-1, 1), axis=0) for k, v in cols.items()}
    for c in cameras:
        stats[f"observation.images.{c}"] = _image_stats(np.asarray(ep.images[c]))
    return stats


def _write_v30(tmp: Path, episodes: list[Episode], cameras: list[str], fps: float, progress) -> tuple[int, dict]:
    pa = require("pyarrow", "video", "the LeRobot export")
    pq = require("pyarrow.parquet", "video", "the LeRobot export")
    from lastr1.actor.video import write_mp4

    tasks: dict[str, int] = {}
    tables, rows, all_stats = [], [], []
    index = 0
    for i, ep in enumerate(progress(iter(episodes))):
        T = len(ep)
        cols = _columns(ep, i, index, tasks.setdefault(ep.instruction, len(tasks)), fps)
        tables.append(_table(cols))
        stats = _episode_stats(ep, cols, cameras)
        all_stats.append(stats)
        row: dict = {"episode_index": i, "tasks": [ep.instruction], "length": T, "data/chunk_index": 0,
                     "data/file_index": 0, "dataset_from_index": index, "dataset_to_index": index + T}
        for c in cameras:
            key = f"observation.images.{c}"
            # The episodes lie back to back in one video: each starts where the frames before it end.
            row.update({f"videos/{key}/chunk_index": 0, f"videos/{key}/file_index": 0,
                        f"videos/{key}/from_timestamp": index / fps, f"videos/{key}/to_timestamp": (index + T) / fps})
        row.update({"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0})
        row.update({f"stats/{k}/{s}": v for k, st in stats.items() for s, v in st.items()})
        rows.append(row)
        index += T
    data = tmp / DATA_PATH["v3.0"].format(chunk_index=0, file_index=0)
    data.parent.mkdir(parents=True)
    pq.write_table(pa.concat_tables(tables), data)
    for c in cameras:
        key = f"observation.images.{c}"
        frames = (f for ep in episodes for f in ep.images[c])
        write_mp4(tmp / VIDEO_PATH["v3.0"].format(video_key=key, chunk_index=0, file_index=0), frames, fps)
    meta = tmp / EPISODES_PATH
    meta.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), meta)
    # LeRobot reads the tasks as a DataFrame indexed by the task text: pandas keeps that index as a column
    # named in the file's pandas metadata.
    table = pa.table({"task_index": pa.array(list(tasks.values()), pa.int64()), "__index_level_0__": list(tasks)})
    pandas_meta = {"index_columns": ["__index_level_0__"], "column_indexes": [], "columns": [
        {"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64",
         "metadata": None},
        {"name": None, "field_name": "__index_level_0__", "pandas_type": "unicode", "numpy_type": "object",
         "metadata": None}], "creator": {"library": "lastr1"}, "pandas_version": "2.0.0"}
    pq.write_table(table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()}),
                   tmp / "meta/tasks.parquet")
    (tmp / "meta/stats.json").write_text(json.dumps(_merge(all_stats), indent=4))
    return index, tasks


def _write_v21(tmp: Path, episodes: list[Episode], cameras: list[str], fps: float, progress) -> tuple[int, dict]:
    pq = require("pyarrow.parquet", "video", "the LeRobot export")
    from lastr1.actor.video import write_mp4

    tasks: dict[str, int] = {}
    index = 0
    ep_lines, stat_lines, all_stats = [], [], []
    for i, ep in enumerate(progress(iter(episodes))):
        T = len(ep)
        chunk = i // CHUNKS_SIZE
        cols = _columns(ep, i, index, tasks.setdefault(ep.instruction, len(tasks)), fps)
        path = tmp / DATA_PATH["v2.1"].format(episode_chunk=chunk, episode_index=i)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(_table(cols), path)
        for c in cameras:
            key = f"observation.images.{c}"
            write_mp4(tmp / VIDEO_PATH["v2.1"].format(episode_chunk=chunk, video_key=key, episode_index=i),
                      ep.images[c], fps)
        stats = _episode_stats(ep, cols, cameras)
        ep_lines.append({"episode_index": i, "tasks": [ep.instruction], "length": T})
        stat_lines.append({"episode_index": i, "stats": stats})
        all_stats.append(stats)
        index += T
    _jsonl(tmp / "meta/episodes.jsonl", ep_lines)
    _jsonl(tmp / "meta/tasks.jsonl", [{"task_index": i, "task": t} for t, i in tasks.items()])
    _jsonl(tmp / "meta/episodes_stats.jsonl", stat_lines)
    (tmp / "meta/stats.json").write_text(json.dumps(_merge(all_stats), indent=4))
    return index, tasks


def _features(first: Episode, cameras: list[str], fps: float) -> dict:
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
            "dtype": "video", "shape": [h, w, 3], "names": ["height", "width", "channels"],
            "info": {"video.fps": fps, "video.height": h, "video.width": w, "video.channels": 3, "video.codec": "h264",
                     "video.pix_fmt": "yuv420p", "video.is_depth_map": False, "has_audio": False},
        }
    features.update({
        "timestamp": vec(1), "frame_index": vec(1, dtype="int64"), "episode_index": vec(1, dtype="int64"),
        "index": vec(1, dtype="int64"), "task_index": vec(1, dtype="int64"), "next.reward": vec(1),
        "next.done": vec(1, dtype="bool"), "complementary_info.is_intervention": vec(1, dtype="bool"),
    })
    return features


def _names(n: int, per_arm: tuple[str, ...]) -> list[str]:
    k = len(per_arm)
    if n % k:
        return [f"{i}" for i in range(n)]
    return [f"arm{a}.{name}" for a in range(n // k) for name in per_arm]


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
