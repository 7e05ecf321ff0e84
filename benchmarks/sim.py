"""Simulated robot throughput: env steps per second and the control-loop period at 10 Hz. One JSON line.

The whole simulated robot as the actor uses it: the franky-sim server process, the real franky driver on
loopback, both cameras rendered by the server (EGL, 128 px), the scripted expert choosing each action.

    steps_per_s     back-to-back env steps, each = the expert's action through safety to one asynchronous arm
                    motion + a fresh render of both cameras + a state read (what a step costs, unpaced)
    period_p50_ms,  tick-to-tick period of a 10-Hz loop (observe → expert → act → sleep to the next tick),
    period_p99_ms   as the actor runs it                                         (goals: ≥ 10 steps/s, p99 ≤ 110 ms)
    work_p99_ms     the busy part of a tick (observe + expert + act)
    render_ms_p50   one server render of both cameras
    real_time_factor  simulated seconds per wall second during the 10-Hz loop (franky-sim's 1-kHz Python loop
                    falls behind real time on a loaded machine; the loop still runs at 10 Hz of wall time)
    load_avg_1min   the machine's load while measuring (2 cores shared with other work: read figures with it)

    python benchmarks/sim.py [--config sim_insert_hex] [--steps 100] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="sim_insert_hex")
    ap.add_argument("--steps", type=int, default=100, help="back-to-back steps for steps_per_s")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of the 10-Hz loop")
    ap.add_argument("--hz", type=float, default=10.0)
    ap.add_argument("--hosts", default="127.0.0.62,127.0.0.63", help="loopback FCI addresses for the sim server")
    args = ap.parse_args()

    from lastr1 import configs
    from lastr1.robot.factory import make_env

    cfg = configs.load(args.config, ["--robot.sim.hosts", "[" + args.hosts + "]"])
    env = make_env(cfg)
    seed = 0
    try:
        env.reset(seed=seed)

        def next_episode_if_done():
            nonlocal seed
            if env.keys.poll():
                seed += 1
                env.reset(seed=seed)

        # --- unpaced steps with fresh renders
        step_s, render_s = [], []
        for _ in range(args.steps):
            t0 = time.perf_counter()
            env.act(env.scene.expert_action())
            t1 = time.perf_counter()
            reply = env.scene.server.render()
            t2 = time.perf_counter()
            env.arm.state()
            step_s.append(time.perf_counter() - t0)
            render_s.append(t2 - t1)
            assert len(reply["images"]) == len(env.camera_names)
            next_episode_if_done()

        # --- the 10-Hz loop (a reset ends a segment: it is not a control tick)
        env.reset(seed=seed)
        period = 1.0 / args.hz
        segments, seg, work = [], [], []
        sim_dt = wall_dt = 0.0
        seg_sim, seg_wall = env.scene.server.scene()["time"], time.monotonic()
        end = time.monotonic() + args.seconds
        next_t = time.monotonic()
        while time.monotonic() < end:
            time.sleep(max(0.0, next_t - time.monotonic()))
            tick = time.monotonic()
            seg.append(tick)
            obs = env.observe()
            env.act(env.scene.expert_action(obs.states))
            work.append(time.monotonic() - tick)
            next_t = max(next_t + period, time.monotonic())  # behind schedule: no catch-up burst
            if env.keys.poll():
                sim_dt += env.scene.server.scene()["time"] - seg_sim
                wall_dt += time.monotonic() - seg_wall
                segments.append(seg)
                seg = []
                seed += 1
                env.reset(seed=seed)
                seg_sim, seg_wall = env.scene.server.scene()["time"], time.monotonic()
                next_t = time.monotonic()
        segments.append(seg)
        sim_dt += env.scene.server.scene()["time"] - seg_sim
        wall_dt += time.monotonic() - seg_wall
        rtf = sim_dt / wall_dt
    finally:
        env.close()

    periods = [b - a for seg in segments for a, b in zip(seg, seg[1:])]
    ms = lambda xs, q: round(float(np.percentile(np.asarray(xs) * 1000.0, q)), 1)  # noqa: E731
    print(json.dumps({
        "benchmark": "sim",
        "config": args.config,
        "steps_per_s": round(len(step_s) / sum(step_s), 1),
        "period_p50_ms": ms(periods, 50),
        "period_p99_ms": ms(periods, 99),
        "work_p99_ms": ms(work, 99),
        "render_ms_p50": ms(render_s, 50),
        "real_time_factor": round(rtf, 2),
        "ticks": len(periods),
        "load_avg_1min": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }))


if __name__ == "__main__":
    main()
