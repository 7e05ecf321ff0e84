"""The robot-side commands: `lastr1 actor`, `lastr1 record`, `lastr1 eval` and `lastr1 view`.

`lastr1 actor --config CONFIG [--section.key value ...]` is the RL process: robot (real or simulated,
`robot.kind`), policy (`policy.checkpoint`, or a fresh one with a warning), and the link to the learner
(`transport.*`). A status line shows episode, step, loop rate, policy latency and version, intervention rate and
successes. Ctrl-C (or SIGTERM, or the end of --minutes) stops after the current tick; unacknowledged
transitions stay in the spool and are resent at the next start.

`lastr1 record` and `lastr1 eval` are described in actor/record.py and actor/evaluate.py. Everything heavy is
imported inside the command that needs it.
"""

from __future__ import annotations

import argparse
import signal
import threading
import time
from pathlib import Path

from lastr1.configs import add_config_argument, load_config


def add_live_view_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--view", nargs="?", const="web", default=None, metavar="web|spawn|FILE.rrd",
                        help="stream every step to rerun: a web viewer (default; open the printed address from any "
                        "machine), a local viewer window, or a recording file (pip install 'lastr1[view]')")
    parser.add_argument("--view-port", type=int, default=9090, help="the web viewer's port (gRPC: 9876)")


def open_view(cfg, args: argparse.Namespace):
    if not args.view:
        return None
    from lastr1.actor.view import View

    return View.open(cfg, args.view, web_port=args.view_port)


# --- `lastr1 actor` -----------------------------------------------------------------------------------------


def add_actor_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--episodes", type=int, default=None, help="stop after this many episodes")
    parser.add_argument("--steps", type=int, default=None, help="stop after this many control steps")
    parser.add_argument("--minutes", type=float, default=None,
                        help="stop after this much wall-clock time (resets and held ticks included)")
    add_live_view_argument(parser)


def actor_main(args: argparse.Namespace) -> int:
    from lastr1.actor.process import run_actor
    from lastr1.actor.status import StatusLine

    cfg = load_config(args)
    stop = threading.Event()
    status = StatusLine(cfg.actor.status_every_s, cfg.actor.log_every_s)

    def on_sigint(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()  # first Ctrl-C: finish the tick, close the episode, flush the link

    old = signal.signal(signal.SIGINT, on_sigint)
    old_term = signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())  # a supervisor's stop: the same
    timer = None
    if args.minutes is not None:
        timer = threading.Timer(args.minutes * 60, stop.set)
        timer.daemon = True
        timer.start()
    view = open_view(cfg, args)
    try:
        result = run_actor(cfg, stop, max_episodes=args.episodes, max_steps=args.steps, on_status=status, view=view)
    finally:
        if view is not None:
            view.close()
        if timer is not None:
            timer.cancel()
        signal.signal(signal.SIGINT, old)
        signal.signal(signal.SIGTERM, old_term)
        status.close()
    ok = sum(e.success for e in result.episodes)
    print(f"lastr1 actor: {len(result.episodes)} episodes, {ok} successes, {result.steps} steps, "
          f"{result.sent} transitions sent, {result.versions_applied} weight updates applied")
    return 0


# --- `lastr1 record` ----------------------------------------------------------------------------------------


def add_record_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--episodes", type=int, default=None, help="successful demonstrations to keep "
                        "(default actor.record_episodes)")
    parser.add_argument("--out", default=None, help="dataset folder (default <run_dir>/<learner.demo_dir>)")
    parser.add_argument("--max-attempts", type=int, default=None, help="give up after this many episodes (3×)")
    parser.add_argument("--export-lerobot", metavar="DIR", default=None,
                        help="also write the dataset as a LeRobotDataset (parquet + mp4) to DIR")
    parser.add_argument("--lerobot-version", choices=("v3.0", "v2.1"), default="v3.0",
                        help="LeRobot's dataset layout: v3.0 (LeRobot >= 0.4, default) or v2.1 (LeRobot 0.3)")
    parser.add_argument("--export-only", action="store_true", help="only export the existing dataset")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing export folder")
    add_live_view_argument(parser)


