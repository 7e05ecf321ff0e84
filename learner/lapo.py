"""LAPO, LaST-R1's latent-to-action PPO (paper §2.3, appendix B, D.3), on one screen.

One PPO *decision* is one reasoning + acting pass: the latent chain, the sampled <latent_end> exit and the
H·D-token action chunk, executed whole. Per decision, the new policy's terms against the old policy's:
  r_a = exp(log π(chunk) − log π_old(chunk))         summed token log-probs at the rollout temperature
  r_z = exp(−Σ_active ‖z_old − z_new‖² / 2σ²)         Gaussian latent ratio over the latents used (≤ 1)
  r_e = exp(log p(exit) − log p_old(exit))           p = softmax(<latent_end> logits / T) across candidates
  L_x = −mean min(r_x Â, clip(r_x, 1 − ε_low, 1 + ε_high) Â)
  L_π = (w_a L_a + w_e L_e) / (w_a + w_e) + w_z L_z,   L_V = 0.5 mean max((V − R)², (V_old + clip(V − V_old, ±c) − R)²)
Â: GAE over decisions (γ, λ), masked past each trajectory's end, whitened over valid decisions; R = Â_raw + V_old.
The "old" terms are recomputed by the same teacher-forced pass before the update (as verl does), so every
ratio is exactly 1 at the old weights whatever the rollout's numerics. Action-Only (`policy.latent_mode: off`)
keeps L_a and L_V only; fixed-length latents drop the exit term.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from lastr1.errors import Lastr1Error


class LapoError(Lastr1Error):
    pass


# --- the mathematics ------------------------------------------------------------------------------------------


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float):
    """(N, T) rewards, values and valid-step mask → (advantages, returns), 0 at invalid steps. A trajectory
    ends at its last valid step with nothing to bootstrap (the reward is paid at the last chunk)."""
    m = mask.float()
    adv = torch.zeros_like(rewards)
    nxt_v = torch.zeros_like(rewards[:, 0])
    nxt_a = torch.zeros_like(rewards[:, 0])
    nxt_m = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        delta = rewards[:, t] + gamma * nxt_v * nxt_m - values[:, t]
        a = (delta + gamma * lam * nxt_m * nxt_a) * m[:, t]
        adv[:, t] = a
        nxt_v, nxt_a, nxt_m = values[:, t], a, m[:, t]
    return adv, (adv + values) * m


def whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Zero mean, unit variance over the valid entries; invalid entries become 0."""
    v = x[mask]
    return torch.where(mask, (x - v.mean()) / (v.std(unbiased=False) + eps), torch.zeros_like(x))


def latent_ratio(z_old: torch.Tensor, z_new: torch.Tensor, active: torch.Tensor, sigma: float) -> torch.Tensor:
    """r_z = exp(−Σ_active ‖z_old − z_new‖² / 2σ²); z (B, L, d), active (B, L)."""
    sq = ((z_new - z_old) ** 2).sum(-1) * active.float()
    return torch.exp(-sq.sum(-1) / (2 * sigma**2))


