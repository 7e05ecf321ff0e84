"""The actor process put together: robot + policy + link to the learner + the loop.

    stop = threading.Event()
    result = run_actor(cfg, stop)            # blocks; set `stop` from another thread (lastr1 demo) to end it

Everything is built from the config; a caller (tests, `lastr1 demo`) may hand in an env, a policy or a link
it already has. With no learner reachable the loop keeps running on its last weights; the link spools every
transition on disk and resends it when the learner answers.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lastr1.actor.loop import ActorError, EpisodeSummary, Runtime
from lastr1.actor.status import ActorStatus
from lastr1.actor.view import tee

if TYPE_CHECKING:
    from lastr1.actor.view import View

if TYPE_CHECKING:
    from lastr1.configs.schema import Config

log = logging.getLogger(__name__)


def check_cameras(policy, env) -> None:
    need = set(policy.cfg.slow_cameras) | set(policy.cfg.fast_cameras)
    missing = sorted(need - set(env.camera_names))
    if missing:
        raise ActorError(f"the policy reads camera(s) {missing}, the robot has {env.camera_names}",
                         hint="name robot.cameras[].name as policy.slow_cameras / policy.fast_cameras")


def make_agent(cfg: Config, policy, explore: bool | None = None):
    from lastr1.actor.agent import Agent

    return Agent(policy, cfg.task.instruction, kappa=cfg.policy.kappa, replan_every=cfg.actor.replan_every,
                 explore=cfg.actor.explore if explore is None else explore,
                 temperature=cfg.actor.action_temperature)


def preflight(cfg: Config) -> None:
    """What the robot PC can check on its own — key files, the real-time kernel, the cameras by serial —
    before the actor opens the learner connection or an FCI session (ActorError listing every failure)."""
    from lastr1.robot import checks as robot_checks
    from lastr1.transport import checks as transport_checks

    found = [transport_checks.key_files(cfg, "actor")]
    if cfg.robot.kind == "real":
        found += [robot_checks.realtime_kernel(cfg), *robot_checks.cameras(cfg)]
    failed = [c for c in found if c.failed]
    if failed:
        raise ActorError("not started, nothing connected: " + "; ".join(f"{c.name}: {c.detail}" for c in failed),
                         hint=" / ".join(c.fix for c in failed) + " (`lastr1 doctor --config ...` checks them all)")



def check_learner(cfg: Config, policy, link, wait_s: float = 3.0) -> None:
    """Declare this actor's layout to the learner and, if the learner answers within `wait_s`, stop here when
    it does not fit: every transition would be refused (a learner that is down is not waited for)."""
    side = cfg.robot.image_size
    link.declare({"cameras": [c.name for c in cfg.robot.cameras], "image": [side, side],
                  "proprio": policy.proprio_dim, "action": [policy.H, policy.D], "latents": [policy.L_max, policy.d]})
    end = time.monotonic() + max(wait_s, 3 * cfg.transport.heartbeat_s)
    while time.monotonic() < end and not link.shapes_answered.is_set():
        time.sleep(0.05)
    if link.schema_error:
        raise ActorError(f"the learner refuses this actor's transitions: {link.schema_error}",
                         hint="make this actor's config match the learner's (the names in brackets), or run a "
                              "learner for this layout")


def make_link(cfg: Config):
    from lastr1.transport.actor_link import ActorLink

    t = cfg.transport
    return ActorLink(t, cfg.actor.actor_id, spool_dir=cfg.path(t.spool_dir), keys_dir=cfg.path(t.keys_dir))


@dataclass
class ActorResult:
    episodes: list[EpisodeSummary] = field(default_factory=list)
    steps: int = 0
    sent: int = 0
    versions_applied: int = 0
    max_apply_ms: float = 0.0  # longest weight swap inside the loop (the staging runs on its own thread)
    stage_thread: str = ""
    status: ActorStatus = field(default_factory=ActorStatus)


class _Reporter:
    """Per-tick callback: the status line, and stats to the learner every `actor.stats_every_s`."""

    def __init__(self, cfg: Config, link, on_status):
        self.cfg, self.link, self.on_status = cfg, link, on_status
        self._last_stats = time.monotonic()

    def __call__(self, s: ActorStatus) -> None:
        if self.link is not None:
            if not self.link.connected:
                b = self.link.backlog()
                s.link = f"learner unreachable, {b.unacked + b.queued} spooled"
            now = time.monotonic()
            if now - self._last_stats >= self.cfg.actor.stats_every_s:
                self._last_stats = now
                self.send_stats(s)
        if self.on_status is not None:
            self.on_status(s)

    def send_stats(self, s: ActorStatus) -> None:
        from lastr1.transport.messages import Telemetry

        self.link.send_stats(Telemetry(intervention_rate=s.intervention_rate, loop_hz=s.hz,
                                       policy_latency_ms=s.policy_ms, values=s.stats_values()))


def run_actor(cfg: Config, stop: threading.Event | None = None, *, env=None, policy=None, link=None,
              max_episodes: int | None = None, max_steps: int | None = None, on_status=None,
              view: View | None = None) -> ActorResult:
    """Run the RL actor until `stop` is set (or the episode/step budget is spent). Things handed in are not
    closed here; things built here are. `view`: the rerun view (actor/view.py) also gets every step."""
    from lastr1.actor.learner_sink import TransitionSink
    from lastr1.actor.reload import HotReloader

    stop = stop or threading.Event()
    own: list = []
    try:
        if policy is None:
            from lastr1.policy import open_policy

            policy = open_policy(cfg)
        if link is None:
            if env is None:
                preflight(cfg)
            link = make_link(cfg)
            own.append(link)
        if env is None:
            from lastr1.robot.factory import make_env

            env = make_env(cfg)
            own.append(env)
        check_cameras(policy, env)
        check_learner(cfg, policy, link)
        agent = make_agent(cfg, policy)
        reloader = HotReloader(policy, link.latest_weights, cfg.actor.reload_poll_s)
        sink = TransitionSink(link, policy.H, policy.L_max, policy.d)
        reporter = _Reporter(cfg, link, on_status)
        rt = Runtime(cfg, env, agent=agent, sink=tee(sink, view), reloader=reloader, mode="rl", seed=cfg.robot.sim.seed,
                     on_tick=reporter)
        sink.status = rt.status
        with reloader:
            episodes = rt.run(stop, max_episodes=max_episodes or cfg.actor.max_episodes or None, max_steps=max_steps)
        reporter.send_stats(rt.status())
        return ActorResult(episodes=episodes, steps=rt.total_steps, sent=sink.sent, versions_applied=reloader.applied,
                           max_apply_ms=reloader.max_apply_ms, stage_thread=reloader.stage_thread, status=rt.status())
    finally:
        for part in reversed(own):
            try:
                part.close()
            except Exception as e:  # close the rest even if one part fails
                log.error("closing %s: %s", type(part).__name__, e)
