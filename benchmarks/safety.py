"""The safety layer measured at the physics over every command family. One JSON line.

A simulated robot is driven through `env.act` (so `Safety.filter` is in the loop) at rates from 10 Hz to 1 kHz,
and the simulation measures from MuJoCo's own state every physics step (`env.scene.probe`, robot/sim/scene.py
`Probe`): the TCP's distance outside the workspace box and the longest run above the force limit.

    --robot sim       franky-sim in real time behind the franky driver: the rates are wall-clock ones ("1 kHz"
                      is as fast as Python calls it), and a loaded machine slows the simulator down
    --robot lockstep  the same scenes stepped in process (robot/sim/lockstep.py): a rate is task.control_hz
                      (one env per rate, each env.act one control period of simulated time), waits are control
                      periods without a command, and the same seed gives the same numbers

    max_excursion_mm    worst TCP distance outside the box over all families        (goal ≤ 5 mm)
    max_force_hold_ms   longest contact force above robot.safety.max_force_n        (goal ≤ 200 ms)
    commands            env.act calls in all
    nonfinite_held_pct  share of the NaN/inf commands that were held                (goal 100 %)
    families            per family: excursion_mm, force_hold_ms, peak_force_n, commands, held
    reset_growth_mm     how much further out a reset that starts outside the box went than where it started
    restarts            simulator failures under load that made it start the simulator again (with why)
    load_avg_1min       the machine's load (franky-sim falls behind real time on a loaded machine)
    robot               which simulated robot

    python benchmarks/safety.py [--robot sim|lockstep] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

WALK = Path(__file__).resolve().parents[1] / "tests" / "data" / "safety_pressed_corner.json"
JUNK = [np.nan, np.inf, -np.inf, 1e9, -1e9, 1e308, -1e308, 3.4e38]


def probe(env) -> dict:
    s = env.cfg.robot.safety
    return env.scene.probe(s.box_min, s.box_max, s.max_force_n)


def pace(env) -> tuple[Callable[[], float], Callable[[float], None]]:
    """(now, wait) of the robot's clock: the wall clock for franky-sim; for the lockstep robot its simulated
    control time, and a wait runs that many control periods without a command (the arm goes on to its target)."""
    if env.cfg.robot.kind != "lockstep":
        return time.monotonic, lambda s: time.sleep(max(0.0, s))

    def wait(seconds: float) -> None:
        for _ in range(round(seconds / env.world.period)):
            env.world.advance()

    return env.clock, wait


def drive(env, action, hz: float, seconds: float, settle: float = 0.3, to_face: bool = False) -> dict:
    """env.act(action(k)) at `hz` for `seconds`; with `to_face`, first for as long as it takes (≤ 20 s: a loaded
    simulator runs slower than real time) until a face or a contact stops the target, then `seconds` more."""
    now, wait = pace(env)
    probe(env)
    t0, k, k0, held, bad, bad_held = now(), 0, 0, 0, 0, 0
    while now() - t0 < (20.0 if to_face else seconds) - 1e-9:  # (a simulated clock's sums land a hair short)
        a = action(k)
        info = env.act(a)
        if to_face and any("clipped to the workspace" in r or "external" in r for r in info.reasons):
            to_face, t0, k0 = False, now(), k
        held += info.held
        if not np.all(np.isfinite(a)):
            bad, bad_held = bad + 1, bad_held + info.held
        k += 1
        wait(t0 + (k - (0 if to_face else k0)) / hz - now())
    wait(settle)
    r = probe(env)
    return {"excursion_mm": 1000 * max(r["excursion_m"]), "force_hold_ms": 1000 * max(r["force_hold_s"]),
            "peak_force_n": max(r["peak_force_n"]), "commands": k, "held": held, "nonfinite": bad,
            "nonfinite_held": bad_held}


def merge(runs: list[dict]) -> dict:
    worst = {k: max(r[k] for r in runs) for k in ("excursion_mm", "force_hold_ms", "peak_force_n")}
    return {**worst, **{k: sum(r[k] for r in runs) for k in ("commands", "held", "nonfinite", "nonfinite_held")}}


class Sim:
    """The env of a config, made again when the simulator fails under load (counted in `restarts`). On the
    lockstep robot a rate is the env's control_hz: one env per rate, made when first asked for."""

    def __init__(self, name: str, hosts: list[str], robot: str = "sim"):
        from lastr1 import configs

        self.name, self.hosts, self.robot = name, hosts, robot
        self.cfg = configs.load(name, self._overrides())
        self.envs: dict[float, object] = {}
        self.restarts: list[str] = []

    def _overrides(self, hz: float | None = None) -> list[str]:
        over = ["--robot.sim.hosts", "[" + ", ".join(self.hosts) + "]"]
        if self.robot == "lockstep":
            over += ["--robot.kind", "lockstep"] + (["--task.control_hz", str(hz)] if hz else [])
        return over

    def _make(self, hz: float):
        from lastr1 import configs
        from lastr1.robot.factory import make_env

        return make_env(configs.load(self.name, self._overrides(hz)) if self.robot == "lockstep" else self.cfg)

    def reset(self, seed: int, hz: float | None = None):
        """The env (at `hz` on the lockstep robot; franky-sim's rate is the caller's), reset to `seed`."""
        from lastr1.robot.errors import RobotError

        key = float(hz or self.cfg.task.control_hz) if self.robot == "lockstep" else 0.0
        if key not in self.envs:
            self.envs[key] = self._make(key)
        env = self.envs[key]
        for _ in range(2):  # as the actor does: recover a refused home motion and try again
            try:
                env.reset(seed=seed)
                return env
            except RobotError:
                try:
                    env.arm.stop()
                    env.arm.recover()
                except RobotError:  # the link itself went (a starved simulator): start it again below
                    break
        try:
            env.reset(seed=seed)
        except RobotError as e:
            self.restarts.append(str(e).splitlines()[0][:200])
            env.close()
            env = self.envs[key] = self._make(key)
            env.reset(seed=seed)
        return env

    def close(self) -> None:
        for env in self.envs.values():
            env.close()


