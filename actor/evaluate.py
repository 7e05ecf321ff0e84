"""`lastr1 eval`: the scripted evaluation of the paper's Table 2 (§3.3).

    lastr1 eval --config sim_insert_hex --policy.checkpoint runs/x/checkpoints/rl --runs 3
    lastr1 eval --config configs/real/insert_hex.yaml --rollouts 20 --conditions original,unseen_lighting

N rollouts (default 20) per condition (`task.eval_conditions`: original, unseen_object, unseen_background,
unseen_lighting), greedy policy (confident latent exit, argmax actions), no learning, no weight updates.
Success is the operator's key on the real robot and the scene's verdict in sim. A person may still take
over (they must always be able to stop a real robot), but such a rollout counts as a failure; in sim the
scripted operator is switched off. Each run uses its own rollout seeds (object positions), the same across
conditions within a run so the conditions are compared on the same positions; several runs give mean ± std
(sample std over runs, as the paper's "93.75 ± 1.25" over three runs reads).

Writes to <run_dir>/<actor.eval_dir>/<time>/ (or --out): results.json, rollouts.csv, summary.csv,
success.png (bar chart, mean ± std per condition), videos/<run>_<condition>_<rollout>_<outcome>.mp4 (front
camera), and prints the table.
"""

from __future__ import annotations

import copy
import csv
import importlib.util
import json
import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lastr1.actor.episode import EpisodeSummary, Sink, StepRecord
from lastr1.actor.loop import ActorError, Runtime
from lastr1.actor.view import View, tee

if TYPE_CHECKING:
    from lastr1.configs.schema import Config

log = logging.getLogger(__name__)

CONDITIONS = {
    "original": "Original",
    "unseen_object": "Unseen-Object",
    "unseen_background": "Unseen-Background",
    "unseen_lighting": "Unseen-Lighting",
}


def canonical(name: str) -> str:
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    if key in ("object", "background", "lighting"):
        key = "unseen_" + key
    if key not in CONDITIONS:
        raise ActorError(f"unknown evaluation condition {name!r}", hint="use: " + ", ".join(CONDITIONS))
    return key


class VideoSink(Sink):
    """Keeps one camera's frames of the rollout in progress (written as an MP4 when it ends)."""

    def __init__(self, camera: str):
        self.camera = camera
        self.frames: list[np.ndarray] = []

    def episode_start(self, episode, seed, obs) -> None:
        self.frames = [obs.images[self.camera]]

    def step(self, s: StepRecord) -> None:
        if s.next_obs is not None:
            self.frames.append(s.next_obs.images[self.camera])


def _seed(base: int, run: int, rollout: int) -> int:
    return base + 100_003 * (run + 1) + rollout


def evaluate(cfg: Config, *, rollouts: int, runs: int, conditions: list[str], out: str | Path, env=None, policy=None,
             video: bool = True, stop: threading.Event | None = None, on_status=None, view: str | None = None,
             view_port: int = 9090) -> dict:
    """`view`: also stream to a live rerun viewer ("web", "spawn"); with `video` every rollout is saved to
    <out>/view.rrd (what the live view shows), which `lastr1 view <out>` opens."""
    from lastr1.actor.process import check_cameras, make_agent
    from lastr1.actor.video import write_mp4
    from lastr1.policy import open_policy

    stop = stop or threading.Event()
    conditions = [canonical(c) for c in conditions]
    out = Path(out)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    own: list = []
    cfg = copy.deepcopy(cfg)
    cfg.robot.sim.intervention_rate = 0.0  # the scripted operator never takes over in an evaluation
    try:
        if policy is None:
            policy = open_policy(cfg)
        if env is None:
            from lastr1.robot.factory import make_env

            env = make_env(cfg)
            own.append(env)
        check_cameras(policy, env)
        if env.scene.simulated:
            cfg.actor.interventions = False  # nobody to take over in sim; the policy is judged alone
        camera = "front" if "front" in env.camera_names else env.camera_names[0]
        sink = VideoSink(camera)
        agent = make_agent(cfg, policy, explore=False)
        # Rollouts are kept for `lastr1 view` wherever rerun is installed (it is an optional extra).
        save = out / "view.rrd" if video and importlib.util.find_spec("rerun") else None
        shown = View.open(cfg, view, save, web_port=view_port) if view or save else None
        if shown is not None:
            own.append(shown)
        rt = Runtime(cfg, env, agent=agent, sink=tee(sink, shown), mode="eval", on_tick=on_status)
        rows = []
        t0 = time.time()
        with rt.session():
            for r in range(runs):
                for c in conditions:
                    for i in range(rollouts):
                        if stop.is_set():
                            break
                        seed = _seed(cfg.robot.sim.seed, r, i)
                        s: EpisodeSummary | None = rt.run_episode(seed, stop, condition=c)
                        if s is None:
                            break
                        name = f"run{r}_{c}_{i:03d}_{'success' if s.success else 'failure'}.mp4"
                        if video:
                            write_mp4(out / "videos" / name, sink.frames, cfg.actor.eval_video_fps)
                        rows.append(dict(run=r, condition=c, rollout=i, seed=seed, success=bool(s.success),
                                         outcome=s.outcome, steps=s.steps, ret=round(s.ret, 4),
                                         intervention_steps=s.intervention_steps,
                                         video=f"videos/{name}" if video else ""))
                        log.info("eval run %d %s rollout %d/%d: %s", r, c, i + 1, rollouts, s.outcome)
        results = summarise(cfg, rows, conditions, runs, rollouts, policy, time.time() - t0)
        write_results(out, results, rows)
        return results
    finally:
        for part in reversed(own):
            part.close()


