"""What the robot is asked to do, and how an episode is scored (paper §3.3, appendix D.4)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TaskConfig:
    name: str = "sim_insert_hex"
    instruction: str = "insert the hexagon block into the slot"
    n_arms: int = 1
    control_hz: float = 10.0
    # Time limit: the episode is *truncated* (not terminated) after this many control steps.
    max_episode_steps: int = 200
    # Appendix D.4: terminal reward on operator-confirmed success and a constant step penalty. The paper's
    # numbers were lost in extraction; these are HIL-SERL / ConRFT's values (notes/last-r1-official-code.md).
    success_reward: float = 10.0
    step_penalty: float = -0.05
    # Evaluation conditions of the paper's Table 2.
    eval_conditions: list[str] = field(default_factory=lambda: ["original"])
