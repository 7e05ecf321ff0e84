"""Latency of the dual system: a full step (reasoning + acting) against a fast step (acting on the cached
prefix), adapter export/load, peak memory. Prints one JSON line.

    python benchmarks/policy.py                       # tiny random tower on CPU (goal: fast_speedup ≥ 4)
    python benchmarks/policy.py --shape 4b            # random Qwen3-VL-4B-shaped policy, bf16, on cuda
    python benchmarks/policy.py --shape 4b --meta     # build it on the meta device: shapes/params only

Nothing is downloaded: the 4B shape comes from configs/policy/qwen3vl_4b.yaml's `tiny` block with random
weights (latency does not depend on the weights' values). Greedy decoding as on the robot; the random exit
head never reaches τ, so every latent group is computed (the slowest case of the adaptive exit).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import numpy as np  # noqa: E402
import torch  # noqa: E402

from lastr1 import configs  # noqa: E402


def _timer(device: str):
    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def measure(fn, iters: int) -> float:
        fn()  # warm-up (allocator, kernels)
        sync()
        times = []
        for _ in range(iters):
            t = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - t)
        return 1000 * float(np.median(times))

    return measure


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", choices=["tiny", "4b"], default="tiny")
    ap.add_argument("--device", help="default: cpu for tiny, cuda for 4b")
    ap.add_argument("--acting", choices=["expert", "shared"], default="expert")
    ap.add_argument("--image", type=int, help="camera frame side (default 128 tiny, 256 4b)")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--meta", action="store_true", help="build on the meta device and report shapes only")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    name = "policy/tiny_cpu" if args.shape == "tiny" else "policy/qwen3vl_4b"
    device = "meta" if args.meta else args.device or ("cpu" if args.shape == "tiny" else "cuda")
    cfg = configs.load(name, ["--policy.model", "tiny", "--policy.device", device, "--policy.acting", args.acting])
    from lastr1.policy import build_policy

    t0 = time.perf_counter()
    policy = build_policy(cfg.policy, n_arms=1, proprio_dim=8)
    build_s = time.perf_counter() - t0
    params = sum(p.numel() for p in policy.parameters())
    trainable = sum(p.numel() for p in policy.trainable_parameters())
    out = dict(shape=args.shape, device=device, acting=args.acting, dtype=cfg.policy.dtype,
               params_m=round(params / 1e6, 2), trainable_m=round(trainable / 1e6, 2), build_s=round(build_s, 2))
    if args.meta:
        out["kv_geometry"] = list(__import__("lastr1.policy.hf_compat", fromlist=["x"]).kv_geometry(policy.vlm))
        print(json.dumps(out))
        return 0

    side = args.image or (128 if args.shape == "tiny" else 256)
    rng = np.random.default_rng(0)
    front = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
    wrist = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
    proprio = rng.normal(size=8).astype(np.float32)
    instruction = cfg.task.instruction
    measure = _timer(device)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()

    prefix = policy.reason({"front": front}, instruction)

    def full():
        pre = policy.reason({"front": front}, instruction)
        policy.act(pre, {"wrist": wrist}, proprio)

    def fast():
        policy.act(prefix, {"wrist": wrist}, proprio)

    # side by side, interleaved rounds so load changes on a shared machine hit both alike
    fulls, fasts = [], []
    for _ in range(3):
        fulls.append(measure(full, args.iters))
        fasts.append(measure(fast, args.iters))
    full_ms, fast_ms = float(np.median(fulls)), float(np.median(fasts))
    reason_ms = measure(lambda: policy.reason({"front": front}, instruction), args.iters)
    blob = policy.export_adapter(1)
    export_ms = measure(lambda: policy.export_adapter(1), max(3, args.iters // 2))
    load_ms = measure(lambda: policy.load_adapter(blob), max(3, args.iters // 2))
    out.update(
        image=side, latent_len=prefix.latent_len, prefix_tokens=int(prefix.kv[0][0].shape[2]),
        full_step_ms=round(full_ms, 2), fast_step_ms=round(fast_ms, 2), fast_speedup=round(full_ms / fast_ms, 2),
        reason_ms=round(reason_ms, 2), adapter_export_ms=round(export_ms, 2), adapter_load_ms=round(load_ms, 2),
        adapter_mb=round(len(blob.data) / 2**20, 2),
        peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    )
    if device.startswith("cuda"):
        out["gpu"] = torch.cuda.get_device_name()
        out["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
