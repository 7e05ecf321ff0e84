"""The robot-side control loop (design §3, §6)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ActorConfig:
    actor_id: str = "actor0"
    # Re-plan the chunk every n control steps (1 = receding horizon every step).
    replan_every: int = 1
    # Sample latent lengths and actions (RL rollouts) or take the confident exit and argmax (evaluation).
    explore: bool = True
    action_temperature: float = 1.0
