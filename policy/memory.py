"""How much GPU memory a policy configuration takes, per role, without the weights or a GPU.

Parameters and their bytes come from the policy built on the meta device (the same `Policy` code, no
memory). Activations a training pass keeps for its backward pass are measured, not guessed: the same
configuration with 1 and 2 decoder layers runs `forward_train` on CPU (bfloat16, the learner's micro-batch,
the cameras' frame size) under a saved-tensor hook, and the per-layer slope is extrapolated to the real layer
count. Gradient checkpointing keeps instead each layer's inputs plus one layer's activations at a time. The
frozen vision tower runs without gradients and keeps nothing.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from lastr1.policy.errors import PolicyError

if TYPE_CHECKING:
    from lastr1.configs.policy import PolicyConfig, TinyTowerConfig

GB = 2**30
# CUDA context, cuBLAS/SDPA workspaces and allocator fragmentation: what nvidia-smi shows beyond the tensors.
OVERHEAD_GB = 1.5
# What torch.cuda.mem_get_info reports as total on an RTX 4090, an A100 40 GB and an A100 80 GB (GiB).
CARDS = {"24gb": 23.99, "40gb": 39.39, "80gb": 79.15}


@dataclass
class Counts:
    frozen: int = 0  # parameters (elements)
    frozen_bytes: int = 0
    trainable: int = 0  # LoRA, new embeddings/heads, Q and value heads (float32)
    trainable_bytes: int = 0
    q_targets_bytes: int = 0
    by_dtype: dict[str, int] = field(default_factory=dict)


def tower_sizes(policy_cfg: PolicyConfig) -> TinyTowerConfig:
    """The reasoning tower's sizes: `policy.tiny` for `model: tiny`, else read from the folder's config.json."""
    if policy_cfg.model == "tiny":
        return policy_cfg.tiny
    from lastr1.policy.hf_compat import read_model_config

    d = read_model_config(Path(policy_cfg.model).expanduser())
    t, v = d["text_config"], d.get("vision_config") or {}
    rope = t.get("rope_parameters") or t.get("rope_scaling") or {}
    out = copy.deepcopy(policy_cfg.tiny)
    for ours, theirs, src in [("hidden_size", "hidden_size", t), ("layers", "num_hidden_layers", t),
                              ("heads", "num_attention_heads", t), ("kv_heads", "num_key_value_heads", t),
                              ("head_dim", "head_dim", t), ("intermediate_size", "intermediate_size", t),
                              ("vocab_size", "vocab_size", t), ("vision_hidden_size", "hidden_size", v),
                              ("vision_layers", "depth", v), ("vision_heads", "num_heads", v),
                              ("vision_intermediate_size", "intermediate_size", v), ("patch_size", "patch_size", v),
                              ("deepstack", "deepstack_visual_indexes", v),
                              ("vision_positions", "num_position_embeddings", v)]:
        if theirs in src:
            setattr(out, ours, src[theirs])
    if "mrope_section" in rope:
        out.mrope_section = list(rope["mrope_section"])
    if "rope_theta" in rope or "rope_theta" in t:
        out.rope_theta = float(rope.get("rope_theta", t.get("rope_theta")))
    return out


def _shape_cfg(policy_cfg: PolicyConfig, device: str) -> PolicyConfig:
    cfg = copy.deepcopy(policy_cfg)
    cfg.tiny, cfg.model, cfg.device, cfg.checkpoint = copy.deepcopy(tower_sizes(policy_cfg)), "tiny", device, ""
    return cfg


def count(policy_cfg: PolicyConfig, n_arms: int = 1) -> Counts:
    """Parameters of the policy `policy_cfg` builds, by role, from a build on the meta device."""
    from lastr1.policy.build import build_policy

    policy = build_policy(_shape_cfg(policy_cfg, "meta"), n_arms=n_arms)
    c = Counts()
    targets = {id(p) for p in policy.q_targets.parameters()}
    for p in policy.parameters():
        n, b = p.numel(), p.numel() * p.element_size()
        c.by_dtype[str(p.dtype).removeprefix("torch.")] = c.by_dtype.get(str(p.dtype).removeprefix("torch."), 0) + b
        if id(p) in targets:
            c.q_targets_bytes += b
        elif p.requires_grad:
            c.trainable, c.trainable_bytes = c.trainable + n, c.trainable_bytes + b
        else:
            c.frozen, c.frozen_bytes = c.frozen + n, c.frozen_bytes + b
    return c


def activation_bytes(policy_cfg: PolicyConfig, micro_batch: int, image_hw: tuple[int, int], n_arms: int = 1,
                     checkpointing: bool = False) -> int:
    """Bytes a training pass (`forward_train` of `micro_batch` samples, in the configured dtype) keeps for its
    backward pass, measured on CPU at 1 and 2 layers and extrapolated to the tower's layer count."""
    from lastr1.policy.build import build_policy
    from lastr1.policy.model import TrainBatch

    sizes = tower_sizes(policy_cfg)
    kept = []
    for layers in (1, 2):
        cfg = _shape_cfg(policy_cfg, "cpu")
        # The vision tower is frozen and runs without gradients: one layer of it gives the same token count.
        cfg.tiny.layers, cfg.tiny.vision_layers, cfg.tiny.deepstack = layers, 1, [0]
        cfg.tiny.vocab_size = 0  # the frozen embedding table keeps nothing either
        cfg.grad_checkpointing = False
        policy = build_policy(cfg, n_arms=n_arms)
        rng = np.random.default_rng(0)
        frames = {c: rng.integers(0, 256, (micro_batch, *image_hw, 3), dtype=np.uint8)
                  for c in {*cfg.slow_cameras, *cfg.fast_cameras}}
        batch = TrainBatch(slow_images=frames, instructions=["insert the hexagon block into the slot"] * micro_batch,
                           fast_images=frames, proprio=np.zeros((micro_batch, policy.proprio_dim), np.float32),
                           latents=torch.zeros(micro_batch, policy.L_max, policy.d),
                           latent_len=np.full(micro_batch, policy.L_max))
        seen: dict[int, int] = {}
        weights = {p.untyped_storage().data_ptr() for p in policy.parameters()}

        def pack(t: torch.Tensor, seen=seen, weights=weights):
            # each storage once (views share it); weights are counted as parameters, not activations
            ptr = t.untyped_storage().data_ptr()
            if ptr not in weights:
                seen[ptr] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = policy.forward_train(batch)
        h_bytes = torch.finfo(policy.dtype).bits // 8 * policy.d
        # what one layer boundary holds: the reasoning and acting hidden states (checkpointing keeps these)
        boundary = micro_batch * _tokens(policy, batch) * h_bytes
        kept.append((sum(seen.values()), boundary))
        del policy, out
    (one, boundary), (two, _) = kept
    per_layer, outside = two - one, one - (two - one)
    n = sizes.layers
    if per_layer <= 0:
        raise PolicyError("activation measurement failed: a second layer kept no more tensors than one")
    if checkpointing:
        return int(outside + n * boundary + per_layer)
    return int(outside + n * per_layer)


