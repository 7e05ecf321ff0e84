"""Steps → `transport.messages.Transition`s to the learner, each the moment it was executed.

A policy step carries the chunk the policy planned; a human step only the action the person executed (1 × D):
its chunk, the person's next H actions, is assembled by the learner from the steps after it
(learner/chunks.py says why there). Nothing waits here, so an actor killed mid-episode has spooled every step
it executed. The latents are padded to the policy's L_max (`latent_len` says how many are real) so every
transition of a run has the same shapes, which the learner's fixed-shape replay buffer needs.
"""

from __future__ import annotations

import logging

import numpy as np

from lastr1.actor.episode import EpisodeSummary, Sink, StepRecord
from lastr1.actor.status import ActorStatus

log = logging.getLogger(__name__)


class TransitionSink(Sink):
    def __init__(self, link, horizon: int, latent_max: int, latent_dim: int, status=None):
        self.link = link
        self.status = status  # the runtime's status() for the loop figures in the episode's stats
        self.H, self.L, self.d = horizon, latent_max, latent_dim
        self.sent = 0
        self.last_seq = -1

    def step(self, s: StepRecord) -> None:
        a = np.asarray(s.action, np.float32)[None]
        if s.human:
            self._send(s, a)
        else:  # without a decision there is no plan to send: the executed action held for the chunk
            self._send(s, s.decision.chunk if s.decision is not None else np.repeat(a, self.H, 0))

    def episode_end(self, summary: EpisodeSummary) -> None:
        from lastr1.transport.messages import Telemetry

        s = self.status() if self.status is not None else ActorStatus()
        self.link.send_stats(Telemetry(
            episode_return=summary.ret,
            intervention_rate=summary.intervention_steps / max(1, summary.steps),
            loop_hz=s.hz, policy_latency_ms=s.policy_ms,
            values={"episode": summary.episode, "episode_steps": summary.steps,
                    "episode_success": float(summary.success), "policy_version": summary.versions[1],
                    "period_p99_ms": s.period_p99_ms},
        ))

    def _send(self, s: StepRecord, chunk: np.ndarray) -> None:
        from lastr1.transport.messages import Transition

        d = s.decision
        latents = latent_len = None
        if d is not None:
            latents = np.zeros((self.L, self.d), np.float16)
            latents[: d.latent_len] = d.latents[: d.latent_len]
            latent_len = d.latent_len
        last = s.terminated or s.truncated
        nxt = s.next_obs if (s.truncated and s.next_obs is not None) else None
        t = Transition(
            episode=s.episode, step=s.step, policy_version=d.version if d is not None else 0,
            intervention=bool(s.human), images=s.obs.images, proprio=s.obs.proprio,
            action=np.asarray(chunk, np.float32), latents=latents, latent_len=latent_len or 0,
            reward=float(s.reward), terminated=bool(s.terminated), truncated=bool(s.truncated), t_obs=s.t_obs,
            next_images=nxt.images if nxt is not None else None,
            next_proprio=nxt.proprio if nxt is not None else None,
            slow_images=d.slow_images if d is not None else None,
        )
        self.last_seq = self.link.send(t)
        self.sent += 1
        if last:
            log.debug("episode %d: %d transitions sent (last seq %d)", s.episode, s.step + 1, self.last_seq)