def clipped_surrogate(ratio: torch.Tensor, adv: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """−mean min(r Â, clip(r, 1 − low, 1 + high) Â)."""
    return -torch.min(ratio * adv, ratio.clamp(1 - low, 1 + high) * adv).mean()


def value_loss(v: torch.Tensor, v_old: torch.Tensor, ret: torch.Tensor, clip: float) -> torch.Tensor:
    """0.5 mean max((V − R)², (V_old + clip(V − V_old, −c, c) − R)²)."""
    clipped = v_old + (v - v_old).clamp(-clip, clip)
    return 0.5 * torch.max((v - ret) ** 2, (clipped - ret) ** 2).mean()


def policy_loss(l_a: torch.Tensor, l_e: torch.Tensor, l_z: torch.Tensor, w_a: float, w_e: float,
                w_z: float) -> torch.Tensor:
    """L_π = (w_a L_a + w_e L_e) / (w_a + w_e) + w_z L_z (the paper: 56 action tokens, 1 exit token, 0.1)."""
    return (w_a * l_a + w_e * l_e) / (w_a + w_e) + w_z * l_z


# --- the policy's terms -----------------------------------------------------------------------------------------


@dataclass
class Decision:
    """What one decision needs for the teacher-forced pass (images uint8, per camera)."""

    slow: dict[str, np.ndarray]
    fast: dict[str, np.ndarray]
    proprio: np.ndarray  # (P,)
    chain: np.ndarray  # (L_max, d) float32: every latent generated (zeros in Action-Only)
    latent_len: int
    tokens: np.ndarray  # (H·D,) int64 sampled action bins
    rollout_logprob: float  # log π(chunk) as the actor sampled it (a check on the recomputed one)
    rollout_exit_logprob: float  # log p(exit) likewise


@dataclass
class Terms:
    action_logp: torch.Tensor  # (B,)
    exit_logp: torch.Tensor  # (B,)
    latents: torch.Tensor  # (B, L_max, d) the hidden states predicting each latent slot
    active: torch.Tensor  # (B, L_max) the slots before the exit
    value: torch.Tensor  # (B,)


def terms(policy, ds: list[Decision], temperature: float, instruction: str) -> Terms:
    """The policy's LAPO terms for `ds`, teacher-forced with the rollout's latents (differentiable)."""
    from lastr1.policy.model import TrainBatch

    def stack(key: str, cams) -> dict:
        return {c: np.stack([getattr(d, key)[c] for d in ds]) for c in cams}

    lens = torch.tensor([max(d.latent_len, policy.G) for d in ds], device=policy.device)
    out = policy.forward_train(TrainBatch(
        slow_images=stack("slow", policy.cfg.slow_cameras), instructions=[instruction] * len(ds),
        fast_images=stack("fast", policy.cfg.fast_cameras), proprio=np.stack([d.proprio for d in ds]),
        latents=np.stack([d.chain for d in ds]), latent_len=lens.cpu().numpy()))
    tokens = torch.as_tensor(np.stack([d.tokens for d in ds]), device=policy.device)
    logp_a = policy.chunk_logprob(out.action_logits, tokens, temperature)
    groups = lens // policy.G - 1
    logp_e = F.log_softmax(out.exit_logits / policy.cfg.exit_temperature, -1).gather(-1, groups[:, None])[:, 0]
    active = torch.arange(policy.L_max, device=policy.device)[None] < lens[:, None]
    return Terms(logp_a, logp_e, out.pred_latents, active, out.value)


def decision_loss(new: Terms, old: Terms, adv: torch.Tensor, ret: torch.Tensor, cfg, latent_mode: str):
    """LAPO's loss on a mini-batch (`cfg`: LapoConfig) and its parts for the log."""
    lo, hi = cfg.clip_low, cfg.clip_high
    r_a = torch.exp(new.action_logp - old.action_logp)
    l_a = clipped_surrogate(r_a, adv, lo, hi)
    zero = l_a * 0.0
    l_z = l_e = zero
    if latent_mode != "off":
        l_z = clipped_surrogate(latent_ratio(old.latents, new.latents, old.active, cfg.latent_sigma), adv, lo, hi)
    if latent_mode == "adaptive":
        l_e = clipped_surrogate(torch.exp(new.exit_logp - old.exit_logp), adv, lo, hi)
    w_e = cfg.exit_weight if latent_mode == "adaptive" else 0.0
    w_z = cfg.latent_weight if latent_mode != "off" else 0.0
    l_pi = policy_loss(l_a, l_e, l_z, cfg.action_weight, w_e, w_z)
    l_v = value_loss(new.value, old.value, ret, cfg.value_clip)
    loss = l_pi + cfg.value_weight * l_v
    stats = {"loss": loss, "action": l_a, "exit": l_e, "latent": l_z, "value": l_v,
             "clip_frac": ((r_a > 1 + hi) | (r_a < 1 - lo)).float().mean()}
    return loss, {k: float(v.detach()) for k, v in stats.items()}


# --- one PPO iteration ------------------------------------------------------------------------------------------


def make_optimizer(policy, cfg) -> torch.optim.Optimizer:
    """AdamW on LoRA + the new modules at `lr` and the value head at `value_lr`; the Q ensemble is BC+Q's."""
    g = policy.parameter_groups()
    return torch.optim.AdamW([{"params": g["lora"] + g["new"], "lr": cfg.lr},
                              {"params": g["value"], "lr": cfg.value_lr}],
                             betas=(0.9, 0.999), weight_decay=cfg.weight_decay)


@torch.no_grad()
def old_terms(policy, ds: list[Decision], temperature: float, instruction: str, chunk: int) -> Terms:
    parts = [terms(policy, ds[i : i + chunk], temperature, instruction) for i in range(0, len(ds), chunk)]
    return Terms(*(torch.cat([getattr(p, f) for p in parts]) for f in Terms.__dataclass_fields__))


def subset(t: Terms, idx: torch.Tensor) -> Terms:
    return Terms(*(getattr(t, f)[idx] for f in Terms.__dataclass_fields__))


def advantages(trajectories: list[list[Decision]], rewards: list[list[float]], values: torch.Tensor, cfg):
    """Per-decision (whitened advantage, return) for the decisions of `trajectories` in order."""
    n, t_max = len(trajectories), max(len(t) for t in trajectories)
    dev = values.device  # the policy's: the advantages meet its new log-probabilities there
    r = torch.zeros(n, t_max, device=dev)
    v = torch.zeros(n, t_max, device=dev)
    mask = torch.zeros(n, t_max, dtype=torch.bool, device=dev)
    k = 0
    for i, t in enumerate(trajectories):
        r[i, : len(t)] = torch.tensor(rewards[i], dtype=torch.float32, device=dev)
        v[i, : len(t)] = values[k : k + len(t)]
        mask[i, : len(t)] = True
        k += len(t)
    adv, ret = gae(r, v, mask, cfg.gamma, cfg.lam)
    adv = whiten(adv, mask)
    return adv[mask], ret[mask]


def ppo_iteration(policy, opt, trajectories: list[list[Decision]], rewards: list[list[float]], cfg,
                  instruction: str, generator: torch.Generator | None = None) -> dict[str, float]:
    """PPO epochs × mini-batches over one on-policy batch; returns the mean of each logged part.

    A mini-batch is `cfg.mini_batch` whole trajectories (the authors' 128 of 512): one optimizer step each,
    its loss the mean over all their decisions, accumulated over passes of `cfg.micro_batch` decisions so a
    mini-batch of long trajectories fits in memory. (Steps per decision would take ~5x more optimizer steps
    per iteration than the paper does and clip most ratios by the end of the first epoch.)"""
    ds = [d for t in trajectories for d in t]
    if not ds:
        raise LapoError("no decisions to learn from", hint="collect at least one trajectory first")
    mode = policy.cfg.latent_mode
    # Eval mode throughout (no LoRA dropout): with dropout the ratios would not be 1 at the old weights.
    policy.eval()
    old = old_terms(policy, ds, cfg.temperature, instruction, cfg.micro_batch)
    adv, ret = advantages(trajectories, rewards, old.value, cfg)
    starts = np.cumsum([0] + [len(t) for t in trajectories])
    log: dict[str, list[float]] = {}
    params = policy.trainable_parameters()
    for _ in range(cfg.epochs):
        order = torch.randperm(len(trajectories), generator=generator).tolist()
        for s in range(0, len(order), cfg.mini_batch):
            idx = torch.cat([torch.arange(starts[i], starts[i + 1]) for i in order[s : s + cfg.mini_batch]])
            if not len(idx):
                continue
            opt.zero_grad(set_to_none=True)
            parts: dict[str, float] = {}
            for micro in idx.split(cfg.micro_batch):
                new = terms(policy, [ds[int(i)] for i in micro], cfg.temperature, instruction)
                loss, stats = decision_loss(new, subset(old, micro), adv[micro], ret[micro], cfg, mode)
                share = len(micro) / len(idx)
                (loss * share).backward()
                for k, x in stats.items():
                    parts[k] = parts.get(k, 0.0) + x * share
            parts["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip))
            opt.step()
            for k, x in parts.items():
                log.setdefault(k, []).append(x)
    return {k: float(np.mean(x)) for k, x in log.items()}