def _tokens(policy, batch) -> int:
    """Tokens per sample through the towers: prompt + latent slots + fast inputs + action placeholders."""
    b = len(batch.instructions)
    pb = policy._prompt_batch(policy._frames(batch.slow_images, policy.cfg.slow_cameras, b), batch.instructions)
    fast = policy._frames(batch.fast_images, policy.cfg.fast_cameras, b)
    toks, _ = policy._fast_inputs(fast, batch.proprio)
    return int(pb.embeds.shape[1] + policy.n_slots + toks.shape[1] + policy.H * policy.D)


def kv_bytes(policy_cfg: PolicyConfig, prefix_tokens: int, dtype_bytes: int = 2) -> int:
    t = tower_sizes(policy_cfg)
    head_dim = t.head_dim or t.hidden_size // t.heads
    return 2 * t.layers * t.kv_heads * head_dim * prefix_tokens * dtype_bytes


def plan(policy_cfg: PolicyConfig, micro_batch: int, image_hw: tuple[int, int], n_arms: int = 1,
         optimizer_bytes_per_param: int = 8) -> dict:
    """The memory table of one configuration: GB per role, and on which cards each fits."""
    c = count(policy_cfg, n_arms)
    params = c.frozen_bytes + c.trainable_bytes + c.q_targets_bytes
    acts = {ck: activation_bytes(policy_cfg, micro_batch, image_hw, n_arms, ck) for ck in (False, True)}
    grads = 4 * c.trainable  # float32 gradients of the trainables
    optim = optimizer_bytes_per_param * c.trainable  # AdamW: two float32 moments (8-bit: 2 bytes)
    # the acting prefix: prompt + images + latents, a few hundred tokens
    actor = params + kv_bytes(policy_cfg, 512) + OVERHEAD_GB * GB
    learner = {ck: params + grads + optim + a + OVERHEAD_GB * GB for ck, a in acts.items()}
    ck = policy_cfg.grad_checkpointing
    out = dict(
        acting=policy_cfg.acting, dtype=policy_cfg.dtype, grad_checkpointing=ck, micro_batch=micro_batch,
        image=list(image_hw), params_b=round((c.frozen + c.trainable) / 1e9, 3),
        trainable_m=round(c.trainable / 1e6, 1),
        frozen_gb=round(c.frozen_bytes / GB, 2), trainable_gb=round(c.trainable_bytes / GB, 3),
        grads_gb=round(grads / GB, 3), optimizer_gb=round(optim / GB, 3),
        activations_gb=round(acts[False] / GB, 2), activations_ckpt_gb=round(acts[True] / GB, 2),
        overhead_gb=OVERHEAD_GB, actor_gb=round(actor / GB, 2), learner_gb=round(learner[ck] / GB, 2),
        learner_no_ckpt_gb=round(learner[False] / GB, 2), learner_ckpt_gb=round(learner[True] / GB, 2),
    )
    for card, size in CARDS.items():
        out[f"actor_fits_{card}"] = actor / GB <= size
        out[f"learner_fits_{card}"] = learner[ck] / GB <= size
        out[f"learner_no_ckpt_fits_{card}"] = learner[False] / GB <= size
    return out

