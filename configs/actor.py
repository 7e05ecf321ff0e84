"""The robot-side control loop (design §3, §6)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class ActorConfig:
    actor_id: str = "actor0"
    # Re-plan the chunk every n control steps (1 = receding horizon every step). The reasoning tower runs at
    # the first re-plan at least policy.kappa steps after its last run.
    replan_every: int = 1
    # Sample latent lengths and actions (RL rollouts) or take the confident exit and argmax (evaluation).
    explore: bool = True
    action_temperature: float = 1.0
    # A person (SpaceMouse / the scripted operator in sim) may take over; off = the teleop is not read.
    interventions: bool = True
    # After a hard contact the safety layer retreats and pauses the arm until someone resumes it: "hold" waits
    # for that (a lab: the operator looks, then resumes). "fail" ends the episode there as a failure, with
    # task.failure_reward: for unattended runs (scripted evaluations, LAPO's held-out states), where nobody
    # resumes and every later tick would re-plan against a frozen arm until the time limit.
    safety_pause: Literal["hold", "fail"] = "hold"
    # Operator keys are polled this often on their own thread, so pause/e-stop stop the arm within ~20 ms
    # whatever the loop is doing; 0 = poll once per control tick in the loop.
    key_poll_hz: float = 50.0
    # Real robot: after the arm homes, wait for the reset key (a person put the scene back) before the next
    # episode. The simulated scene resets itself.
    confirm_reset: bool = True
    # The loop warns at most this often when it cannot keep task.control_hz.
    warn_every_s: float = 10.0
    # Stats (loop rate, policy latency, intervention rate, ...) to the learner this often, and at episode end.
    stats_every_s: float = 5.0
    # The new-weights poll of the hot-reload thread (it only reads a reference the link keeps up to date).
    reload_poll_s: float = 0.1
    # Status line refresh on a terminal; periodic log lines otherwise.
    status_every_s: float = 0.25
    log_every_s: float = 10.0
    # Stop after this many episodes (0 = run until Ctrl-C / the stop event).
    max_episodes: int = 0
    # `lastr1 eval` (paper Table 2): rollouts per condition and independent runs (mean ± std over runs).
    eval_rollouts: int = 20
    eval_runs: int = 1
    eval_dir: str = "eval"
    eval_video_fps: float = 10.0
    # `lastr1 record`: how many successful demonstrations to keep (the paper warms up on 30).
    record_episodes: int = 30
