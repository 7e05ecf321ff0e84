"""`lastr1 lapo`: LaST-R1's latent-to-action PPO on the simulated robot (paper §2.3, appendix B, D.3).

Defaults are the authors' LIBERO values (/work/shared/notes/last-r1-official-code.md) unless a comment says
where our scale differs."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LapoConfig:
    iterations: int = 100
    # Trajectories per iteration and per PPO mini-batch: the authors use 512 and 128 on 8 GPUs; a CPU study
    # cannot afford that, so ours are 32 / 8 (one iteration then costs ~32 episodes of CPU time).
    trajectories: int = 32
    mini_batch: int = 8  # trajectories per optimizer step (4 steps an epoch, as the authors' 512 / 128)
    micro_batch: int = 8  # decisions per forward/backward pass, gradients accumulated: memory, not the mathematics
    epochs: int = 1  # PPO epochs over each iteration's batch
    workers: int = 1  # rollout workers (environments are split across them): local processes, or Ray actors
    # "" : the workers are local processes; "local": Ray actors on a Ray instance started here (a try-out);
    # "auto", "ray://head:10001", ...: Ray actors on that cluster (`--address`; needs `pip install 'lastr1[ray]'`)
    ray_address: str = ""
    temperature: float = 1.0  # action-token sampling temperature at rollout; the exit's is policy.exit_temperature
    success_reward: float = 5.0  # at the last chunk of a successful trajectory, 0 elsewhere
    gamma: float = 0.99
    lam: float = 0.95
    clip_low: float = 0.2  # ε_low / ε_high of every clipped ratio (action, latent, exit)
    clip_high: float = 0.28
    # L_π = (w_a·L_a + w_e·L_exit) / (w_a + w_e) + w_z·L_z: the authors weigh by token count (56 action tokens,
    # H·D = 8 × 7, and one exit token); our chunk is the same 8 × 7, so the paper's 56 / 1 holds unchanged.
    action_weight: float = 56.0
    exit_weight: float = 1.0
    latent_weight: float = 0.1
    latent_sigma: float = 10.0  # σ of the Gaussian latent ratio r_z = exp(−Σ‖z_old − z_new‖² / 2σ²)
    value_weight: float = 1.0
    value_clip: float = 0.2  # the value loss is 0.5 × max((V − R)², (V_old + clip(V − V_old) − R)²)
    lr: float = 3e-5  # LoRA and new modules
    value_lr: float = 3e-4  # value head
    weight_decay: float = 0.0
    grad_clip: float = 10.0
    eval_every: int = 10  # iterations between held-out evaluations (0: only at the start and the end)
    eval_rollouts: int = 20  # fixed held-out initial states (seeds), greedy decoding
    seed: int = 0
