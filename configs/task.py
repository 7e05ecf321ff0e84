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
    # Reward on the step a failure ends: without it, giving up at once (≈ one step penalty) beat a slow failure
    # (up to max_episode_steps penalties). −2 is below step_penalty / (1 − γ) = −1.67 at γ = 0.97, the return
    # of a failure that never ends, so no early stop can pay (docs/learning.md).
    failure_reward: float = -2.0
    # Evaluation conditions of the paper's Table 2.
    eval_conditions: list[str] = field(default_factory=lambda: ["original"])
