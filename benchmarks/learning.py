"""Does Q-guided learning beat behaviour cloning? The study of issues 8 and 15 on the simulated robot, on CPU.

Per seed: scripted demonstrations (≤ 10) and their DINOv3 latent targets, shared by the variants. Per variant
(BC + Q with adaptive latent CoT — the default; BC-only, the same demonstrations and interventions with η = 0,
the HG-DAgger-style baseline; fixed latent length and Action-Only on BC + Q, the paper's Fig. 3/4) and seed:
warm-up,
evaluation on held-out seeds, then the actor–learner loop with the scripted operator intervening, paused
every `--eval-every` minutes for an evaluation of the learner's newest checkpoint (the learner saves on
SIGTERM and resumes with its replay buffers; the clock counts loop time only, evaluations excluded).

Two modes (`--mode`, reported in the JSON): `async` runs `lastr1 learner` and `lastr1 actor` side by side as
deployed, and its minutes are wall-clock loop minutes; `sync` (the default) runs `lastr1 sync` (actor/sync.py),
`--utd` learner updates per collected transition, on the lockstep robot by default (`--robot`), and its
minutes are simulated robot minutes (control_hz × 60 transitions each): repeatable, and as fast as the
machine allows.

Every stage is the `lastr1 …` command a lab runs, as its own process, with its log under the run folder.
A (variant, seed) already finished in `--out` is read back, not re-run: the study can be run piecewise.

    python benchmarks/learning.py                       # 4 variants × 3 seeds × 15 min (9,000 steps), 20 rollouts
    python benchmarks/learning.py --quick               # BC + Q and BC-only × 1 seed × 3 min, UTD 0.25, 10 rollouts
    python benchmarks/learning.py --config learning_lift_bar --variants adaptive --seeds 0
    python benchmarks/learning.py --mode async --robot sim --variants adaptive   # the deployed loop

Prints one JSON line (BC + Q's means over seeds at the top with a 95 % Wilson interval of the pooled held-out
rollouts, `improvement_points` over its warm-up, `bc_only_points` BC-only's, `q_gain_points` = BC + Q's final
minus BC-only's, each difference with Newcombe's 95 % interval of the pooled rollouts (`…_ci95`),
`updates_per_transition` of BC + Q's learner; every variant and seed below) and writes
`<out>/learning.json` and a PNG of held-out success against loop minutes per variant (`--figure`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import time
from pathlib import Path

import numpy as np

from lastr1.demo import DemoError, Stage, difference_interval, success_pct, wilson  # noqa: E402

# What each variant changes; everything else comes from the config.
VARIANTS = {
    # the paper's policy: warm-up on lengths drawn from {2, 4, 6, 8} (so the exit head learns a choice),
    # adaptive exit at inference, the exit sampled in rollouts
    "adaptive": ["--policy.latent_mode", "adaptive", "--policy.warmup.latent_len", "0"],
    # the same, η = 0: BC on the same demonstrations and interventions, no Q term (HG-DAgger-style baseline)
    "bc_only": ["--policy.latent_mode", "adaptive", "--policy.warmup.latent_len", "0", "--learner.eta_q", "0"],
    # Fig. 4(b): always L_max = 8 latents
    "fixed": ["--policy.latent_mode", "fixed"],
    # Fig. 3: no latent reasoning, the acting tower reads the prompt alone
    "off": ["--policy.latent_mode", "off"],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="learning", help="config name or YAML (configs/learning.yaml)")
    ap.add_argument("--variants", default="adaptive,bc_only,fixed,off", help="the first is the headline")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--demos", type=int, default=10, help="scripted demonstrations per seed (≤ 10)")
    ap.add_argument("--minutes", type=float, default=15.0, help="actor–learner loop time per run")
    ap.add_argument("--eval-every", type=float, default=5.0, help="loop minutes between evaluations")
    ap.add_argument("--eval-rollouts", type=int, default=20)
    ap.add_argument("--quick", action="store_true",
                    help="BC + Q and BC-only, 1 seed, 3 loop minutes, 10 rollouts (same keys in the JSON line)")
    ap.add_argument("--mode", choices=("async", "sync"), default="sync",
                    help="async: learner and actor processes; sync: lockstep, --utd updates per transition")
    ap.add_argument("--utd", type=float, default=0.5, help="sync: learner updates per collected transition")
    ap.add_argument("--robot", default=None,
                    help="robot.kind of every stage (default: the config's; lockstep in sync mode)")
    ap.add_argument("--out", default="runs/learning")
    ap.add_argument("--figure", default=None, help="PNG path (default <out>/learning.png)")
    ap.add_argument("overrides", nargs="*", help="--section.key value pairs for every stage (after --)")
    args = ap.parse_args()
    if args.quick:  # ~30 min on one free core: 900 + 450 learner updates of ~1.4 s dominate
        args.seeds, args.minutes, args.eval_every, args.eval_rollouts = "0", 3.0, 3.0, 10
        if args.utd == ap.get_default("utd"):
            args.utd = 0.25
        if args.variants == ap.get_default("variants"):
            args.variants = "adaptive,bc_only"
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        ap.error(f"unknown variant(s) {unknown}; choose from {sorted(VARIANTS)}")
    if args.robot is None and args.mode == "sync":
        args.robot = "lockstep"
    seeds = [int(s) for s in args.seeds.split(",") if s]
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)

    def on_term(signum, frame):  # SIGTERM unwinds like Ctrl-C: Stage.run stops the running stage
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    t0 = time.monotonic()
    runs = {}
    for seed in seeds:
        seed_dir = out / f"seed{seed}"
        prepare_seed(args, seed_dir, seed)
        for v in variants:
            runs[(v, seed)] = run_variant(args, seed_dir, seed, v)
    report = summarise(runs, variants, seeds, args)
    report["study_minutes"] = round((time.monotonic() - t0) / 60, 1)
    (out / "learning.json").write_text(json.dumps(report, indent=1))
    figure = Path(args.figure) if args.figure else out / "learning.png"
    plot(runs, variants, seeds, figure, args)
    report["figure"] = str(figure)
    print(json.dumps(report))


def common(args, seed: int) -> list[str]:
    # One seed drives the scene draws (training episodes seed·1000003 + e; evaluations seed + 100003·(r+1) + i,
    # never a training draw), the warm-up and the learner's sampling.
    robot = ["--robot.kind", args.robot] if args.robot else []
    return ["--robot.sim.seed", str(seed), "--policy.warmup.seed", str(seed), "--learner.seed", str(seed),
            *robot, *args.overrides]


def run_with_retry(run_dir: Path, name: str, argv: list[str], config: str | None, tries: int = 3,
                   clean: Path | None = None) -> None:
    """A rollout stage that failed (on a starved machine the simulated arm can miss its home motion, and the
    stage stops with that named error) runs again from its start: its seeds are fixed, so nothing is biased."""
    for i in range(tries):
        if clean is not None and clean.exists():  # a partial output would be appended to
            shutil.rmtree(clean)
        try:
            Stage(run_dir, config, name if i == 0 else f"{name}-retry{i}", argv).run()
            return
        except DemoError as e:
            if i == tries - 1:
                raise
            print(f"\n  {name} failed, running it again ({str(e).splitlines()[0]})", flush=True)


def prepare_seed(args, seed_dir: Path, seed: int) -> None:
    """Keys, demonstrations and latent targets, once per seed (the variants share them)."""
    demos = seed_dir / "demos"
    if (seed_dir / "latents.done").is_file():
        return
    seed_dir.mkdir(parents=True, exist_ok=True)
    base = ["--run_dir", str(seed_dir), *common(args, seed)]
    print(f"seed {seed}: demonstrations -> {demos}", flush=True)
    Stage(seed_dir, None, "keys", ["keys", "--dir", str(seed_dir / "keys"), "--actors", "actor0"]).run()
    run_with_retry(seed_dir, "record", ["record", *base, "--episodes", str(args.demos), "--out", str(demos)],
                   args.config, clean=demos)
    Stage(seed_dir, args.config, "latents", ["latents", *base]).run()
    (seed_dir / "latents.done").write_text("ok\n")


def run_variant(args, seed_dir: Path, seed: int, variant: str) -> dict:
    run_dir = seed_dir / variant
    done = run_dir / "curve.json"
    if done.is_file():
        print(f"{variant} seed {seed}: done before, read back from {done}", flush=True)
        return json.loads(done.read_text())
    run_dir.mkdir(parents=True, exist_ok=True)
    base = ["--run_dir", str(run_dir), "--learner.demo_dir", str(seed_dir / "demos"),
            "--transport.keys_dir", str(seed_dir / "keys"), *common(args, seed), *VARIANTS[variant]]
    warm = run_dir / "checkpoints" / "warmup"
    learned = run_dir / "learner" / "checkpoint" / "policy"
    print(f"{variant} seed {seed} -> {run_dir}", flush=True)
    t0 = time.monotonic()
    shared = seed_dir / "adaptive"  # BC-only differs from it only after the warm-up (η): share warm-up and eval
    if variant == "bc_only" and (shared / "eval" / "m000" / "results.json").is_file() and not warm.exists():
        shutil.copytree(shared / "checkpoints" / "warmup", warm)
        shutil.copytree(shared / "eval" / "m000", run_dir / "eval" / "m000")
    if not (warm / "warmup.json").is_file():  # an interrupted study keeps its finished warm-up
        Stage(run_dir, args.config, "warmup", ["warmup", *base]).run()

    def evaluate(tag: str, ckpt: Path) -> float:
        out = run_dir / "eval" / tag
        # the warm-up's evaluation survives an interrupted study; the loop's are of a learner state now gone
        if not ((out / "results.json").is_file() and tag == "m000"):
            run_with_retry(run_dir, f"eval-{tag}", ["eval", *base, "--policy.checkpoint", str(ckpt), "--rollouts",
                                                    str(args.eval_rollouts), "--runs", "1", "--out", str(out),
                                                    "--no-video"], args.config)
        return float(success_pct(json.loads((out / "results.json").read_text())) or 0.0)

    curve = [(0.0, evaluate("m000", warm))]
    loop_s, k = 0.0, 0
    while loop_s < args.minutes * 60 - 1:
        seg = min(args.eval_every * 60, args.minutes * 60 - loop_s)
        ckpt = warm if k == 0 else learned
        scenes = ["--robot.sim.seed", str(seed + 7 * (k + 1))]  # fresh training scenes (never an evaluation draw)
        if args.mode == "sync":
            steps = round(seg * _control_hz(args.config, base))
            Stage(run_dir, args.config, f"sync-{k}", ["sync", *base, *scenes, "--policy.checkpoint", str(ckpt),
                                                      "--steps", str(steps), "--utd", str(args.utd),
                                                      *(["--resume"] if k else [])]).run()
            loop_s += seg
        else:
            loop_s += run_async_segment(args, run_dir, base, scenes, warm, ckpt, seg, k)
        if not (learned / "policy.json").is_file():
            raise SystemExit(f"the learner left no checkpoint; see the logs in {run_dir / 'logs'}")
        k += 1
        curve.append((round(loop_s / 60, 2), evaluate(f"m{round(loop_s / 60):03d}", learned)))
        print(f"  {variant} seed {seed}: {curve[-1][1]:.0f} % after {curve[-1][0]:.1f} loop minutes", flush=True)
    res = {"variant": variant, "seed": seed, "curve": curve, "warmup_success": curve[0][1],
           "final_success": curve[-1][1], "improvement_points": curve[-1][1] - curve[0][1],
           "learner": _learner_totals(run_dir), "minutes": round((time.monotonic() - t0) / 60, 1)}
    done.write_text(json.dumps(res, indent=1))
    return res


def _control_hz(config: str, base: list[str]) -> float:
    from lastr1 import configs

    return configs.load(config, base).task.control_hz


def run_async_segment(args, run_dir: Path, base: list[str], scenes: list[str], warm: Path, ckpt: Path, seg: float,
                      k: int) -> float:
    """`lastr1 learner` and `lastr1 actor` for `seg` seconds of loop time; returns the loop time it took."""
    # the learner yields the CPU to the simulated arm's 1 kHz link and the 10-Hz actor (see lastr1 demo), not to
    # an unpaced lockstep actor
    learner = Stage(run_dir, args.config, f"learner-{k}", ["learner", *base, "--policy.checkpoint", str(warm),
                                                           *(["--resume"] if k else [])],
                    nice=0 if args.robot == "lockstep" else 10)
    try:
        learner.start_checked()
        t_seg = time.monotonic()
        run_with_retry(run_dir, f"actor-{k}", ["actor", *base, *scenes, "--policy.checkpoint", str(ckpt),
                                               "--minutes", f"{seg / 60:.4f}"], args.config)
        return time.monotonic() - t_seg
    finally:
        learner.stop()


def _learner_totals(run_dir: Path) -> dict:
    f = run_dir / "learner" / "checkpoint" / "learner.json"
    if not f.is_file():
        return {}
    c = json.loads(f.read_text())["counters"]
    return {k: c.get(k) for k in ("updates", "received", "interventions", "episodes", "successes", "version")}


def summarise(runs: dict, variants: list[str], seeds: list[int], args) -> dict:
    def stats(key, v):
        xs = np.array([runs[(v, s)][key] for s in seeds], float)
        return round(float(xs.mean()), 1), round(float(xs.std()), 1)

    def ci(key, v):  # the seeds' held-out rollouts pooled (each point: eval_rollouts rollouts)
        n = args.eval_rollouts * len(seeds)
        return list(wilson(sum(runs[(v, s)][key] for s in seeds) / 100 * args.eval_rollouts, n))

    def diff(a: tuple[str, str], b: tuple[str, str]):  # Newcombe's interval of two pooled success rates
        n = args.eval_rollouts * len(seeds)
        k = [sum(runs[(v, s)][key] for s in seeds) / 100 * args.eval_rollouts for key, v in (a, b)]
        return list(difference_interval(k[0], n, k[1], n))

    per = {}
    for v in variants:
        per[v] = {k: dict(zip(("mean", "std"), stats(k, v)))
                  for k in ("warmup_success", "final_success", "improvement_points")}
        per[v]["warmup_success"]["ci95"] = ci("warmup_success", v)
        per[v]["final_success"]["ci95"] = ci("final_success", v)
        per[v]["improvement_points"]["ci95"] = diff(("final_success", v), ("warmup_success", v))
        per[v]["seeds"] = {str(s): {k: runs[(v, s)][k] for k in ("warmup_success", "final_success",
                                                                  "improvement_points", "curve", "learner")}
                           for s in seeds}
    head = variants[0]
    tot = [runs[(head, s)]["learner"] for s in seeds]
    received = sum(t.get("received") or 0 for t in tot)
    bc = per.get("bc_only")
    return {"bench": "learning", "config": args.config, "mode": args.mode, "robot": args.robot or "config",
            "utd": args.utd if args.mode == "sync" else None,
            "minutes_are": "simulated robot minutes" if args.mode == "sync" else "wall-clock loop minutes",
            "variant": head,
            "warmup_success": per[head]["warmup_success"]["mean"],
            "warmup_ci95": per[head]["warmup_success"]["ci95"],
            "final_success": per[head]["final_success"]["mean"],
            "final_ci95": per[head]["final_success"]["ci95"],
            "improvement_points": per[head]["improvement_points"]["mean"],
            "improvement_ci95": per[head]["improvement_points"]["ci95"],
            "bc_only_points": bc["improvement_points"]["mean"] if bc else None,
            "q_gain_points": round(per[head]["final_success"]["mean"] - bc["final_success"]["mean"], 1)
            if bc and head != "bc_only" else None,
            "q_gain_ci95": diff(("final_success", head), ("final_success", "bc_only"))
            if bc and head != "bc_only" else None,
            "updates_per_transition": round(sum(t.get("updates") or 0 for t in tot) / received, 3)
            if received else None,
            "seeds": seeds, "loop_minutes": args.minutes, "eval_every_min": args.eval_every,
            "eval_rollouts": args.eval_rollouts, "demos": args.demos, "variants": per}


def plot(runs: dict, variants: list[str], seeds: list[int], path: Path, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = {"adaptive": "BC + Q, adaptive latent CoT (LaST-R1)", "bc_only": "BC only (η = 0), adaptive",
             "fixed": "BC + Q, fixed latent length 8",
             "off": "BC + Q, Action-Only (no latent reasoning)"}
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for v in variants:
        curves = [np.array(runs[(v, s)]["curve"], float) for s in seeds]
        n = min(len(c) for c in curves)
        t = np.mean([c[:n, 0] for c in curves], 0)
        y = np.array([c[:n, 1] for c in curves])
        line, = ax.plot(t, y.mean(0), marker="o", label=names.get(v, v))
        # 95 % Wilson interval of each point's pooled held-out rollouts
        n = args.eval_rollouts * len(seeds)
        band = np.array([wilson(k / 100 * args.eval_rollouts, n) for k in y.sum(0)])
        ax.fill_between(t, band[:, 0], band[:, 1], color=line.get_color(), alpha=0.2)
    ax.set_xlabel(f"robot time (simulated min), synchronous, {args.utd:g} updates per transition"
                  if args.mode == "sync" else "actor–learner loop time (min, 2 CPU cores)")
    ax.set_ylabel(f"held-out success (%), {args.eval_rollouts} rollouts")
    ax.set_ylim(-5, 105)
    ax.grid(alpha=0.3)
    ax.set_title(f"{args.config}: {len(seeds)} seed(s), mean, 95 % Wilson band")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


if __name__ == "__main__":
    main()
