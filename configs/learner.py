"""The learner's BC + Q objective (appendix D.4)."""

from __future__ import annotations

from dataclasses import dataclass, field

from lastr1.configs.lapo import LapoConfig


@dataclass
class LeRobotFields:
    """Where our demonstration streams are in a LeRobot v3.0 dataset (a folder given as the demonstrations to
    `lastr1 warmup` or `learner.demo_dir`). The action must already be ours: per arm xyz, rotation-vector
    deltas and gripper, normalised to [-1, 1]; the state ours: per arm position, quaternion xyzw, gripper width."""

    state: str = "observation.state"
    action: str = "action"
    reward: str = "next.reward"  # a dataset without it: 0 at every step
    intervention: str = "complementary_info.is_intervention"  # without it: every step is a person's (a demo)
    # Our camera name -> the dataset's image or video feature; empty: each observation.images.<name> as <name>.
    cameras: dict[str, str] = field(default_factory=dict)


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
    # The TD target's minimum is over a random subset of this many of the policy.q_ensemble heads, drawn per
    # critic step (REDQ/RLPD): a larger ensemble with a 2-head subset curbs overestimation without the full
    # minimum's pessimism, and the heads are cheap next to the VLA (docs/learning.md §7).
    q_target_subset: int = 2
    beta_bc: float = 1.0
    # η: weight of the advantage-weighted CE on every row's executed action (0: BC only, the HG-DAgger-style
    # baseline); λ its temperature in units of the running advantage RMS, w_max its clip (AWAC/CRR).
    eta_q: float = 1.0
    awr_temperature: float = 1.0
    awr_w_max: float = 20.0
    # Reasoning kept trained during RL, on demonstration rows (their DINOv3 targets): the warm-up's latent
    # cosine and exit terms, so the latents cannot drift while the acting tower adapts. The value head
    # (shown in the viewer) regresses min Q(s, a) on every row.
    w_latent: float = 0.1
    w_exit: float = 0.1
    w_value: float = 0.1
    broadcast_every_updates: int = 10
    broadcast_every_s: float = 30.0
    checkpoint_every_updates: int = 50
    demo_capacity: int = 50_000
    rollout_capacity: int = 200_000
    seed: int = 0
    # Demonstrations: `lastr1 record` writes them; `lastr1 latents`, `lastr1 warmup` and the demo buffer read
    # them. Relative to run_dir. A LeRobot v3.0 dataset folder works too (its fields mapped by `lerobot`).
    demo_dir: str = "demos"
    lerobot: LeRobotFields = field(default_factory=LeRobotFields)
    # Stream the learner's curves to rerun (learner/view.py): "" off, "web", "spawn" or a FILE.rrd.
    view: str = ""
    # On-policy PPO for simulated tasks (`lastr1 lapo`); `lastr1 learner` / `sync` stay BC + Q.
    lapo: LapoConfig = field(default_factory=LapoConfig)
