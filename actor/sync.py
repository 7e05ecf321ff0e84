"""Actor and learner in lockstep, in one process: the synchronous mode for studies.

    lastr1 sync --config learning --robot.kind lockstep --steps 3000 --utd 2

The actor loop runs as `lastr1 actor` does (same Runtime, same transitions, the scripted operator on), but
every transition goes straight into the learner's rollout buffer, and the learner then runs exactly `--utd`
updates per collected transition (a fraction accumulates: 0.5 = one update every other transition). New
weights reach the actor's policy at each episode's end. Nothing is timed, so with the lockstep robot
(`robot.kind: lockstep`) the update-to-data ratio is the controlled variable and a run is repeatable; the
asynchronous mode (`lastr1 actor` + `lastr1 learner`) is the deployment one, where the ratio is whatever the
two processes' speeds give.

The learner keeps its state in `<run_dir>/learner` as `lastr1 learner` does (checkpoint on exit, `--resume`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from lastr1.actor.learner_sink import TransitionSink

if TYPE_CHECKING:
    from lastr1.configs.schema import Config
    from lastr1.learner.service import Learner

log = logging.getLogger(__name__)


class LocalLink:
    """The wire between an actor and a learner in one process: what `TransitionSink` sends, `Learner.ingest`
    receives at once; nothing is lost, so there is nothing to acknowledge or deduplicate."""

    def __init__(self, actor_id: str):
        self.actor_id = actor_id
        self._queue: list = []
        self._seq = 0

    def send(self, t) -> int:
        t.actor_id, t.epoch, t.seq = self.actor_id, 0, self._seq
        self._seq += 1
        self._queue.append(t)
        return t.seq

    def send_stats(self, s) -> None:
        pass  # the learner's counters already hold what the actor's telemetry would say

    def recv(self, timeout_s: float = 0.0, max_n: int | None = None) -> list:
        out, self._queue = self._queue, []
        return out

    def ack(self, transitions) -> None:
        pass

    def dedup_state(self) -> dict:
        return {}

    def publish_weights(self, weights) -> None:
        pass  # the actor's policy takes the learner's adapter directly (SyncSink.episode_end)

    def stats(self) -> list:
        return []

    def actors(self) -> dict:
        return {}

    def close(self) -> None:
        pass


class SyncSink(TransitionSink):
    """Sends each transition to the in-process learner, then runs `utd` learner updates per transition."""

    def __init__(self, learner: Learner, actor_policy, utd: float):
        link = learner.link
        p = actor_policy
        super().__init__(link, p.H, p.L_max, p.d)
        self.learner, self.actor_policy, self.utd = learner, actor_policy, utd
        self._credit = 0.0

    def _send(self, s, chunk) -> None:
        super()._send(s, chunk)
        lr = self.learner
        lr.ingest(0.0)
        self._credit += self.utd
        while self._credit >= 1.0 and lr.trainer.ready():
            self._credit -= 1.0
            lr.last_stats = lr.trainer.update()
            if lr.trainer.counters.updates % lr.cfg.learner.checkpoint_every_updates == 0:
                lr.save()
        if not lr.trainer.ready():
            self._credit = 0.0  # no debt of updates from before learning could start

    def episode_end(self, summary) -> None:
        super().episode_end(summary)
        lr = self.learner
        if lr.trainer.counters.actor_steps and lr.version < lr.trainer.counters.updates:
            lr.version = lr.trainer.counters.updates  # a version per update count: rising, and repeatable
            self.actor_policy.load_adapter(lr.policy.export_adapter(lr.version))
        log.info("episode %d: %d steps, %s | %s", summary.episode, summary.steps, summary.outcome, lr.status_line())


def run_sync(cfg: Config, *, steps: int, utd: float, resume: bool = False, env=None):
    """`steps` transitions collected with `utd` learner updates each; returns (episodes, learner counters)."""
    from pathlib import Path

    from lastr1.actor.loop import Runtime
    from lastr1.actor.process import check_cameras, make_agent
    from lastr1.learner.service import Learner
    from lastr1.policy.checkpoint import load_policy, open_policy, save_policy

    actor_policy = open_policy(cfg)
    if cfg.policy.checkpoint:
        learner_policy = open_policy(cfg)
    else:  # a fresh policy: the learner trains a copy of the very one the actor starts with
        start = save_policy(actor_policy, Path(cfg.run_dir) / "learner" / "initial_policy")
        learner_policy = load_policy(start, device=cfg.policy.device)
    learner = Learner(cfg, resume=resume, policy=learner_policy, link=LocalLink(cfg.actor.actor_id))
    own = env is None
    if env is None:
        from lastr1.robot.factory import make_env

        env = make_env(cfg)
    if not hasattr(env, "clock"):
        log.warning("robot.kind %s runs in real time: learner updates hold up the control loop", cfg.robot.kind)
    try:
        check_cameras(actor_policy, env)
        sink = SyncSink(learner, actor_policy, utd)
        rt = Runtime(cfg, env, agent=make_agent(cfg, actor_policy), sink=sink, mode="rl", seed=cfg.robot.sim.seed)
        sink.status = rt.status
        episodes = rt.run(max_steps=steps)
        return episodes, learner.trainer.counters
    finally:
        learner.close()
        if own:
            env.close()
