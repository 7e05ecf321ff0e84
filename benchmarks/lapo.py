"""Does LAPO raise held-out success? LaST-R1 + LAPO against Action-Only + PPO on the lockstep robot, on CPU.

Per variant (adaptive latents; Action-Only, `policy.latent_mode: off`) and seed: `lastr1 lapo`'s loop
(learner/lapo_run.py) for `--iterations` PPO iterations, held-out success (`--eval-rollouts` fixed initial
states, greedy) at the start, every `--eval-every` iterations and at the end. Start from warm-up checkpoints
(`--warmup` for the latent policy, `--warmup-off` for an Action-Only one: a checkpoint carries its own
latent_mode); without them both start from fresh tiny random policies, which only proves the loop runs.

    python benchmarks/lapo.py --warmup runs/w/warmup --warmup-off runs/w_off/warmup --seeds 0,1,2 --iterations 40
    python benchmarks/lapo.py --quick        # 1 seed, 1 iteration, 2 trajectories, 2 held-out rollouts

A (variant, seed) that finished in `--out` (its result.json) is read back, not re-run: the study can be run in
pieces (`--variants off --seeds 1` beside `--variants adaptive --seeds 1`, then all of them to read back and
draw). Settings after `--` go to every run (`-- --learner.lapo.lr 3e-4`). `--address auto` rolls out on a Ray
cluster (`lastr1 lapo --address`).

Prints one JSON line: improvement_points (adaptive: mean over seeds of final − initial held-out success, in
points) with its 95 % t-interval half-width, action_only_points likewise, steps_per_s (control steps of
rollout per wall-clock second, both variants), CPU seconds per run (`cpu_s_per_run`), and the latent-length
histograms of the first and last iteration (Fig. 9). Writes <out>/lapo.json and <out>/lapo.png (held-out success
against iteration, and the histograms).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

KEPT = ("evals", "curve", "latent_lengths", "steps_per_s")  # what a run leaves in result.json and lapo.json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="learning")
    ap.add_argument("--warmup", default="", help="warm-up checkpoint of the latent policy")
    ap.add_argument("--warmup-off", default="", help="warm-up checkpoint of the Action-Only policy")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--iterations", type=int, default=40)
    ap.add_argument("--trajectories", type=int, default=None, help="per iteration (learner.lapo.trajectories)")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--address", default="",
                    help="Ray cluster for the rollout workers (`lastr1 lapo --address`; default local processes)")
    ap.add_argument("--eval-rollouts", type=int, default=20)
    ap.add_argument("--eval-every", type=int, default=10)
    ap.add_argument("--max-steps", type=int, default=None, help="task.max_episode_steps")
    ap.add_argument("--variants", default="adaptive,off", help="adaptive (LaST-R1 + LAPO), off (Action-Only + PPO)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="runs/bench_lapo")
    ap.add_argument("overrides", nargs="*", help="--section.key value pairs for every run (after --)")
    args = ap.parse_args()
    if args.quick:
        args.seeds, args.iterations, args.trajectories, args.eval_rollouts = "0", 1, 2, 2
        args.max_steps = args.max_steps or 16

    from lastr1 import configs
    from lastr1.learner.lapo_run import run_lapo

    out = Path(args.out)
    seeds = [int(s) for s in args.seeds.split(",")]
    variants = args.variants.split(",")
    if not set(variants) <= {"adaptive", "off"}:
        raise SystemExit(f"--variants takes adaptive and/or off, got {args.variants!r}")
    runs: dict[str, list[dict]] = {v: [] for v in ("adaptive", "off") if v in variants}
    for variant, ckpt in (("adaptive", args.warmup), ("off", args.warmup_off)):
        if variant not in runs:
            continue
        for seed in seeds:
            over = ["--robot.kind", "lockstep", "--run_dir", str(out / variant / f"seed{seed}"),
                    "--policy.latent_mode", variant, "--learner.lapo.seed", str(seed),
                    "--learner.lapo.eval_rollouts", str(args.eval_rollouts),
                    "--learner.lapo.eval_every", str(args.eval_every), "--robot.sim.seed", "0"]
            over += ["--policy.checkpoint", ckpt] if ckpt else []
            over += ["--learner.lapo.trajectories", str(args.trajectories)] if args.trajectories else []
            over += ["--learner.lapo.workers", str(args.workers)] if args.workers else []
            over += ["--task.max_episode_steps", str(args.max_steps)] if args.max_steps else []
            over += ["--learner.lapo.ray_address", args.address] if args.address else []
            over += args.overrides
            cfg = configs.load(args.config, over)
            done = Path(cfg.run_dir) / "result.json"
            if done.is_file():  # the study runs in pieces: a finished (variant, seed) is read back
                print(f"{variant} seed {seed}: done before, read back from {done}", flush=True)
                res = json.loads(done.read_text())
                res["evals"] = {int(k): v for k, v in res["evals"].items()}
            else:
                res = run_lapo(cfg, Path(cfg.run_dir) / "lapo", args.iterations, video=False)
                done.write_text(json.dumps({k: res[k] for k in KEPT}, default=str))
            runs[variant].append(res)
    report = summarise(runs, seeds, args)
    out.mkdir(parents=True, exist_ok=True)
    (out / "lapo.json").write_text(json.dumps({**report, "runs": {v: [{k: r[k] for k in KEPT} for r in rs]
                                                                     for v, rs in runs.items()}},
                                              indent=1, default=str))
    plot(runs, out / "lapo.png")
    print(json.dumps(report))


def _points(rs: list[dict]) -> tuple[float | None, float | None]:
    """Mean over seeds of final − initial held-out success, and the 95 % t-interval half-width (None: 1 seed)."""
    from scipy import stats

    if not rs:
        return None, None
    d = np.array([r["evals"][max(r["evals"])] - r["evals"][0] for r in rs], float)
    if len(d) < 2:
        return float(d.mean()), None
    return float(d.mean()), round(float(stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))), 2)


def summarise(runs: dict, seeds: list[int], args) -> dict:
    imp, imp_ci = _points(runs.get("adaptive", []))
    off, off_ci = _points(runs.get("off", []))
    return {
        "improvement_points": None if imp is None else round(imp, 2), "improvement_ci95": imp_ci,
        "action_only_points": None if off is None else round(off, 2), "action_only_ci95": off_ci,
        "steps_per_s": round(float(np.mean([r["steps_per_s"] for rs in runs.values() for r in rs])), 2),
        "initial_pct": {v: [r["evals"][0] for r in rs] for v, rs in runs.items()},
        "final_pct": {v: [r["evals"][max(r["evals"])] for r in rs] for v, rs in runs.items()},
        "latent_lengths": [r["latent_lengths"] for r in runs.get("adaptive", [])],
        "seeds": seeds, "iterations": args.iterations, "eval_rollouts": args.eval_rollouts,
        "warmup": bool(args.warmup),
        # CPU of each run's loop after its first evaluation (rollouts in process, updates, later evaluations),
        # as its curve recorded it: the same whether this invocation ran it or read it back.
        "cpu_s_per_run": round(float(np.mean([r["curve"][-1]["cpu_s"] for rs in runs.values() for r in rs])), 1),
    }


def plot(runs: dict, path: Path) -> None:
    """Held-out success against iteration (mean, and the seeds' range), and beside it the paper's Fig. 9: the
    latent lengths LaST-R1 sampled in the first and the last iteration, pooled over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, hx) = plt.subplots(1, 2, figsize=(10, 4), gridspec_kw={"width_ratios": [3, 2]})
    labels = {"adaptive": "LaST-R1 + LAPO", "off": "Action-Only + PPO"}
    for variant, rs in runs.items():
        its = sorted(rs[0]["evals"])
        y = np.array([[r["evals"][i] for i in its] for r in rs], float)
        ax.plot(its, y.mean(0), marker="o", label=f"{labels[variant]} ({len(rs)} seeds)")
        if len(rs) > 1:
            ax.fill_between(its, y.min(0), y.max(0), alpha=0.2)
    ax.set_xlabel("PPO iteration")
    ax.set_ylabel("held-out success (%)")
    ax.set_ylim(0, 100)
    ax.legend()
    hists = [r["latent_lengths"] for r in runs.get("adaptive", [])]
    lens = sorted({int(n) for h in hists for part in h.values() for n in part})
    for k, name in enumerate(("first", "last")):
        counts = np.array([sum(int(h.get(name, {}).get(str(n), h.get(name, {}).get(n, 0))) for h in hists)
                           for n in lens], float)
        if counts.sum():
            hx.bar(np.arange(len(lens)) + (k - 0.5) * 0.4, 100 * counts / counts.sum(), 0.4,
                   label=f"{name} iteration")
    hx.set_xticks(range(len(lens)), [str(n) for n in lens])
    hx.set_xlabel("latent length sampled (LaST-R1)")
    hx.set_ylabel("decisions (%)")
    if lens:
        hx.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
