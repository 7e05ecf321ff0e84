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
    # The loop's first updates: an untrained critic's action gradient points one arbitrary way for every state,
    # and a fresh Adam state steps every adapter by ~lr at once; both pull the warm-up policy off before the
    # data can guide it. critic_only_updates steps the critic alone first (no adapter version is published
    # meanwhile); actor_lr_ramp_updates raises the actor's lr linearly from lr/N over its first N steps.
    critic_only_updates: int = 0
    actor_lr_ramp_updates: int = 0
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