def one_arm(sim: Sim, scale: float, seed: int) -> tuple[dict, float]:
    rng = np.random.default_rng(seed)
    fam: dict[str, list[dict]] = {}

    def run(name, action, hz, seconds, reset_seed, to_face=False):
        env = sim.reset(reset_seed, hz)
        fam.setdefault(name, []).append(drive(env, action, hz, seconds * scale, to_face=to_face))

    g = 1.0  # keep the peg held
    for axis in range(3):
        for sign in (1, -1):
            a = np.zeros(7)
            a[axis], a[6] = sign, g
            run("axis_100hz", lambda k, a=a: a, 100, 1.5, 5, to_face=True)
    for corner in ([1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]):
        a = np.array([*corner, 0, 0, 0, g], float)
        run("corner_100hz", lambda k, a=a: a, 100, 1.5, 5, to_face=True)
    run("push_1khz", lambda k: np.array([1, 0, 0, 0, 0, 0, g]), 1000, 1.5, 5, to_face=True)
    run("push_1khz", lambda k: np.array([0, -1, -1, 0, 0, 0, g]), 1000, 1.5, 6, to_face=True)
    for hz, secs in ((10, 6.0), (100, 4.0), (1000, 3.0)):
        run(f"random_{hz}hz", lambda k: np.append(rng.uniform(-1.5, 1.5, 6), g), hz, secs, 7)
    run("oscillating_100hz", lambda k: np.array([(-1) ** (k // 3), (-1) ** (k // 5), (-1) ** (k // 7), 0, 0, 0, g]),
        100, 3.0, 8)
    run("rotation_extremes_100hz", lambda k: np.array([1, -1, -1, (-1) ** (k // 10), 1, (-1) ** (k // 4), g]),
        100, 1.5, 9, to_face=True)

    def malformed(k):
        a = rng.uniform(-1.5, 1.5, 7)
        a[6] = g
        if k % 3 == 0:
            a[rng.integers(7)] = JUNK[k % len(JUNK)]
        return a

    run("malformed_200hz", malformed, 200, 3.0, 3)

    # The pressed corner of issue 14: the recorded walk, then pressing down there, then up again.
    walk = json.loads(WALK.read_text())
    hz, actions = walk["control_hz"], [np.asarray(a, float) for a in walk["actions"]]
    env = sim.reset(walk["reset_seed"], hz)
    runs = [drive(env, lambda k: actions[min(k, len(actions) - 1)], hz, len(actions) / hz),
            drive(env, lambda k: np.array([0.3, -0.3, -1, 0.5 * (k < 5), 0, 0, g]), hz, 2.0)]
    if env.safety.paused:
        env.resume()
    runs.append(drive(env, lambda k: np.asarray(walk["then"]["action"], float), hz, 2.0))
    fam["pressed_corner_10hz"] = runs

    # A reset that starts outside the box (put there past the filter): how much further out did it go?
    s, growth = env.cfg.robot.safety, 0.0
    for face in ((0, 1), (1, -1)):
        env = sim.reset(0)
        st = env.arm.state()[0]
        out = st.position.copy()
        out[face[0]] = (s.box_max if face[1] > 0 else s.box_min)[face[0]] + face[1] * 0.03
        env.arm.move_to(out[None], st.quaternion[None], np.array([g]))
        env.arm.join(timeout=10)
        env.arm.stop()
        start = 1000 * env.safety.distance_to_box(env.arm.state()[0].position)
        probe(env)
        env.arm.reset(np.random.default_rng(0))
        r = probe(env)
        growth = max(growth, 1000 * max(r["excursion_m"]) - start)
    return {k: merge(v) for k, v in fam.items()}, growth


def two_arms(sim: Sim, scale: float, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    fam: dict[str, list[dict]] = {}
    # Apart (arm0 stands at y = -0.3, arm1 at +0.3) and forward-down: the box is per arm, not between arms.
    for push in ([0, -1, 0.3, 0, 0, 0, -1, 0, 1, 0.3, 0, 0, 0, -1], [1, 0, -1, 0, 0, 0, -1, 1, 0, -1, 0, 0, 0, -1]):
        env = sim.reset(0, 200)
        a = np.asarray(push, float)
        fam.setdefault("dual_push_200hz", []).append(drive(env, lambda k, a=a: a, 200, 1.5 * scale, to_face=True))
    env = sim.reset(1, 1000)
    fam["dual_random_1khz"] = [drive(env, lambda k: rng.uniform(-1.5, 1.5, 14), 1000, 3.0 * scale)]
    return {k: merge(v) for k, v in fam.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a third of the time per family")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--robot", choices=("sim", "lockstep"), default="sim",
                    help="franky-sim in real time (default) or the lockstep robot in simulated time")
    ap.add_argument("--hosts", default="127.0.0.72,127.0.0.73", help="loopback FCI addresses for the sim hosts")
    args = ap.parse_args()

    scale = 1 / 3 if args.quick else 1.0
    hosts = args.hosts.split(",")
    restarts: list[str] = []
    # One simulator at a time: two on a small machine starve each other's 1-kHz arm links.
    for name, n, family in (("sim_insert_hex", 1, one_arm), ("sim_lift_bar", 2, two_arms)):
        sim = Sim(name, hosts[:n], args.robot)
        try:
            out = family(sim, scale, args.seed)
        finally:
            sim.close()
        restarts += sim.restarts
        if name == "sim_insert_hex":
            fam, growth = out
        else:
            fam.update(out)
    total = merge(list(fam.values()))
    print(json.dumps({
        "robot": args.robot,
        "max_excursion_mm": round(total["excursion_mm"], 2),
        "max_force_hold_ms": round(total["force_hold_ms"], 1),
        "commands": total["commands"],
        "nonfinite_held_pct": round(100.0 * total["nonfinite_held"] / max(1, total["nonfinite"]), 2),
        "reset_growth_mm": round(growth, 2),
        "families": {k: {"excursion_mm": round(v["excursion_mm"], 2), "force_hold_ms": round(v["force_hold_ms"], 1),
                         "peak_force_n": round(v["peak_force_n"], 1), "commands": v["commands"], "held": v["held"]}
                     for k, v in fam.items()},
        "restarts": restarts,  # simulator failures (under load) that made the benchmark start it again
        "load_avg_1min": round(os.getloadavg()[0], 2),
    }))


if __name__ == "__main__":
    main()
