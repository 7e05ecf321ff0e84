"""`lastr1 fleet`: its arguments, and the run from start to the closing report (lastr1/fleet/__init__.py)."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path

from lastr1.fleet.report import format_report
from lastr1.fleet.supervise import Fleet


def add_fleet_arguments(parser: argparse.ArgumentParser) -> None:
    from lastr1.configs import add_config_argument

    add_config_argument(parser)
    parser.add_argument("--actors", type=int, required=True, help="how many simulated actors")
    parser.add_argument("--address", default=None,
                        help="Ray cluster address (e.g. auto, ray://head:10001); default: a local Ray instance")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, default=None, help="stop the whole fleet after this long")
    budget.add_argument("--steps", type=int, default=None, help="control steps per actor, then it stops")
    parser.add_argument("--restarts", type=int, default=0, help="start a dead actor again up to this many times")
    parser.add_argument("--resume", action="store_true", help="continue the learner state in run_dir")
    parser.add_argument("--actor-cpus", type=float, default=1.0, help="Ray CPUs each actor reserves")
    parser.add_argument("--learner-cpus", type=float, default=1.0, help="Ray CPUs the learner reserves")
    parser.add_argument("--learner-gpus", type=float, default=0.0,
                        help="Ray GPUs the learner reserves; > 0 also sets its policy.device to cuda")
    parser.add_argument("--status-every", type=float, default=10.0, help="seconds between fleet status lines")


def fleet_main(args: argparse.Namespace) -> int:
    from lastr1.configs import load_config

    cfg = load_config(args)
    if args.steps is None and args.minutes is None:
        print("lastr1 fleet: no --minutes or --steps: running until Ctrl-C", file=sys.stderr)

    def on_term(signum, frame):  # SIGTERM unwinds like Ctrl-C: everything is stopped in order
        raise KeyboardInterrupt

    fleet = Fleet(cfg, args.actors, address=args.address, restarts=args.restarts, actor_cpus=args.actor_cpus,
                  learner_cpus=args.learner_cpus, learner_gpus=args.learner_gpus, resume=args.resume,
                  worker_log_level=logging.INFO if args.verbose else logging.WARNING)
    old: dict = {}
    try:
        fleet.connect()
        # After Ray's start-up, which installs a SIGTERM handler of its own that kills the driver outright.
        old = {sig: signal.signal(sig, on_term) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            fleet.start(max_steps=args.steps)
        except BaseException:
            fleet.stop(timeout_s=20)
            raise
        rep = fleet.run(minutes=args.minutes, status_every_s=args.status_every)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    print(format_report(rep))
    out = Path(fleet.cfg.run_dir) / "fleet_report.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rep.to_dict(), indent=1))
    print(f"report: {out}")
    ok = not rep.learner.error and any(r.state == "done" for r in rep.actors.values())
    return 0 if ok else 1
