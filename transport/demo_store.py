"""Recorded episodes on disk: what `lastr1 record` writes and warm-up, `lastr1 latents` and the learner read.

One folder per episode, one `.npy` per stream so readers memory-map only what they use:

    <root>/episode_000042/
        meta.json            task, instruction, n_steps, fps, cameras, action_dim, success, created, extra
        <camera>.npy         (T, H, W, 3) uint8, one file per camera ("front", "wrist", ...)
        proprio.npy          (T, P) float32
        action.npy           (T, D) float32: the normalised action executed at each step, in [-1, 1]
        reward.npy           (T,) float32
        intervention.npy     (T,) bool: a human (or the scripted operator) produced this step's action
        latent_targets.npy   (T, L, k) float16, optional: written later by `lastr1 latents`

An episode is written to `.episode_000042.tmp/` and renamed only on `finish()`, so a crash or a discarded
(failed) demonstration never leaves a half episode that a reader would trust.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from lastr1.errors import Lastr1Error

FORMAT_VERSION = 1
REQUIRED = ("proprio", "action", "reward", "intervention")


class DatasetError(Lastr1Error):
    pass


@dataclass
class Episode:
    path: Path
    meta: dict
    images: dict[str, np.ndarray]
    proprio: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    intervention: np.ndarray
    latent_targets: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.meta["n_steps"])

    @property
    def instruction(self) -> str:
        return self.meta.get("instruction", "")

    def action_chunk(self, t: int, horizon: int) -> np.ndarray:
        """Actions t … t+H−1; past the end the last action repeats (the arm holds)."""
        idx = np.minimum(np.arange(t, t + horizon), len(self) - 1)
        return np.asarray(self.action[idx], dtype=np.float32)


@dataclass
class EpisodeWriter:
    root: Path
    task: str
    instruction: str
    fps: float
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        self.root = Path(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.index = next_index(self.root)
        self._tmp = self.root / f".episode_{self.index:06d}.tmp"
        if self._tmp.exists():
            shutil.rmtree(self._tmp)
        self._steps: dict[str, list] = {}

    def add(self, images: dict[str, np.ndarray], proprio, action, reward: float = 0.0, intervention=False):
        """Append one control step (kept in memory until `finish`: demonstrations are short)."""
        row: dict[str, object] = {f"img/{k}": np.asarray(v, dtype=np.uint8) for k, v in images.items()}
        row.update(
            proprio=np.asarray(proprio, np.float32),
            action=np.asarray(action, np.float32),
            reward=np.float32(reward),
            intervention=bool(intervention),
        )
        if self._steps and set(row) != set(self._steps):
            raise DatasetError(f"step {len(self)} has streams {sorted(row)}, earlier steps {sorted(self._steps)}")
        for k, v in row.items():
            self._steps.setdefault(k, []).append(v)

    def __len__(self) -> int:
        return len(self._steps.get("action", []))

    def finish(self, success: bool) -> Path:
        if not len(self):
            raise DatasetError("cannot save an episode with no steps")
        self._tmp.mkdir(parents=True)
        cameras = []
        for k, v in self._steps.items():
            name = k[4:] if k.startswith("img/") else k
            if k.startswith("img/"):
                cameras.append(name)
            np.save(self._tmp / f"{name}.npy", np.stack(v))
        meta = dict(
            format=FORMAT_VERSION, task=self.task, instruction=self.instruction, n_steps=len(self),
            fps=self.fps, cameras=sorted(cameras), action_dim=int(self._steps["action"][0].shape[-1]),
            success=bool(success), created=time.time(), extra=self.extra,
        )
        (self._tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        final = self.root / f"episode_{self.index:06d}"
        self._tmp.rename(final)
        self._steps = {}
        return final

    def discard(self) -> None:
        self._steps = {}
        shutil.rmtree(self._tmp, ignore_errors=True)


def next_index(root: Path) -> int:
    done = [int(p.name.split("_")[1]) for p in Path(root).glob("episode_*") if p.is_dir()]
    return max(done, default=-1) + 1


def episode_paths(root: str | Path) -> list[Path]:
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(
            f"no dataset folder at {root}", hint="record demonstrations first with `lastr1 record --config ...`"
        )
    return sorted(p for p in root.glob("episode_*") if p.is_dir() and (p / "meta.json").is_file())


def load_episode(path: str | Path, mmap: bool = True) -> Episode:
    path = Path(path)
    try:
        meta = json.loads((path / "meta.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DatasetError(f"{path}: unreadable meta.json ({e})") from None
    if meta.get("format") != FORMAT_VERSION:
        raise DatasetError(f"{path}: dataset format {meta.get('format')}, this lastr1 reads {FORMAT_VERSION}")
    mode: Literal["r"] | None = "r" if mmap else None

    def arr(name):
        f = path / f"{name}.npy"
        if not f.is_file():
            raise DatasetError(f"{path}: missing {f.name}", hint="the episode is incomplete; delete it")
        return np.load(f, mmap_mode=mode)

    lt = path / "latent_targets.npy"
    return Episode(
        path=path, meta=meta, images={c: arr(c) for c in meta["cameras"]},
        **{k: arr(k) for k in REQUIRED},
        latent_targets=np.load(lt, mmap_mode=mode) if lt.is_file() else None,
    )


def load_dataset(root: str | Path, only_success: bool = True, mmap: bool = True) -> list[Episode]:
    eps = [load_episode(p, mmap) for p in episode_paths(root)]
    eps = [e for e in eps if e.meta.get("success") or not only_success]
    if not eps:
        raise DatasetError(
            f"{root} holds no {'successful ' if only_success else ''}episodes",
            hint="record demonstrations with `lastr1 record`",
        )
    return eps


def save_latent_targets(episode_path: str | Path, targets: np.ndarray) -> None:
    """Written atomically so an interrupted `lastr1 latents` resumes by skipping finished episodes."""
    episode_path = Path(episode_path)
    episode_path.mkdir(parents=True, exist_ok=True)  # beside a LeRobot dataset it is made on first use
    tmp = episode_path / "latent_targets.tmp.npy"
    np.save(tmp, np.asarray(targets, dtype=np.float16))
    tmp.rename(episode_path / "latent_targets.npy")
