"""`lastr1 record`: demonstrations for the warm-up (paper §3.3: 30 per task, recorded with a SpaceMouse).

    lastr1 record --config configs/real/insert_hex.yaml --episodes 30
    lastr1 record --config sim_insert_hex --episodes 5            # the scripted expert drives in sim
    lastr1 record --config sim_insert_hex --export-lerobot out/   # also write the LeRobotDataset layout
    lastr1 record --config sim_insert_hex --export-only --export-lerobot out/

The person drives every step (in sim: the scripted expert); the operator's success key keeps the episode
(in sim: the scene's success), the failure key, the reset key or the time limit discard it. Episodes go to
`<run_dir>/<learner.demo_dir>` in our dataset format (transport/demo_store.py), which `lastr1 warmup`,
`lastr1 latents` and the learner's demo buffer read.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from lastr1.actor.episode import EpisodeSummary, Sink, StepRecord
from lastr1.actor.loop import Runtime
from lastr1.actor.view import tee

if TYPE_CHECKING:
    from lastr1.actor.view import View
    from lastr1.configs.schema import Config
    from lastr1.transport.demo_store import EpisodeWriter

log = logging.getLogger(__name__)


class DemoSink(Sink):
    """Each episode into an `EpisodeWriter`; kept (renamed into place) only when it succeeded."""

    def __init__(self, root: str | Path, cfg, source: str):
        self.root = Path(root)
        self.cfg = cfg
        self.source = source
        self.writer: EpisodeWriter | None = None
        self.kept: list[Path] = []
        self.discarded = 0

    def episode_start(self, episode: int, seed, obs) -> None:
        from lastr1.transport.demo_store import EpisodeWriter

        self.writer = EpisodeWriter(self.root, self.cfg.task.name, self.cfg.task.instruction, self.cfg.task.control_hz,
                                    extra={"seed": seed, "source": self.source, "robot": self.cfg.robot.kind,
                                           "n_arms": self.cfg.task.n_arms})

    def step(self, s: StepRecord) -> None:
        assert self.writer is not None, "a step outside an episode"
        self.writer.add(s.obs.images, s.obs.proprio, s.action, s.reward, intervention=s.human)

    def episode_end(self, summary: EpisodeSummary) -> None:
        w, self.writer = self.writer, None
        assert w is not None, "an episode that never started"
        if summary.success and len(w):
            path = w.finish(success=True)
            self.kept.append(path)
            log.info("demonstration kept: %s (%d steps)", path, summary.steps)
        else:
            w.discard()
            self.discarded += 1
            log.info("demonstration discarded (%s)", summary.outcome)


def record(cfg: Config, n: int, out: str | Path, stop: threading.Event | None = None, *, env=None,
           max_attempts: int | None = None, on_status=None, view: View | None = None) -> DemoSink:
    """Record until `n` successful demonstrations are kept (or `max_attempts` episodes, or `stop`)."""
    stop = stop or threading.Event()
    own = env is None
    if env is None:
        from lastr1.robot.factory import make_env

        env = make_env(cfg)
    try:
        sim = env.scene.simulated
        if not sim and env.teleop is None:
            from lastr1.actor.loop import ActorError

            raise ActorError("recording on the real robot needs a SpaceMouse", hint="list one under robot.teleop")
        sink = DemoSink(out, cfg, "scripted expert" if sim else "spacemouse")
        rt = Runtime(cfg, env, sink=tee(sink, view), mode="record", seed=cfg.robot.sim.seed,
                     expert=env.scene.expert_action if sim else None, on_tick=on_status)
        attempts = max_attempts or 3 * n
        while len(sink.kept) < n and len(rt.episodes) < attempts and not stop.is_set():
            if rt.run(stop, max_episodes=1) == []:
                break
        if len(sink.kept) < n and not stop.is_set():
            log.warning("kept %d of %d demonstrations after %d attempts", len(sink.kept), n, len(rt.episodes))
        return sink
    finally:
        if own:
            env.close()
