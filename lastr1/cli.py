"""`lastr1 <subcommand>`: one console script for every job of the stack.

Each subcommand is a pair of functions, `add_arguments(parser)` and `main(args) -> int`, in its package's
`cli.py` (the `lastr1` package's own commands are below). That module is imported only when its subcommand
runs, so `lastr1 learner` on a GPU box never imports a camera driver. A subcommand is listed here only once it
works. Nothing below the CLI imports this module: the `--config` helpers live in `lastr1.configs`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lastr1.configs import add_config_argument, load_config
from lastr1.errors import Lastr1Error


@dataclass(frozen=True)
class Command:
    """Where a subcommand lives: `module` ("" for this one) and the names of its two functions there."""

    module: str
    add_arguments: str
    main: str
    help: str


COMMANDS: dict[str, Command] = {
    "demo": Command("", "add_demo_arguments", "demo_main",
                    "the whole loop on the simulated robot in one command (keys, demos, warm-up, RL, eval)"),
    "actor": Command("lastr1.actor.cli", "add_actor_arguments", "actor_main",
                     "run the robot-side RL actor: robot + policy + link to the learner"),
    "learner": Command("lastr1.learner.cli", "add_learner_arguments", "learner_main",
                       "serve actors: replay buffers, BC + Q updates on LoRA, adapter broadcast"),
    "lapo": Command("lastr1.learner.cli", "add_lapo_arguments", "lapo_main",
                    "LAPO (latent-to-action PPO) on the lockstep simulated robot, with held-out evaluations"),
    "sync": Command("lastr1.actor.cli", "add_sync_arguments", "sync_main",
                    "actor and learner in lockstep in one process: a fixed number of updates per transition"),
    "record": Command("lastr1.actor.cli", "add_record_arguments", "record_main",
                      "record demonstrations (SpaceMouse, or the scripted expert in sim); LeRobot export"),
    "latents": Command("lastr1.policy.cli", "add_latents_arguments", "latents_main",
                       "precompute DINOv3 latent targets of recorded demonstrations"),
    "warmup": Command("lastr1.policy.cli", "add_warmup_arguments", "warmup_main",
                      "supervised warm-up of the policy on recorded demonstrations"),
    "eval": Command("lastr1.actor.cli", "add_eval_arguments", "eval_main",
                    "the paper's Table 2 evaluation: N rollouts per condition, mean ± std over runs"),
    "view": Command("lastr1.actor.cli", "add_view_arguments", "view_main",
                    "show a recorded run, demo folder, eval rollout or LeRobot dataset in rerun's viewer"),
    "calibrate": Command("lastr1.calibration.cli", "add_calibrate_arguments", "calibrate_main",
                         "intrinsics, hand-eye, workspace box, SpaceMouse axes (writes YAML files)"),
    "keys": Command("lastr1.transport.cli", "add_keys_arguments", "keys_main",
                    "make CurveZMQ key pairs for the learner and its actors"),
    "doctor": Command("lastr1.doctor", "add_doctor_arguments", "doctor_main",
                      "check this machine for a run: GPU memory, model folders, keys, cameras, arm, learner link"),
    "fleet": Command("lastr1.fleet.cli", "add_fleet_arguments", "fleet_main",
                     "N simulated actors and the learner as Ray actors, the transitions over the wire"),
}


def resolve(cmd: Command) -> tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]:
    """The command's `add_arguments` and `main`, importing its module now."""
    # globals(), not an import of "lastr1.cli": under `python -m lastr1.cli` this module is __main__.
    space = vars(importlib.import_module(cmd.module)) if cmd.module else globals()
    return space[cmd.add_arguments], space[cmd.main]


# --- `lastr1 demo` ------------------------------------------------------------------------------------------


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser, default="demo")
    parser.add_argument("--run-dir", default=None, help="output folder (default runs/demo-<time>)")
    parser.add_argument("--demos", type=int, default=None, help="scripted demonstrations to record")
    parser.add_argument("--minutes", type=float, default=None, help="how long the actor–learner loop runs")
    parser.add_argument("--eval-rollouts", type=int, default=None, help="rollouts per evaluation")
    parser.add_argument("--skip-baseline", action="store_true", help="do not evaluate the warm-up policy")
    parser.add_argument("--seed", type=int, default=None,
                        help="one seed for the scene draws, the warm-up and the learner (default: the config's)")
    parser.add_argument("--view", action="store_true", help="watch the RL loop and the evaluations live in rerun's "
                        "web viewer (actor, record, eval: http://<this machine>:9090; learner: 9091)")


def demo_main(args: argparse.Namespace) -> int:
    from lastr1.demo import run_demo

    cfg = load_config(args)
    if args.seed is not None:  # as benchmarks/learning.py: evaluation scenes never repeat a training draw
        cfg.robot.sim.seed = cfg.policy.warmup.seed = cfg.learner.seed = args.seed

    def on_term(signum, frame):  # SIGTERM unwinds like Ctrl-C, so every running stage is stopped
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    d = cfg.demo
    run_demo(cfg, Path(args.run_dir or f"runs/demo-{time.strftime('%Y%m%d-%H%M%S')}").resolve(),
             demos=d.demos if args.demos is None else args.demos,
             minutes=d.minutes if args.minutes is None else args.minutes,
             rollouts=d.eval_rollouts if args.eval_rollouts is None else args.eval_rollouts,
             baseline=not args.skip_baseline, view=args.view)
    return 0


# --- the entry point ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="lastr1", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, cmd in COMMANDS.items():
        sub.add_parser(name, help=cmd.help, add_help=False)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        # Let argparse print usage / the unknown-command error with the list of commands.
        parser.parse_args(argv[:1] or ["--help"])
        return 2
    name = argv[0]
    add_arguments, run = resolve(COMMANDS[name])
    cmd_parser = argparse.ArgumentParser(prog=f"lastr1 {name}", description=COMMANDS[name].help)
    cmd_parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    add_arguments(cmd_parser)
    args, rest = cmd_parser.parse_known_args(argv[1:])
    if rest and not hasattr(args, "config"):
        cmd_parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.overrides = rest
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname).1s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        return int(run(args) or 0)
    except Lastr1Error as e:
        print(f"lastr1 {name}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lastr1 {name}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
