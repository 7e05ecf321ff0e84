"""Control-loop period and policy latency of the RL actor at 10 Hz on the simulated robot, without and with a
hot reload every second, side by side in one run. Prints one JSON line.

The whole actor runs as in `lastr1 actor`: franky-sim host + the real franky driver, sim cameras, the tiny
policy (slow/fast schedule, receding horizon), transitions over a real loopback ActorLink → LearnerLink
(which acknowledges them), and in the second phase the LearnerLink publishes a new adapter every second
that the actor stages on its reload thread and swaps in at a chunk boundary.

    p99_error_pct_with_reload = |p99 period with reload − nominal period| / nominal period × 100   (goal < 10)

It also times the two halves of a reload for the tiny adapter as used, and for a ~100 MB adapter (the size of
LoRA r=16 + heads on Qwen3-VL-4B): `stage` (sha256, safetensors parse, finite check — on the reload thread)
against `apply` (the in-place copy — the only part inside the loop), which is why reloading never stalls a tick.

    python benchmarks/actor.py [--seconds 30] [--config sim_insert_hex]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _phase(cfg, env, policy, learner, seconds: float, reload_every_s: float | None, src) -> dict:
    from actor.learner_sink import TransitionSink
    from actor.reload import HotReloader
    from actor.run import make_agent, make_link
    from actor.runtime import Runtime
    from transport.messages import Weights

    link = make_link(cfg)
    reloader = HotReloader(policy, link.latest_weights, cfg.actor.reload_poll_s)
    rt = Runtime(cfg, env, agent=make_agent(cfg, policy), sink=TransitionSink(link, policy.H, policy.L_max, policy.d),
                 reloader=reloader, mode="rl")
    stop = threading.Event()
    published = []

    def publish():
        v = policy.version
        while not stop.wait(reload_every_s):
            v += 1
            with torch_no_grad():
                for p in src.trainable_parameters():
                    p.add_(0.001)
            blob = src.export_adapter(v)
            learner.publish_weights(Weights.create(blob.data, v))
            published.append(v)

    pub = threading.Thread(target=publish, daemon=True) if reload_every_s else None
    timer = threading.Timer(seconds, stop.set)
    with reloader:
        timer.start()
        if pub:
            pub.start()
        rt.run(stop)
    timer.cancel()
    if pub:
        pub.join()
    link.close(timeout_s=5.0)
    periods = rt.rate.periods_ms.values()
    return dict(periods=periods, latency=rt.latency_ms.values(), reason=rt.reason_ms.values(), act=rt.act_ms.values(),
                applied=reloader.applied, published=len(published), max_apply_ms=reloader.max_apply_ms,
                stage_ms=reloader.last_stage_ms, overruns=rt.rate.overruns, steps=rt.total_steps,
                episodes=len(rt.episodes))


def torch_no_grad():
    import torch

    return torch.no_grad()


def _large_adapter(mb: float = 100.0, reps: int = 3) -> dict:
    """Stage vs apply for an adapter of LoRA-on-4B size, through the same HotReloader code."""
    import torch
    from torch import nn

    from actor.reload import HotReloader
    from policy import adapter as adapter_io

    class Holder(nn.Module):  # just the trainable tensors an adapter carries, in the shapes LoRA gives them
        def __init__(self):
            super().__init__()
            n = int(mb * 2**20 / 4 / (16 * 2560 * 2))
            self.p = nn.ParameterList([nn.Parameter(torch.zeros(16, 2560)) for _ in range(2 * n)])
            self.version = 0
            self._lock = threading.RLock()

        def trainable_state(self):
            return {n: p for n, p in self.named_parameters()}

    h = Holder()
    src = {k: torch.randn_like(v) for k, v in h.trainable_state().items()}
    stage, apply, load_all = [], [], []
    for i in range(reps):
        blob = adapter_io.pack(src, i + 1)
        rl = HotReloader(h, lambda: None)
        t0 = time.perf_counter()
        rl._staged = rl.stage(blob)
        stage.append((time.perf_counter() - t0) * 1e3)
        rl.apply()
        apply.append(rl.last_apply_ms)
        load_all.append(stage[-1] + apply[-1])
    return dict(large_adapter_mb=round(len(blob.data) / 2**20, 1), large_stage_ms=round(float(np.median(stage)), 2),
                large_apply_ms=round(float(np.median(apply)), 2))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=30.0, help="per phase")
    ap.add_argument("--config", default="sim_insert_hex")
    ap.add_argument("--host", default="127.0.7.2", help="loopback address of the sim arm")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    os.environ.setdefault("MUJOCO_GL", "egl")

    import configs
    from policy import Policy
    from robot.env import make_env
    from transport.learner_link import LearnerLink

    tmp = tempfile.mkdtemp(prefix="lastr1-bench-actor-")
    cfg = configs.load(args.config, [
        "--run_dir", tmp, "--robot.sim.hosts", f"[{args.host}]", "--transport.insecure", "true",
        "--robot.sim.intervention_rate", "0.0", "--task.max_episode_steps", "100000", "--task.control_hz", "10",
    ])
    cfg.policy = configs.load("policy/tiny_cpu").policy
    learner = LearnerLink(cfg.transport, port=0, bind_host="127.0.0.1")
    cfg.transport.port = learner.port
    stop = threading.Event()

    def drain():
        while not stop.is_set():
            learner.ack(learner.recv(timeout_s=0.05))

    threading.Thread(target=drain, daemon=True).start()
    env = make_env(cfg)
    try:
        policy = Policy.from_config(cfg.policy, n_arms=cfg.task.n_arms, proprio_dim=8 * cfg.task.n_arms)
        src = Policy.from_config(cfg.policy, n_arms=cfg.task.n_arms, proprio_dim=8 * cfg.task.n_arms)
        adapter_bytes = len(policy.export_adapter(0).data)
        base = _phase(cfg, env, policy, learner, args.seconds, None, src)
        rel = _phase(cfg, env, policy, learner, args.seconds, 1.0, src)
    finally:
        stop.set()
        env.close()
        learner.close()
    nominal = 1e3 / cfg.task.control_hz

    def pct(x, q):
        return round(float(np.percentile(x, q)), 2) if len(x) else None

    p99_rel = pct(rel["periods"], 99)
    out = dict(
        period_p50_ms=pct(base["periods"], 50), period_p99_ms=pct(base["periods"], 99),
        period_p99_ms_with_reload=p99_rel, period_p50_ms_with_reload=pct(rel["periods"], 50),
        policy_latency_p50_ms=pct(base["latency"], 50), policy_latency_p99_ms=pct(base["latency"], 99),
        reason_step_p50_ms=pct(base["reason"], 50), act_step_p50_ms=pct(base["act"], 50),
        p99_error_pct_with_reload=round(abs(p99_rel - nominal) / nominal * 100, 2),
        nominal_period_ms=nominal, ticks=len(base["periods"]), ticks_with_reload=len(rel["periods"]),
        overruns=base["overruns"], overruns_with_reload=rel["overruns"],
        reloads_published=rel["published"], reloads_applied=rel["applied"],
        reload_apply_max_ms=round(rel["max_apply_ms"], 3), reload_stage_ms=round(rel["stage_ms"], 2),
        adapter_mb=round(adapter_bytes / 2**20, 2), **_large_adapter(),
        policy="tiny_cpu", cpu_cores=os.cpu_count(), load_avg_1m=round(os.getloadavg()[0], 2),
    )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
