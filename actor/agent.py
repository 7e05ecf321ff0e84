"""The policy as the control loop sees it: the slow/fast schedule and receding-horizon execution.

    agent = Agent(policy, instruction, kappa=4, replan_every=1, explore=True)
    d = agent.step(obs.images, obs.proprio)      # every control step
    d.action                                     # (D,) to execute now
    agent.at_boundary                            # the next step reasons afresh: a safe moment to swap weights

Schedule (paper §2.4, design §4). A *re-plan* runs the acting tower on the cached prefix and replaces the chunk;
it happens every `replan_every` steps (1 = receding horizon every step), and also when the chunk runs out or
after `interrupt()` (a human took over, so the old plan is stale). A *reason* runs the reasoning tower and
replaces the prefix; it happens at the first re-plan at least `kappa` steps after the previous one. Reasoning
therefore always comes with a re-plan, so every executed chunk comes from exactly one prefix and one set of
weights, and a weight swap at `at_boundary` never mixes versions inside a chunk.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from lastr1.policy.errors import PolicyError

if TYPE_CHECKING:
    from lastr1.policy.model import ActOutput, Prefix


@dataclass
class Decision:
    action: np.ndarray  # (D,) robot units in [-1, 1]: what the policy executes at this step
    chunk: np.ndarray  # (H, D) the plan from this step on: the current chunk's rest, its last action repeated
    latents: np.ndarray  # (L, d) float16: the latent chain of thought of the prefix in use
    latent_len: int
    version: int  # adapter version of the prefix and chunk in use
    reasoned: bool  # the reasoning tower ran at this step
    planned: bool  # the acting tower ran at this step
    latency_ms: float  # policy compute at this step (0 when it only advanced along the chunk)
    value: float  # the value head on the chosen <latent_end>
    logprob: float  # log π of the chunk in use (sum over its tokens)
    exit_probs: np.ndarray | None = None  # p(<latent_end>) at each candidate length computed for the prefix
    slow_images: dict | None = None  # the slow cameras' frames the prefix in use was reasoned from


class Agent:
    def __init__(self, policy, instruction: str, *, kappa: int = 4, replan_every: int = 1, explore: bool = True,
                 temperature: float = 1.0):
        if kappa < 1 or replan_every < 1:
            raise PolicyError(f"policy.kappa ({kappa}) and actor.replan_every ({replan_every}) must be ≥ 1")
        if replan_every > policy.H:
            raise PolicyError(
                f"actor.replan_every ({replan_every}) exceeds the chunk length policy.chunk ({policy.H})",
                hint="a chunk can only be followed for as many steps as it has actions",
            )
        self.policy = policy
        self.instruction = instruction
        self.kappa, self.replan_every = kappa, replan_every
        self.explore, self.temperature = explore, temperature
        self.slow_cameras = list(policy.cfg.slow_cameras)
        self.fast_cameras = list(policy.cfg.fast_cameras)
        self.reset()

    def reset(self) -> None:
        """A new episode: the next step reasons and plans from scratch."""
        self._prefix: Prefix | None = None
        self._latents: np.ndarray | None = None
        self._exits: np.ndarray | None = None
        self._chunk: np.ndarray | None = None
        self._slow: dict | None = None
        self._out: ActOutput | None = None
        self._k = 0  # index of the next action in the chunk
        self._since_reason = 0
        self._since_plan = 0
        self._stale = True

    def interrupt(self) -> None:
        """Someone else acted (an intervention): re-plan at the next step from what the camera sees then."""
        self._stale = True

    def _plan_due(self) -> bool:
        return (self._stale or self._chunk is None or self._since_plan >= self.replan_every
                or self._k >= len(self._chunk))

    def _reason_due(self) -> bool:
        return self._prefix is None or self._since_reason >= self.kappa

    @property
    def at_boundary(self) -> bool:
        """The next `step` runs the reasoning tower (and so re-plans): new weights applied now are used for
        the whole of the next prefix and chunk."""
        return self._plan_due() and self._reason_due()

    @property
    def version(self) -> int:
        return int(self.policy.version)

    def step(self, images: dict, proprio) -> Decision:
        reasoned = planned = False
        t0 = time.perf_counter()
        if self._plan_due():
            if self._reason_due():
                self._slow = {c: images[c] for c in self.slow_cameras}
                self._prefix = self.policy.reason(self._slow, self.instruction, explore=self.explore)
                self._latents = self._prefix.latents.detach().to("cpu").numpy().astype(np.float16)
                self._exits = self._prefix.exit_logits.detach().to("cpu").sigmoid().numpy()
                self._since_reason = 0
                reasoned = True
            self._out = self.policy.act(self._prefix, {c: images[c] for c in self.fast_cameras}, proprio,
                                        explore=self.explore, temperature=self.temperature)
            if not np.isfinite(self._out.action).all():
                raise PolicyError("the policy returned a non-finite action chunk",
                                  hint="the weights are broken: restart from the last good checkpoint")
            self._chunk = self._out.action
            self._k = 0
            self._since_plan = 0
            self._stale = False
            planned = True
        latency_ms = (time.perf_counter() - t0) * 1e3 if planned else 0.0
        chunk, prefix, out = self._chunk, self._prefix, self._out
        assert chunk is not None and prefix is not None and out is not None and self._latents is not None
        idx = np.minimum(np.arange(self._k, self._k + len(chunk)), len(chunk) - 1)
        d = Decision(
            action=chunk[self._k].copy(), chunk=chunk[idx].copy(), latents=self._latents,
            latent_len=int(prefix.latent_len), version=int(out.version), reasoned=reasoned,
            planned=planned, latency_ms=latency_ms, value=float(prefix.value), logprob=float(out.logprob),
            exit_probs=self._exits, slow_images=self._slow,
        )
        self._k += 1
        self._since_plan += 1
        self._since_reason += 1
        return d
