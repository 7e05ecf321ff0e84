"""The learner's BC + Q objective (appendix D.4)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LearnerConfig:
    start_after: int = 500
    critic_updates_per_actor_update: int = 2
    grad_accum: int = 16
    micro_batch_demo: int = 2
    micro_batch_rollout: int = 2
    gamma: float = 0.97
    tau: float = 0.005
    lr: float = 3e-4
    critic_lr: float = 3e-4
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    beta_bc: float = 1.0
    eta_q: float = 0.1
    broadcast_every_updates: int = 10
    broadcast_every_s: float = 30.0
    checkpoint_every_updates: int = 50
    demo_capacity: int = 50_000
    rollout_capacity: int = 200_000
    seed: int = 0
    # Demonstrations: `lastr1 record` writes them; `lastr1 latents`, `lastr1 warmup` and the demo buffer read
    # them. Relative to run_dir.
    demo_dir: str = "demos"
