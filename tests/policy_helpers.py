"""Shared builders for the policy tests (tiny random towers, random frames)."""

from __future__ import annotations

import os

import numpy as np
import torch

from lastr1 import configs

INSTRUCTION = "insert the hexagon block into the slot"


def tiny_cfg(**over):
    """The tiny policy config; LASTR1_TEST_DEVICE=cuda runs the policy and learner tests on a GPU box's card."""
    cfg = configs.load("policy/tiny_cpu").policy
    cfg.device = os.environ.get("LASTR1_TEST_DEVICE", cfg.device)
    for k, v in over.items():
        setattr(cfg, k, v)
    return cfg


def tiny_policy(**over):
    from lastr1.policy import build_policy

    return build_policy(tiny_cfg(**over), n_arms=1, proprio_dim=8)


def frames(seed: int, size: int = 128) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "front": rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
        "wrist": rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
        "proprio": rng.normal(size=8).astype(np.float32),
    }


def batch_from(obs: list[dict], latents, lens, instructions=None):
    from lastr1.policy import TrainBatch

    return TrainBatch(
        slow_images={"front": np.stack([o["front"] for o in obs])},
        instructions=instructions or [INSTRUCTION] * len(obs),
        fast_images={"wrist": np.stack([o["wrist"] for o in obs])},
        proprio=np.stack([o["proprio"] for o in obs]),
        latents=latents,
        latent_len=lens,
    )


def padded_latents(policy, prefixes) -> torch.Tensor:
    z = torch.zeros(len(prefixes), policy.L_max, policy.d)
    for i, p in enumerate(prefixes):
        z[i, : p.latent_len] = p.latents
    return z


def perturb_trainables(policy, seed: int = 0, scale: float = 0.05) -> None:
    """Move every trainable tensor off its init (LoRA B starts at zero, which would hide the adapters)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in policy.trainable_parameters():
            p.add_(torch.randn(p.shape, generator=g).to(p.device) * scale)
