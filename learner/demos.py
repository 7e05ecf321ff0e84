"""Recorded demonstrations (`lastr1 record`) → rows of the learner's demo buffer."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from lastr1.learner.replay import ReplayBuffer
from lastr1.learner.trainer import LearnerError
from lastr1.transport.demo_store import Episode
from lastr1.transport.lerobot_store import load_demos

log = logging.getLogger(__name__)


def episode_rows(ep: Episode, chunk: int, latent_max: int):
    """Each step as a learner row: the chunk of the next `chunk` recorded actions, and the DINOv3 targets
    as the teacher-forced latents at the full length (real-world warm-up fixes it at L_max, appendix D.2)."""
    if ep.latent_targets is None:
        raise LearnerError(f"{ep.path} has no latent targets",
                           hint="run `lastr1 latents --config ...` on the demonstrations first")
    if ep.latent_targets.shape[1] != latent_max:
        raise LearnerError(f"{ep.path}: latent targets hold {ep.latent_targets.shape[1]} latents per step, "
                           f"the policy uses L_max = {latent_max}", hint="re-run `lastr1 latents`")
    n = len(ep)
    for t in range(n):
        last = t == n - 1
        row: dict[str, Any] = {f"img/{c}": np.asarray(ep.images[c][t]) for c in ep.images}
        row.update(
            proprio=np.asarray(ep.proprio[t], np.float32), action=ep.action_chunk(t, chunk),
            latents=np.asarray(ep.latent_targets[t], np.float16), latent_len=np.int64(latent_max),
            reward=np.float32(ep.reward[t]), terminated=np.bool_(last and ep.meta.get("success", False)),
            truncated=np.bool_(last and not ep.meta.get("success", False)), intervention=np.bool_(True),
        )
        yield t, row


def fill_demo_buffer(buffer: ReplayBuffer, root, chunk: int, latent_max: int, lerobot=None) -> int:
    """Load every successful demonstration under `root` into an empty demo buffer; returns rows added.
    A buffer that already holds rows (a resumed learner) is left as it is. `root` may be a LeRobot v3.0
    dataset (`lerobot`: learner.lerobot's field map)."""
    if buffer.committed:
        return 0
    episodes = load_demos(root, lerobot)
    added = 0
    for i, ep in enumerate(episodes):
        for t, row in episode_rows(ep, chunk, latent_max):
            buffer.add(row, stream=f"demo/{i}", step=t)
            added += 1
    buffer.commit()
    log.info("loaded %d demonstration steps from %d episodes in %s", added, len(episodes), root)
    return added
