"""Control-loop period and policy latency of the RL actor at 10 Hz on the simulated robot: plain, with a hot
reload every second, and with the rerun view on (every step logged, JPEG-encoded into a recording file, as
`--view FILE.rrd` and `lastr1 eval` do), side by side in one run. Prints one JSON line.

The whole actor runs as in `lastr1 actor`: franky-sim server + the real franky driver, sim cameras, the tiny
policy (slow/fast schedule, receding horizon), transitions over a real loopback ActorLink → LearnerLink
(which acknowledges them), and in the second phase the LearnerLink publishes a new adapter every second
that the actor stages on its reload thread and swaps in at a chunk boundary.

    p99_error_pct_with_reload = |p99 period with reload − nominal period| / nominal period × 100   (goal < 10)
    view_error_change_pts = |p99_error_pct_with_view − p99_error_pct|                            (goal ≤ 1)

It also times the two halves of a reload for the tiny adapter as used, and for a ~100 MB adapter (the size of
LoRA r=16 + heads on Qwen3-VL-4B): `stage` (sha256, safetensors parse, finite check — on the reload thread)
against `apply` (the in-place copy — the only part inside the loop), which is why reloading never stalls a tick.

    python benchmarks/actor.py [--blocks 3] [--block-seconds 10] [--config sim_insert_hex]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import threading
import time

import numpy as np


def _learner(conn, transport: dict, policy_cfg: dict, n_arms: int) -> None:
    """The learner's side in its own process (as on the GPU box): acknowledge every transition and, between
    "publish" and "stop", publish a new adapter every second."""
    import torch

    from lastr1 import configs
    from lastr1.configs.policy import PolicyConfig
    from lastr1.configs.transport import TransportConfig
    from lastr1.policy import build_policy
    from lastr1.transport.learner_link import LearnerLink
    from lastr1.transport.messages import Weights

    link = LearnerLink(configs.build(TransportConfig, transport), port=0, bind_host="127.0.0.1")
    src = build_policy(configs.build(PolicyConfig, policy_cfg), n_arms=n_arms, proprio_dim=8 * n_arms)
    # The adapters are made before the clock runs: what is measured is the actor's cost of a reload, not the
    # learner's (on the GPU box) cost of exporting one.
    blobs = []
    with torch.no_grad():
        for v in range(1, 121):
            for p in src.trainable_parameters():
                p.add_(0.001)
            blobs.append(Weights.create(src.export_adapter(v).data, v))
    conn.send(link.port)
    version, period, next_at = 0, None, 0.0
    while True:
        link.ack(link.recv(timeout_s=0.02))
        if conn.poll():
            cmd = conn.recv()
            if cmd == "quit":
                break
            period = cmd if cmd else None
            conn.send(version)
            next_at = time.monotonic() + (period or 0)
        if period and time.monotonic() >= next_at:
            next_at += period
            version += 1
            link.publish_weights(blobs[version - 1])
    link.close()


def _phase(cfg, env, policy, link, seconds: float, view=None) -> dict:
    from lastr1.actor.learner_sink import TransitionSink
    from lastr1.actor.loop import Runtime
    from lastr1.actor.process import make_agent
    from lastr1.actor.reload import HotReloader
    from lastr1.actor.view import tee

    reloader = HotReloader(policy, link.latest_weights, cfg.actor.reload_poll_s)
    sink = tee(TransitionSink(link, policy.H, policy.L_max, policy.d), view)
    rt = Runtime(cfg, env, agent=make_agent(cfg, policy), sink=sink, reloader=reloader, mode="rl")
    stop = threading.Event()
    timer = threading.Timer(seconds, stop.set)
    with reloader:
        timer.start()
        rt.run(stop)
    timer.cancel()
    return dict(periods=list(rt.rate.periods_ms.values()), latency=list(rt.latency_ms.values()),
                work=list(rt.work_ms.values()),
                reason=list(rt.reason_ms.values()), act=list(rt.act_ms.values()), applied=reloader.applied,
                max_apply_ms=reloader.max_apply_ms, stage_ms=[reloader.last_stage_ms] if reloader.applied else [],
                overruns=rt.rate.overruns)


def _merge(parts: list[dict]) -> dict:
    out = {k: [] for k in ("periods", "latency", "reason", "act", "stage_ms", "work")}
    for p in parts:
        for k in out:
            out[k] += p[k]
    out.update(applied=sum(p["applied"] for p in parts), overruns=sum(p["overruns"] for p in parts),
               max_apply_ms=max(p["max_apply_ms"] for p in parts))
    return out


def _large_adapter(mb: float = 100.0, reps: int = 3) -> dict:
    """Stage vs apply for an adapter of LoRA-on-4B size, through the same HotReloader code."""
    import torch
    from torch import nn

    from lastr1.actor.reload import HotReloader
    from lastr1.policy import Policy
    from lastr1.policy import adapter as adapter_io

    class Holder(nn.Module):  # just the trainable tensors an adapter carries, in the shapes LoRA gives them
        def __init__(self):
            super().__init__()
            n = int(mb * 2**20 / 4 / (16 * 2560 * 2))
            self.p = nn.ParameterList([nn.Parameter(torch.zeros(16, 2560)) for _ in range(2 * n)])
            self.version = 0
            self._lock = threading.RLock()

        def trainable_state(self):
            return {n: p for n, p in self.named_parameters()}

        swap = Policy.swap  # the policy's own in-place copy, on just these tensors

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
    ap.add_argument("--blocks", type=int, default=3, help="blocks per condition (they alternate)")
    ap.add_argument("--block-seconds", type=float, default=10.0)
    ap.add_argument("--config", default="sim_insert_hex")
    ap.add_argument("--host", default="127.0.7.2", help="loopback address of the sim arm")
    args = ap.parse_args()
    logging.basicConfig(level=getattr(logging, os.environ.get("LOGLEVEL", "ERROR")))
    os.environ.setdefault("MUJOCO_GL", "egl")

    import multiprocessing as mp

    from lastr1 import configs
    from lastr1.actor.process import make_link
    from lastr1.policy import build_policy
    from lastr1.robot.factory import make_env

    tmp = tempfile.mkdtemp(prefix="lastr1-bench-actor-")
    cfg = configs.load(args.config, [
        "--run_dir", tmp, "--robot.sim.hosts", f"[{args.host}]", "--transport.insecure", "true",
        "--robot.sim.intervention_rate", "0.0", "--task.max_episode_steps", "100000", "--task.control_hz", "10",
        # The scripted operator computes the expert's action on every read (a scene RPC, 3-50 ms): a sim-only
        # cost a SpaceMouse read (µs) does not have, so it is left out of the loop measured here.
        "--actor.interventions", "false",
    ])
    cfg.policy = configs.load("policy/tiny_cpu").policy
    ctx = mp.get_context("spawn")
    conn, child = ctx.Pipe()
    proc = ctx.Process(target=_learner, args=(child, configs.to_dict(cfg.transport), configs.to_dict(cfg.policy),
                                              cfg.task.n_arms), daemon=True)
    proc.start()
    env = None
    try:
        if not conn.poll(120):
            raise RuntimeError("the learner process did not start")
        cfg.transport.port = conn.recv()
        env = make_env(cfg)
        policy = build_policy(cfg.policy, n_arms=cfg.task.n_arms, proprio_dim=8 * cfg.task.n_arms)
        adapter_bytes = len(policy.export_adapter(0).data)
        link = make_link(cfg)
        from lastr1.actor.view import View

        view = View.open(cfg, os.path.join(tmp, "view.rrd"))
        parts: dict[str, list] = {"base": [], "reload": [], "view": []}
        published = 0
        # Blocks take turns (plain, reloads, view), so all three see the same background load of the machine.
        for b in range(3 * args.blocks):
            kind = ("base", "reload", "view")[b % 3]
            conn.send(1.0 if kind == "reload" else 0)  # the learner publishes every second during reload blocks
            conn.recv()
            parts[kind].append(_phase(cfg, env, policy, link, args.block_seconds,
                                      view if kind == "view" else None))
        conn.send(0)
        published = conn.recv()
        link.close(timeout_s=5.0)
        view.close()
        base, rel, viewed = _merge(parts["base"]), _merge(parts["reload"]), _merge(parts["view"])
    finally:
        conn.send("quit")
        proc.join(10)
        if env is not None:
            env.close()
    nominal = 1e3 / cfg.task.control_hz

    def pct(x, q):
        return round(float(np.percentile(x, q)), 2) if len(x) else None

    p99_rel = pct(rel["periods"], 99)

    def err(periods):
        return round(abs(pct(periods, 99) - nominal) / nominal * 100, 2)

    out = dict(
        period_p50_ms=pct(base["periods"], 50), period_p99_ms=pct(base["periods"], 99),
        period_p99_ms_with_reload=p99_rel, period_p50_ms_with_reload=pct(rel["periods"], 50),
        policy_latency_p50_ms=pct(base["latency"], 50), policy_latency_p99_ms=pct(base["latency"], 99),
        reason_step_p50_ms=pct(base["reason"], 50), act_step_p50_ms=pct(base["act"], 50),
        tick_work_p99_ms=pct(base["work"], 99), tick_work_p99_ms_with_reload=pct(rel["work"], 99),
        p99_error_pct_with_reload=round(abs(p99_rel - nominal) / nominal * 100, 2),
        p99_error_pct=err(base["periods"]), p99_error_pct_with_view=err(viewed["periods"]),
        view_error_change_pts=round(abs(err(viewed["periods"]) - err(base["periods"])), 2),
        period_p99_ms_with_view=pct(viewed["periods"], 99), tick_work_p99_ms_with_view=pct(viewed["work"], 99),
        ticks_with_view=len(viewed["periods"]), view_steps_logged=view.logged, view_steps_dropped=view.dropped,
        view_rrd_mb=round(os.path.getsize(os.path.join(tmp, "view.rrd")) / 2**20, 2),
        nominal_period_ms=nominal, ticks=len(base["periods"]), ticks_with_reload=len(rel["periods"]),
        late_ticks=int(np.sum(np.asarray(base["periods"]) > 1.1 * nominal)),
        late_ticks_with_reload=int(np.sum(np.asarray(rel["periods"]) > 1.1 * nominal)),
        overruns=base["overruns"], overruns_with_reload=rel["overruns"],
        reloads_published=published, reloads_applied=rel["applied"],
        reload_apply_max_ms=round(rel["max_apply_ms"], 3), reload_stage_ms=pct(rel["stage_ms"], 50),
        adapter_mb=round(adapter_bytes / 2**20, 2), **_large_adapter(),
        policy="tiny_cpu", cpu_cores=os.cpu_count(), load_avg_1m=round(os.getloadavg()[0], 2),
    )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
