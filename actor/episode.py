"""An episode's rules, apart from the loop that times them (actor/loop.py): how it ends, what each step earns.

    ended = outcome(keys, stepped=ep.prev is not None, estopped=..., stopping=..., out_of_time=...)
    ep = Episode(n, seed, condition, sink, step_penalty=-0.05, success_reward=10.0, failure_reward=-2.0)
    ep.observed(obs); ep.executed(obs, t_obs, action, human, decision)      # per tick
    ep.close(ended, final_obs); summary = ep.summary(ended, strict=eval_mode)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np

from lastr1.robot.keys import Key

if TYPE_CHECKING:
    from lastr1.actor.agent import Decision
    from lastr1.robot.interfaces import Observation

Outcome = Literal["success", "failure", "reset", "estop", "stopped", "time_limit"]


@dataclass
class StepRecord:
    """One executed control step, as the sinks receive it."""

    episode: int
    step: int
    obs: Observation  # images and proprio the action was chosen from
    t_obs: float  # time.time() of that observation
    action: np.ndarray  # (D,) executed, robot units in [-1, 1]
    human: bool  # the person (or the scripted expert) produced `action`
    decision: Decision | None  # the policy's at this step (None in record mode)
    reward: float = 0.0
    terminated: bool = False
    truncated: bool = False
    next_obs: Observation | None = None  # s′ (set on every step before it reaches the sink; None if unknown)


@dataclass
class EpisodeSummary:
    episode: int
    seed: int | None
    steps: int
    ret: float  # undiscounted return
    outcome: str  # success | failure | time_limit | reset | estop | stopped
    success: bool  # success key (sim: the scene), and — in eval — no intervention
    intervention_steps: int
    duration_s: float
    versions: tuple[int, int] = (0, 0)  # policy versions seen (first, last)
    condition: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def terminated(self) -> bool:
        return self.outcome in ("success", "failure")


class Sink:
    """Where steps go: the learner link (rl), a dataset (record), videos and counts (eval)."""

    def episode_start(self, episode: int, seed: int | None, obs) -> None:
        pass

    def step(self, s: StepRecord) -> None:
        pass

    def episode_end(self, summary: EpisodeSummary) -> None:
        pass


def outcome(keys: list[Key], *, stepped: bool, estopped: bool, stopping: bool, out_of_time: bool,
            contact_paused: bool = False) -> Outcome | None:
    """How the episode ends at this tick, or None if it goes on; the first rule that holds wins. Success and
    failure judge an executed step, so they wait for one (`stepped`). `contact_paused`: the safety layer paused
    the arm after a hard contact and nobody will resume it (actor.safety_pause: fail), a failure."""
    if Key.SUCCESS in keys and stepped:
        return "success"
    if Key.FAILURE in keys and stepped:
        return "failure"
    if contact_paused and stepped:
        return "failure"
    if Key.RESET in keys:
        return "reset"
    if estopped:
        return "estop"
    if stopping:
        return "stopped"
    if out_of_time:
        return "time_limit"
    return None


class Episode:
    """One episode's bookkeeping. A step reaches the sink one step late, once its s′ and whether it was the last
    are known; the episode's outcome lands on its last executed step."""

    def __init__(self, number: int, seed: int | None, condition: str, sink: Sink, *, step_penalty: float,
                 success_reward: float, failure_reward: float):
        self.number, self.seed, self.condition, self.sink = number, seed, condition, sink
        self.step_penalty, self.success_reward, self.failure_reward = step_penalty, success_reward, failure_reward
        self.prev: StepRecord | None = None  # the last executed step, not yet handed on
        self.steps = 0
        # Control periods not paused by the operator: the time limit counts these, so an arm the safety layer
        # keeps holding (jammed against a surface, stale cameras) still ends its episode.
        self.ticks = 0
        self.ret = 0.0
        self.interventions = 0
        self.versions: list[int] = []
        self.gripper: np.ndarray | None = None  # the last executed gripper command per arm
        self.took_over = False  # a person chose the last action, executed or not
        self.t_start = time.monotonic()

    def observed(self, obs) -> None:
        """A new view: the last step's s′ (held steps in between were no steps)."""
        if self.prev is not None:
            self.prev.next_obs = obs

    def executed(self, obs, t_obs: float, action: np.ndarray, human: bool, decision) -> None:
        """The arm got `action`: the step before it is complete and goes to the sink."""
        if self.prev is not None:
            self._hand_on(self.prev)
        self.gripper = action.reshape(-1, 7)[:, 6].copy()
        self.interventions += int(human)
        self.prev = StepRecord(self.number, self.steps, obs, t_obs, action.astype(np.float32), human, decision,
                               reward=self.step_penalty)
        self.steps += 1

    def close(self, ended: Outcome, final_obs) -> None:
        """The last step gets the outcome and the final observation (None if the cameras had none)."""
        last = self.prev
        if last is None:
            return
        if ended in ("success", "failure"):
            last.terminated = True  # failure too: the operator judged the attempt over, nothing more is earned
            last.reward = self.success_reward if ended == "success" else self.failure_reward
        else:
            last.truncated = True  # not a terminal state: the learner bootstraps from final_obs
        last.next_obs = final_obs
        self._hand_on(last)

    def summary(self, ended: Outcome, *, strict: bool) -> EpisodeSummary:
        """`strict` (evaluation): a success a person helped with is a failure."""
        v = self.versions
        return EpisodeSummary(
            episode=self.number, seed=self.seed, steps=self.steps, ret=self.ret, outcome=ended,
            success=ended == "success" and not (strict and self.interventions),
            intervention_steps=self.interventions, duration_s=time.monotonic() - self.t_start,
            versions=(v[0], v[-1]) if v else (0, 0), condition=self.condition,
        )

    def _hand_on(self, s: StepRecord) -> None:
        self.ret += s.reward
        self.sink.step(s)
