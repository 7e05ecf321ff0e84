"""`lastr1 demo`: the whole human-in-the-loop loop on the simulated robot, on any laptop, in one command.

It runs the same subcommands a lab runs, in the order a lab runs them, each as its own process (as on a
real robot PC and GPU box): CurveZMQ keys → demonstrations by the scripted expert → DINOv3 latent targets →
warm-up → learner and actor together on loopback, the scripted operator intervening, for a set time →
evaluation of the warm-up policy and of the post-trained one. Every file lands in one run folder.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from lastr1 import configs
from lastr1.errors import Lastr1Error

if TYPE_CHECKING:
    from lastr1.configs.schema import Config


class DemoError(Lastr1Error):
    pass


class Stage:
    """One `lastr1 …` child process with its output in the run folder's logs/."""

    def __init__(self, run_dir: Path, config: Path | None, name: str, argv: list[str], nice: int = 0):
        self.name = name
        self.nice = nice
        with_config = ["--config", str(config)] if config is not None else []
        self.cmd = [sys.executable, "-m", "lastr1.cli", argv[0], *with_config, *argv[1:]]
        self.log = run_dir / "logs" / f"{name}.log"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen | None = None

    def start(self) -> Stage:
        env = dict(os.environ)
        env.setdefault("MUJOCO_GL", "egl")
        # Several processes share few cores: torch's intra-op threads would only contend with each other.
        env.setdefault("OMP_NUM_THREADS", "1")
        env["PYTHONUNBUFFERED"] = "1"
        self._out = open(self.log, "w")
        self._out.write("$ " + shlex.join(self.cmd) + "\n")
        self._out.flush()
        self.proc = subprocess.Popen(self.cmd, stdout=self._out, stderr=subprocess.STDOUT, env=env,
                                     preexec_fn=(lambda: os.nice(self.nice)) if self.nice else None)
        return self

    def wait(self, timeout: float | None = None) -> int:
        assert self.proc is not None
        rc = self.proc.wait(timeout)
        self._out.close()
        if rc != 0:
            tail = "".join(self.log.read_text().splitlines(True)[-15:])
            raise DemoError(f"stage {self.name!r} failed (exit {rc}); the end of {self.log}:\n{tail}",
                            hint=f"rerun it alone: {shlex.join(self.cmd)}")
        return rc

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM (the learner saves its checkpoint on it), then wait."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def start_checked(self, grace_s: float = 2.0) -> Stage:
        """Start a long-running stage (the learner) and give it `grace_s` to fail on its config or files."""
        self.start()
        assert self.proc is not None
        time.sleep(grace_s)
        if self.proc.poll() is not None:
            self.wait()  # raises DemoError with the end of its log
        return self

    def run(self) -> int:
        t0 = time.monotonic()
        print(f"  {self.name:<10} ", end="", flush=True)
        self.start()
        try:
            rc = self.wait()
        except BaseException:
            self.stop(timeout=10)  # interrupted or failed: never leave a stage (and its simulator) behind
            raise
        print(f"done in {time.monotonic() - t0:5.1f} s   (log: {self.log})")
        return rc


