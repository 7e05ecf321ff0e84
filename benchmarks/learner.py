"""Learner throughput: updates per second (an update = 2 critic + 1 actor steps, each over `grad_accum`
micro-steps of 2 demo + 2 rollout samples, as appendix D.4), where an update's time goes (the VLA forward
that gives the critic its features, the Q-head steps, the actor step), updates per collected transition
for one actor at task.control_hz, and peak memory, on the tiny config on CPU by default. One JSON line.

    python benchmarks/learner.py [--updates 3] [--config sim_insert_hex] [--policy policy/tiny_cpu] [--image 128]
    python benchmarks/learner.py --policy policy/qwen3vl_4b --policy.model tiny --image 256   # on a GPU box

Overrides after the options (`--policy.model tiny`, `--learner.grad_accum 4`) go to the loaded config; with CUDA
the parts are timed after a device sync and the peak GPU memory is reported.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from lastr1 import configs  # noqa: E402
from lastr1.learner.replay import ReplayBuffer  # noqa: E402
from lastr1.learner.trainer import Trainer  # noqa: E402


def fill(buf: ReplayBuffer, policy, n: int, image: int, rng, intervention: bool) -> None:
    for i in range(n):
        buf.add({
            "img/front": rng.integers(0, 256, (image, image, 3), dtype=np.uint8),
            "img/wrist": rng.integers(0, 256, (image, image, 3), dtype=np.uint8),
            "proprio": rng.normal(size=8).astype(np.float32),
            "action": rng.uniform(-1, 1, (policy.H, policy.D)).astype(np.float32),
            "latents": rng.normal(size=(policy.L_max, policy.d)).astype(np.float16),
            "latent_len": np.int64(policy.L_max), "reward": np.float32(-0.05),
            "terminated": np.bool_(i % 20 == 19), "truncated": np.bool_(False),
            "intervention": np.bool_(intervention),
        }, f"bench/{i // 20}", i % 20)
    buf.commit()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="sim_insert_hex")
    ap.add_argument("--policy", default="policy/tiny_cpu", help="a config holding the policy section")
    ap.add_argument("--updates", type=int, default=3)
    ap.add_argument("--image", type=int, default=128)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args, overrides = ap.parse_known_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    # Both files are whole configs: each takes every override, and only the --policy file's policy is kept.
    cfg = configs.load(args.config, overrides)
    cfg.policy = configs.load(args.policy, overrides).policy
    from lastr1.policy import build_policy

    policy = build_policy(cfg.policy, n_arms=cfg.task.n_arms, proprio_dim=8 * cfg.task.n_arms)
    cuda = policy.device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        demo, rollout = ReplayBuffer(Path(tmp) / "d", 1000), ReplayBuffer(Path(tmp) / "r", 1000)
        fill(demo, policy, 200, args.image, rng, True)
        fill(rollout, policy, 200, args.image, rng, False)
        tr = Trainer(cfg, policy, demo, rollout)
        tr.update()  # warm-up: allocator, first-call overheads
        parts = {"critic_features_s": 0.0, "critic_heads_s": 0.0, "actor_s": 0.0}
        timed = {"critic_inputs": "critic_features_s", "critic_step": "critic_heads_s", "actor_step": "actor_s"}
        for name, key in timed.items():
            orig = getattr(tr, name)

            def clocked(*a, _orig=orig, _key=key):
                sync()
                t = time.perf_counter()
                r = _orig(*a)
                sync()
                parts[_key] += time.perf_counter() - t
                return r

            setattr(tr, name, clocked)
        sync()
        t0 = time.perf_counter()
        for _ in range(args.updates):
            tr.update()
        sync()
        dt = time.perf_counter() - t0
    lc = cfg.learner
    per_update = 2 * lc.grad_accum * (lc.micro_batch_demo + lc.micro_batch_rollout)  # the critic steps share theirs
    ups = args.updates / dt
    print(json.dumps({
        "updates_per_s": round(ups, 4), "samples_per_s": round(ups * per_update, 2),
        "seconds_per_update": round(dt / args.updates, 2), "samples_per_update": per_update,
        "updates_per_transition": round(ups / cfg.task.control_hz, 4),  # one actor at control_hz
        **{k: round(v / args.updates, 3) for k, v in parts.items()},  # seconds per update
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "config": args.policy, "image": args.image, "grad_accum": lc.grad_accum,
        "threads": torch.get_num_threads(), "device": str(policy.device),
        **({"gpu": torch.cuda.get_device_name(), "peak_gpu_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2)}
           if cuda else {}),
    }))


if __name__ == "__main__":
    main()
