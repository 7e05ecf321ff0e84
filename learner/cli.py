"""`lastr1 learner --config …`: serve actors, learn, publish adapters; `lastr1 lapo`: on-policy PPO in sim."""

from __future__ import annotations

import argparse
import signal
import threading

from lastr1.configs import add_config_argument, load_config


def add_learner_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--resume", action="store_true", help="continue the learner state in run_dir")
    parser.add_argument("--max-updates", type=int, default=None, help="stop after this many updates")
    parser.add_argument("--view", nargs="?", const="web", default=None, metavar="web|spawn|FILE.rrd",
                        help="stream losses, Q, buffer sizes, updates/s and versions to rerun (web viewer on port "
                        "9091 by default); the same as --learner.view")


def learner_main(args: argparse.Namespace) -> int:
    from lastr1.learner.service import Learner

    cfg = load_config(args, skip=("robot", "transport.learner_host"))  # the GPU box's own keys only
    if args.view:
        cfg.learner.view = args.view
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    learner = Learner(cfg, resume=args.resume)
    try:
        learner.run(stop, max_updates=args.max_updates)
    except KeyboardInterrupt:
        pass
    return 0


def add_lapo_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--iterations", type=int, default=None, help="PPO iterations (learner.lapo.iterations)")
    parser.add_argument("--out", default=None, help="output folder (default <run_dir>/lapo)")
    parser.add_argument("--no-video", action="store_true", help="no MP4 per held-out episode")
    parser.add_argument("--address", default=None, metavar="auto|ray://HOST:10001|local",
                        help="run the learner.lapo.workers rollout workers as Ray actors on this cluster ('local': a "
                        "Ray instance started here); the same as --learner.lapo.ray_address (default: local processes)")


def lapo_main(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from lastr1.learner.lapo_run import run_lapo

    cfg = load_config(args)
    if args.address is not None:
        cfg.learner.lapo.ray_address = args.address
    res = run_lapo(cfg, Path(args.out) if args.out else Path(cfg.run_dir) / "lapo", args.iterations,
                   video=not args.no_video)
    print(json.dumps({"held_out_pct": res["evals"], "latent_lengths": res["latent_lengths"],
                      "steps_per_s": round(res["steps_per_s"], 2)}))
    return 0
