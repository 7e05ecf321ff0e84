"""`lastr1 <subcommand>`: one console script for every job of the stack.

Each subcommand is a module with `add_arguments(parser)` and `run(args) -> int`, imported only when that
subcommand runs, so `lastr1 learner` on a GPU box never imports a camera driver. A subcommand is listed
here only once it works.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from lastr1.errors import Lastr1Error

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("lastr1.demo", "the whole loop on the simulated robot in one command (keys, demos, warm-up, RL, eval)"),
    "actor": ("lastr1.actor.cli", "run the robot-side RL actor: robot + policy + link to the learner"),
    "learner": ("lastr1.learner.cli", "serve actors: replay buffers, BC + Q updates on LoRA, adapter broadcast"),
    "record": ("lastr1.actor.record", "record demonstrations (SpaceMouse, or the scripted expert in sim); LeRobot export"),
    "latents": ("lastr1.policy.latent_targets", "precompute DINOv3 latent targets of recorded demonstrations"),
    "warmup": ("lastr1.policy.warmup", "supervised warm-up of the policy on recorded demonstrations"),
    "eval": ("lastr1.actor.evaluate", "the paper's Table 2 evaluation: N rollouts per condition, mean ± std over runs"),
    "calibrate": ("lastr1.calibration.cli", "intrinsics, hand-eye, workspace box, SpaceMouse axes (writes YAML files)"),
    "keys": ("lastr1.transport.curve_keys", "make CurveZMQ key pairs for the learner and its actors"),
    "fleet": ("lastr1.fleet.cli", "N simulated actors and the learner as Ray actors, the transitions over the wire"),
}


def add_config_argument(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    """`--config NAME_OR_PATH`; any further `--section.key value` pairs override the file."""
    parser.add_argument(
        "--config",
        default=default,
        required=default is None,
        help="a YAML file, or the name of one in configs/ (overrides: --section.key value)",
    )


def load_config(args: argparse.Namespace):
    from lastr1 import configs

    return configs.load(args.config, list(getattr(args, "overrides", []) or []))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="lastr1", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        # Let argparse print usage / the unknown-command error with the list of commands.
        parser.parse_args(argv[:1] or ["--help"])
        return 2
    name = argv[0]
    module = importlib.import_module(COMMANDS[name][0])
    cmd_parser = argparse.ArgumentParser(prog=f"lastr1 {name}", description=COMMANDS[name][1])
    cmd_parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    module.add_arguments(cmd_parser)
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
        return int(module.run(args) or 0)
    except Lastr1Error as e:
        print(f"lastr1 {name}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lastr1 {name}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