def record_main(args: argparse.Namespace) -> int:
    from lastr1.actor.record import record
    from lastr1.actor.status import ProgressStatus

    cfg = load_config(args, skip=("transport",))  # no learner here
    out = Path(args.out) if args.out else cfg.path(cfg.learner.demo_dir)
    if not args.export_only:
        stop = threading.Event()
        old = signal.signal(signal.SIGINT, lambda *a: stop.set())
        n = args.episodes or cfg.actor.record_episodes
        status = ProgressStatus(n, "demonstrations kept", "successes", cfg.actor.status_every_s, cfg.actor.log_every_s)
        view = open_view(cfg, args)
        try:
            sink = record(cfg, n, out, stop,
                          max_attempts=args.max_attempts, on_status=status, view=view)
        finally:
            if view is not None:
                view.close()
            signal.signal(signal.SIGINT, old)
            status.close()
        print(f"lastr1 record: kept {len(sink.kept)} demonstrations in {out} ({sink.discarded} discarded)")
    if args.export_lerobot:
        from tqdm import tqdm

        from lastr1.actor.lerobot_export import export_lerobot

        dst = export_lerobot(out, args.export_lerobot, version=args.lerobot_version, overwrite=args.overwrite,
                             progress=lambda it: tqdm(it, desc="LeRobot export", unit="episode"))
        print(f"lastr1 record: LeRobotDataset {args.lerobot_version} written to {dst}")
    return 0


# --- `lastr1 eval` ------------------------------------------------------------------------------------------


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--rollouts", type=int, default=None, help="rollouts per condition (actor.eval_rollouts, 20)")
    parser.add_argument("--runs", type=int, default=None, help="independent runs for mean ± std (actor.eval_runs)")
    parser.add_argument("--conditions", default=None, help="comma-separated; default task.eval_conditions")
    parser.add_argument("--out", default=None, help="output folder (default <run_dir>/<actor.eval_dir>/<time>)")
    parser.add_argument("--no-video", action="store_true", help="skip the per-rollout MP4 files and view.rrd")
    add_live_view_argument(parser)


def eval_main(args: argparse.Namespace) -> int:
    from lastr1.actor.evaluate import evaluate, format_table
    from lastr1.actor.status import ProgressStatus

    cfg = load_config(args, skip=("transport",))  # no learner here
    conditions = args.conditions.split(",") if args.conditions else list(cfg.task.eval_conditions)
    out = Path(args.out) if args.out else cfg.path(cfg.actor.eval_dir) / time.strftime("%Y%m%d-%H%M%S")
    stop = threading.Event()
    old = signal.signal(signal.SIGINT, lambda *a: stop.set())
    rollouts, runs = args.rollouts or cfg.actor.eval_rollouts, args.runs or cfg.actor.eval_runs
    status = ProgressStatus(rollouts * runs * len(conditions), "eval rollouts", "episodes", cfg.actor.status_every_s,
                            cfg.actor.log_every_s)
    try:
        results = evaluate(cfg, rollouts=rollouts, runs=runs, conditions=conditions, out=out,
                           video=not args.no_video, stop=stop, on_status=status, view=args.view,
                           view_port=args.view_port)
    finally:
        signal.signal(signal.SIGINT, old)
        status.close()
    print(format_table(results))
    print(f"lastr1 eval: {results['n_rollouts']} rollouts; results in {out}")
    return 0 if not stop.is_set() else 130


# --- `lastr1 view` ------------------------------------------------------------------------------------------


def add_sync_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--steps", type=int, required=True, help="transitions to collect")
    parser.add_argument("--utd", type=float, default=1.0, help="learner updates per collected transition")
    parser.add_argument("--resume", action="store_true", help="continue the learner state in <run_dir>/learner")


def sync_main(args: argparse.Namespace) -> int:
    from lastr1.actor.sync import run_sync

    cfg = load_config(args)
    episodes, c = run_sync(cfg, steps=args.steps, utd=args.utd, resume=args.resume)
    ok = sum(e.success for e in episodes)
    print(f"lastr1 sync: {len(episodes)} episodes ({ok} successes), {c.received} transitions, {c.updates} updates")
    return 0


def add_view_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="a .rrd recording, an eval output folder (its view.rrd), a demo folder or one "
                        "episode of it, a LeRobot v3.0 dataset, or <run_dir>/learner/rollout_buffer")
    parser.add_argument("--to", default="web", metavar="web|spawn|FILE.rrd",
                        help="a web viewer (default), a local viewer window, or a recording file")
    parser.add_argument("--view-port", type=int, default=9090, help="the web viewer's port (gRPC: 9876)")


def view_main(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from lastr1.actor.view import replay

    rec = replay(args.path, args.to, web_port=args.view_port,
                 progress=lambda eps: tqdm(eps, desc="episodes", unit="episode"))
    rec.flush()
    if args.to == "web":
        print(f"lastr1 view: serving {args.path} at http://127.0.0.1:{args.view_port} (Ctrl-C to stop)")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    rec.disconnect()
    return 0