def summarise(cfg: Config, rows: list[dict], conditions: list[str], runs: int, rollouts: int, policy,
              seconds: float) -> dict:
    summary = {}
    per_run_avg = []
    for c in conditions:
        rates = []
        for r in range(runs):
            got = [x["success"] for x in rows if x["run"] == r and x["condition"] == c]
            if got:
                rates.append(100.0 * sum(got) / len(got))
        summary[c] = _mean_std(rates)
    for r in range(runs):
        rates = [100.0 * np.mean([x["success"] for x in rows if x["run"] == r and x["condition"] == c])
                 for c in conditions if any(x["run"] == r and x["condition"] == c for x in rows)]
        if rates:
            per_run_avg.append(float(np.mean(rates)))
    summary["average"] = _mean_std(per_run_avg)
    return {
        "task": cfg.task.name, "instruction": cfg.task.instruction, "robot": cfg.robot.kind,
        "policy": {"checkpoint": cfg.policy.checkpoint, "version": int(policy.version), "model": cfg.policy.model},
        "rollouts_per_condition": rollouts, "runs": runs, "conditions": conditions,
        "labels": {c: CONDITIONS[c] for c in conditions}, "success_rate_pct": summary,
        "n_rollouts": len(rows), "seconds": round(seconds, 1),
        "std": "sample standard deviation over runs (ddof=1); 0 for a single run",
    }


def _mean_std(rates: list[float]) -> dict:
    a = np.asarray(rates, float)
    return {"mean": float(a.mean()) if a.size else float("nan"),
            "std": float(a.std(ddof=1)) if a.size > 1 else 0.0, "per_run": [float(x) for x in a]}


def write_results(out: Path, results: dict, rows: list[dict]) -> None:
    (out / "results.json").write_text(json.dumps({**results, "rollouts": rows}, indent=1))
    fields = ["run", "condition", "rollout", "seed", "success", "outcome", "steps", "ret", "intervention_steps",
              "video"]
    with open(out / "rollouts.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    with open(out / "summary.csv", "w", newline="") as f:
        table = csv.writer(f)
        table.writerow(["condition", "label", "mean_pct", "std_pct"] + [f"run{r}_pct" for r in range(results["runs"])])
        for c, s in results["success_rate_pct"].items():
            label = results["labels"].get(c, "Average")
            table.writerow([c, label, f"{s['mean']:.2f}", f"{s['std']:.2f}"] + [f"{x:.2f}" for x in s["per_run"]])
    plot(out / "success.png", results)


def plot(path: Path, results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = results["success_rate_pct"]
    keys = list(results["conditions"]) + ["average"]
    labels = [results["labels"].get(k, "Average") for k in keys]
    means = [s[k]["mean"] for k in keys]
    stds = [s[k]["std"] for k in keys]
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(keys), 3.6))
    bars = ax.bar(labels, means, yerr=stds, capsize=4, color=["#4c72b0"] * (len(keys) - 1) + ["#55a868"])
    for b, m in zip(bars, means):
        ax.text(b.get_x() + b.get_width() / 2, m + 2, f"{m:.1f}", ha="center", va="bottom", fontsize=8)
    ax.set_ylim(0, 110)
    ax.set_ylabel("success rate (%)")
    ax.set_title(f"{results['task']}: {results['rollouts_per_condition']} rollouts × {results['runs']} run(s), "
                 f"policy v{results['policy']['version']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def format_table(results: dict) -> str:
    runs = results["runs"]
    head = f"{'condition':<20}" + "".join(f"{f'run {r}':>9}" for r in range(runs)) + f"{'mean ± std':>16}"
    lines = [head, "-" * len(head)]
    for c, s in results["success_rate_pct"].items():
        label = results["labels"].get(c, "Average")
        lines.append(f"{label:<20}" + "".join(f"{x:>8.1f}%" for x in s["per_run"]) +
                     f"{s['mean']:>9.2f} ± {s['std']:.2f}")
    return "\n".join(lines)
