"""The GPU box's memory plan for the 4B policy, and (when CUDA is present) its speed. One JSON line per
configuration; the last line is the configuration the README recommends for an RTX 4090.

    python benchmarks/gpu.py                      # plan for configs/policy/qwen3vl_4b.yaml (meta device + CPU)
    python benchmarks/gpu.py --config real/insert_hex --policy.model /models/Qwen3-VL-4B-Instruct

Memory (policy/memory.py): parameters per role from the policy built on the meta device; the activations a
learner micro-batch (appendix D.4: 2 demo + 2 rollout samples) keeps for backward, measured on CPU with 1 and 2
layers and extrapolated; gradients and AdamW states of the trainables; a fixed 1.5 GB CUDA overhead. Speed,
only where `torch.cuda.is_available()`: reason/act latency and learner updates/s on the real 4B shapes with
random weights (nothing downloaded), peak memory measured beside the plan's figure.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from lastr1 import configs
from lastr1.policy import memory

# DINOv3 ViT-7B/16 (facebook/dinov3-vit7b16-pretrain-lvd1689m): the only DINOv3 wide enough (4096) for the
# 4B tower's k = 2560 top-k channels; `lastr1 latents` runs it alone, before the learner starts.
DINOV3_7B = dict(hidden_size=4096, num_hidden_layers=40, num_attention_heads=32, intermediate_size=8192,
                 use_gated_mlp=True, patch_size=16, num_register_tokens=4)


def teacher_gb(sizes: dict) -> float:
    from transformers import DINOv3ViTConfig, DINOv3ViTModel

    with torch.device("meta"):
        model = DINOv3ViTModel(DINOv3ViTConfig(**sizes))
    return round(sum(p.numel() for p in model.parameters()) * 2 / memory.GB, 2)  # bfloat16


def speed(cfg, micro_batch: int, side: int, iters: int) -> dict:
    """Reason/act latency and learner actor-updates/s (one micro-batch each, forward + backward + AdamW)."""
    from lastr1.policy import TrainBatch, build_policy

    dev = cfg.policy.device
    sync = torch.cuda.synchronize if dev.startswith("cuda") else (lambda: None)
    if dev.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    policy = build_policy(cfg.policy, n_arms=cfg.task.n_arms)
    rng = np.random.default_rng(0)
    img = {c: rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
           for c in {*cfg.policy.slow_cameras, *cfg.policy.fast_cameras}}
    proprio = np.zeros(policy.proprio_dim, np.float32)
    slow = {c: img[c] for c in cfg.policy.slow_cameras}
    fast = {c: img[c] for c in cfg.policy.fast_cameras}

    def timed(fn) -> float:
        fn()
        sync()
        ts = []
        for _ in range(iters):
            t = time.perf_counter()
            fn()
            sync()
            ts.append(time.perf_counter() - t)
        return float(np.median(ts))

    prefix = policy.reason(slow, cfg.task.instruction)
    reason_ms = 1000 * timed(lambda: policy.reason(slow, cfg.task.instruction))
    # Where reasoning's time goes: the prompt's prefill (what Action-Only runs) against the one-token steps of
    # the latent chain (G latents and one <latent_end> per group, each a pass of every layer).
    mode, policy.cfg.latent_mode = policy.cfg.latent_mode, "off"
    prefill_ms = 1000 * timed(lambda: policy.reason(slow, cfg.task.instruction))
    policy.cfg.latent_mode = mode
    # Every group computed (greedy stops at the first sure exit; an unsure tower computes all), not the chosen
    # length: each group is G latent steps and one <latent_end> step.
    steps = prefix.exit_logits.numel() * (policy.G + 1)
    act_ms = 1000 * timed(lambda: policy.act(prefix, fast, proprio))
    batched = {c: np.stack([x] * micro_batch) for c, x in img.items()}
    batch = TrainBatch(slow_images=batched, instructions=[cfg.task.instruction] * micro_batch, fast_images=batched,
                       proprio=np.zeros((micro_batch, policy.proprio_dim), np.float32),
                       latents=torch.zeros(micro_batch, policy.L_max, policy.d),
                       latent_len=np.full(micro_batch, policy.L_max))
    opt = torch.optim.AdamW(policy.trainable_parameters(), lr=1e-5)

    def update():
        opt.zero_grad(set_to_none=True)
        out = policy.forward_train(batch)
        out.action_logits.float().logsumexp(-1).mean().backward()
        opt.step()

    update_s = timed(update)
    out = dict(reason_ms=round(reason_ms, 1), prefill_ms=round(prefill_ms, 1), latent_steps=steps,
               ms_per_latent_step=round((reason_ms - prefill_ms) / max(steps, 1), 2), act_ms=round(act_ms, 1),
               micro_updates_per_s=round(1 / update_s, 2),
               updates_per_s_d4=round(1 / (update_s * cfg.learner.grad_accum * 3), 4))  # 1 actor + 2 critic
    if dev.startswith("cuda"):
        out.update(gpu=torch.cuda.get_device_name(),
                   peak_gpu_gb=round(torch.cuda.max_memory_allocated() / memory.GB, 2))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--config", default="policy/qwen3vl_4b")
    ap.add_argument("--image", type=int, default=256, help="camera frame side the policy sees (paper: 256)")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--no-speed", action="store_true", help="the plan only, even with a GPU")
    args, overrides = ap.parse_known_args()
    cfg = configs.load(args.config, overrides)
    if cfg.policy.model != "tiny" and not (Path(cfg.policy.model).expanduser() / "config.json").is_file():
        print(f"{cfg.policy.model} is not here: the plan uses the config's `policy.tiny` shape", file=sys.stderr)
        cfg.policy.model = "tiny"  # nothing is downloaded: random weights of the 4B shape
    mb = cfg.learner.micro_batch_demo + cfg.learner.micro_batch_rollout
    hw = (args.image, args.image)
    lines = []
    # Shared backbone as configured, then the separate expert with gradient checkpointing (the 4090 setting;
    # the same line carries the expert's figures without it: learner_no_ckpt_*).
    for acting, ckpt in (("shared", False), ("expert", True)):
        pc = configs.build(type(cfg.policy), configs.to_dict(cfg.policy), "policy")
        pc.acting, pc.grad_checkpointing = acting, ckpt  # type: ignore[assignment]
        p = memory.plan(pc, mb, hw, cfg.task.n_arms)
        p.update(teacher_7b_gb=teacher_gb(DINOV3_7B), config=args.config, model=cfg.policy.model)
        if not args.no_speed and torch.cuda.is_available():
            pc.device = "cuda"
            cfg.policy = pc
            p.update(speed(cfg, mb, args.image, args.iters))
            torch.cuda.empty_cache()
        lines.append(p)
    for p in lines:  # the 4090 recommendation (expert + gradient checkpointing) last
        print(json.dumps(p), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