def run_demo(cfg: Config, run_dir: Path, *, demos: int, minutes: float, rollouts: int, baseline: bool = True,
             view: bool = False) -> dict:
    """Every stage in `run_dir` (a new folder): keys, `demos` demonstrations, latents, warm-up, the loop for
    `minutes`, evaluations of `rollouts` each; returns the summary it also writes to demo_summary.json."""
    if (run_dir / "learner").exists():
        raise DemoError(f"{run_dir} already holds a run", hint="pass a new --run-dir")
    cfg.run_dir = str(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    config = run_dir / "config.yaml"
    config.write_text("# the effective config of this demo run; every stage reads it\n"
                      + yaml.safe_dump(configs.to_dict(cfg), sort_keys=False))
    warm = run_dir / cfg.policy.warmup.out
    learned = run_dir / "learner" / "checkpoint" / "policy"
    print(f"lastr1 demo: {cfg.task.name} on the simulated robot -> {run_dir}")
    t_start = time.monotonic()

    def stage(name, *argv):
        return Stage(run_dir, config, name, list(argv))

    # The stages that move the robot run one at a time (one port); the learner has its own (learner/view.py).
    watch = ["--view", "web"] if view else []

    Stage(run_dir, None, "keys", ["keys", "--dir", str(cfg.path(cfg.transport.keys_dir)),
                                  "--actors", cfg.actor.actor_id]).run()
    stage("record", "record", "--episodes", str(demos), *watch).run()
    stage("latents", "latents").run()
    stage("warmup", "warmup").run()
    if baseline:
        stage("eval-warmup", "eval", "--policy.checkpoint", str(warm), "--rollouts", str(rollouts),
              "--out", str(run_dir / "eval" / "warmup"), *watch).run()

    # The learner is throughput work; the simulated arm's 1 kHz FCI link and the 10 Hz actor are not. On a
    # laptop's few cores the learner yields to them, or a starved simulator drops the arm's connection. A
    # lockstep actor runs unpaced and never idles: a learner yielding to it would barely run.
    learner = Stage(run_dir, config, "learner", ["learner", "--policy.checkpoint", str(warm), *watch],
                    nice=10 if cfg.robot.kind == "sim" else 0)
    print(f"  learner    started            (log: {learner.log})")
    try:
        learner.start_checked()
        stage("actor", "actor", "--policy.checkpoint", str(warm), "--minutes", str(minutes), *watch).run()
    finally:
        learner.stop()
    if learner.proc is not None and learner.proc.returncode not in (0, -signal.SIGTERM):
        learner.wait()
    if not (learned / "policy.json").is_file():
        raise DemoError("the learner left no checkpoint", hint=f"see {learner.log}")
    stage("eval-final", "eval", "--policy.checkpoint", str(learned), "--rollouts", str(rollouts),
          "--out", str(run_dir / "eval" / "final"), *watch).run()

    summary = {"run_dir": str(run_dir), "minutes": round((time.monotonic() - t_start) / 60, 1),
               **eval_summary(run_dir / "eval")}
    (run_dir / "demo_summary.json").write_text(json.dumps(summary, indent=1))
    print("\nfiles:")
    for label, p in [("config", config), ("demonstrations", run_dir / cfg.learner.demo_dir),
                     ("warm-up policy", warm), ("post-trained policy", learned),
                     ("evaluations (JSON, CSV, PNG, MP4)", run_dir / "eval"),
                     ("TensorBoard", run_dir / "tensorboard"), ("logs", run_dir / "logs")]:
        print(f"  {label:<36} {p}")
    print("\n" + summary_line(summary))
    return summary


def eval_summary(evals: Path) -> dict:
    """Success of the warm-up and the final evaluation with their Wilson intervals and the change between them
    with Newcombe's interval, from `lastr1 eval`'s results.json under evals/warmup and evals/final."""
    summary: dict = {}
    for name in ("warmup", "final"):
        f = evals / name / "results.json"
        if f.is_file():
            res = json.loads(f.read_text())
            pct, n = success_pct(res), int(res.get("n_rollouts") or 0)
            summary[f"{name}_success"] = pct
            if pct is not None:
                summary[f"{name}_ci95"] = list(wilson(pct / 100 * n, n))
                summary[f"{name}_rollouts"] = n
    if summary.get("warmup_success") is not None and summary.get("final_success") is not None:
        nw, nf = summary["warmup_rollouts"], summary["final_rollouts"]
        summary["change_points"] = summary["final_success"] - summary["warmup_success"]
        summary["change_ci95"] = list(difference_interval(summary["final_success"] / 100 * nf, nf,
                                                          summary["warmup_success"] / 100 * nw, nw))
    return summary


def summary_line(summary: dict) -> str:
    parts = [f"{name}_success: {summary[name + '_success']:.0f} % [{summary[name + '_ci95'][0]:.0f}, "
             f"{summary[name + '_ci95'][1]:.0f}] (95 %, Wilson)"
             for name in ("warmup", "final") if summary.get(name + "_success") is not None]
    if "change_points" in summary:
        lo, hi = summary["change_ci95"]
        parts.append(f"change: {summary['change_points']:+.0f} points [{lo:+.0f}, {hi:+.0f}] (95 %, Newcombe)")
    return "  ".join(parts)


def wilson(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval (95 % by default) of a success rate, in %: honest at 0 % and 100 % and for
    the 10–60 rollouts an evaluation has, where the normal approximation's ±1.96·√(p(1−p)/n) collapses."""
    lo, hi = _wilson(successes, n, z)
    return round(100 * lo, 1), round(100 * hi, 1)


def _wilson(successes: float, n: int, z: float) -> tuple[float, float]:
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def difference_interval(k1: float, n1: int, k2: float, n2: int, z: float = 1.96) -> tuple[float, float]:
    """95 % interval of the difference of two success rates k1/n1 − k2/n2, in points: Newcombe's hybrid score
    interval (1998, method 10), built from the two Wilson intervals; sound at 0 % and for small n."""
    p1, p2 = k1 / n1, k2 / n2
    (l1, u1), (l2, u2) = _wilson(k1, n1, z), _wilson(k2, n2, z)
    d = p1 - p2
    lo = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    hi = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return round(100 * lo, 1), round(100 * hi, 1)


def success_pct(results: dict) -> float | None:
    """The average success rate (%) over the evaluated conditions, from `lastr1 eval`'s results.json."""
    avg = (results.get("success_rate_pct") or {}).get("average") or {}
    mean = avg.get("mean")
    return float(mean) if isinstance(mean, (int, float)) else None
