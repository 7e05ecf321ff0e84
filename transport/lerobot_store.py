"""A LeRobot v3.0 dataset folder read as our demonstrations, so a lab that recorded with LeRobot warms up on it.

    episodes = load_lerobot(root, fields)       # fields: configs.learner.LeRobotFields
    episodes = load_demos(root, fields)         # ours (transport/demo_store.py) or LeRobot's, by what is there

Frames come from data/*/*.parquet, episode bounds from meta/episodes/*/*.parquet (dataset_from_index,
dataset_to_index, and for videos from_timestamp within the shared mp4), the instruction from meta/tasks.parquet.
Image features (PNG in the parquet) and video features (decoded once per file) both work. Every episode counts
as a successful demonstration. `lastr1 latents` writes its targets beside the dataset, in
<root>/lastr1/episode_<n>/ (the dataset itself is left as LeRobot wrote it).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lastr1.errors import require
from lastr1.transport.demo_store import FORMAT_VERSION, DatasetError, Episode, load_dataset

if TYPE_CHECKING:
    from lastr1.configs.learner import LeRobotFields

CAMERA_PREFIX = "observation.images."


def is_lerobot(root: str | Path) -> bool:
    return (Path(root) / "meta" / "info.json").is_file()


def load_demos(root: str | Path, fields: LeRobotFields | None = None) -> list[Episode]:
    """The successful demonstrations under `root`: our own episodes, or a LeRobot v3.0 dataset's."""
    return load_lerobot(root, fields) if is_lerobot(root) else load_dataset(root)


def load_lerobot(root: str | Path, fields: LeRobotFields | None = None) -> list[Episode]:
    from lastr1.configs.learner import LeRobotFields

    pq = require("pyarrow.parquet", "video", "reading a LeRobot dataset")
    f = fields or LeRobotFields()
    root = Path(root)
    info = json.loads((root / "meta/info.json").read_text())
    version = str(info.get("codebase_version", ""))
    if not version.startswith("v3"):
        raise DatasetError(f"{root} is a LeRobot {version or 'unknown-version'} dataset; lastr1 reads v3.0",
                           hint="convert it with LeRobot's own converter (lerobot.datasets.v30."
                                "convert_dataset_v21_to_v30)")
    features: dict = info["features"]
    cameras = dict(f.cameras) or {k[len(CAMERA_PREFIX):]: k for k, v in features.items()
                                  if k.startswith(CAMERA_PREFIX) and v.get("dtype") in ("image", "video")}
    for name, key in {"state": f.state, "action": f.action, **{f"camera {c}": k for c, k in cameras.items()}}.items():
        if key not in features:
            raise DatasetError(f"{root}: no feature {key!r} for our {name}; it has {sorted(features)}",
                               hint="map it in learner.lerobot (state, action, cameras) in the config")
    data = pq.read_table(sorted((root / "data").glob("*/*.parquet"))).to_pydict()
    order = np.argsort(np.asarray(data["index"]))
    eps = pq.read_table(sorted((root / "meta/episodes").glob("*/*.parquet"))).to_pylist()
    tasks = _tasks(root)
    fps = float(info["fps"])
    videos: dict[str, np.ndarray] = {}
    out = []
    for e in sorted(eps, key=lambda r: r["episode_index"]):
        rows = order[e["dataset_from_index"]:e["dataset_to_index"]]
        col = {k: [data[k][i] for i in rows] for k in data}
        images = {}
        for cam, key in cameras.items():
            if features[key]["dtype"] == "video":
                path = root / info["video_path"].format(video_key=key, chunk_index=e[f"videos/{key}/chunk_index"],
                                                        file_index=e[f"videos/{key}/file_index"])
                if str(path) not in videos:
                    videos[str(path)] = _frames(path)
                first = int(round(e[f"videos/{key}/from_timestamp"] * fps))
                images[cam] = videos[str(path)][first:first + len(rows)]
            else:
                images[cam] = np.stack([_png(x) for x in col[key]])
            if len(images[cam]) != len(rows):
                raise DatasetError(f"{root}: episode {e['episode_index']} has {len(rows)} frames but "
                                   f"{len(images[cam])} images of {key}", hint="the dataset is incomplete")
        T = len(rows)
        task = tasks.get(int(col["task_index"][0]), "") if "task_index" in col else (e.get("tasks") or [""])[0]
        lt_dir = root / "lastr1" / f"episode_{e['episode_index']:06d}"
        lt = lt_dir / "latent_targets.npy"
        out.append(Episode(
            path=lt_dir,
            meta=dict(format=FORMAT_VERSION, task=task, instruction=task, n_steps=T, fps=fps, cameras=sorted(images),
                      action_dim=len(col[f.action][0]), success=True, extra={"source": f"lerobot {version}"}),
            images=images, proprio=_vec(col[f.state]), action=_vec(col[f.action]),
            reward=np.asarray(col[f.reward], np.float32).reshape(T) if f.reward in col else np.zeros(T, np.float32),
            intervention=np.asarray(col[f.intervention], bool).reshape(T) if f.intervention in col
            else np.ones(T, bool),
            latent_targets=np.load(lt, mmap_mode="r") if lt.is_file() else None,
        ))
    if not out:
        raise DatasetError(f"{root} holds no episodes", hint="record some with LeRobot first")
    return out


def _vec(values) -> np.ndarray:
    return np.asarray(values, np.float32).reshape(len(values), -1)


def _tasks(root: Path) -> dict[int, str]:
    pq = require("pyarrow.parquet", "video", "reading a LeRobot dataset")
    p = root / "meta/tasks.parquet"
    if not p.is_file():
        return {}
    t = pq.read_table(p).to_pydict()
    # pandas wrote the task text as the index ("__index_level_0__", or "task" when the index was named).
    text = t.get("task") or t.get("__index_level_0__") or []
    return dict(zip((int(i) for i in t["task_index"]), text))


def _frames(path: Path) -> np.ndarray:
    imageio = require("imageio.v2", "video", "reading a LeRobot dataset's videos")
    with imageio.get_reader(path) as r:
        return np.stack([np.asarray(f)[..., :3] for f in r])


def _png(x) -> np.ndarray:
    from PIL import Image

    raw = x["bytes"] if isinstance(x, dict) else x
    return np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"), np.uint8)
