"""The `--config NAME_OR_PATH [--section.key value ...]` arguments every config-reading command shares.

Here, beside the loader, so a command's `cli.py` needs only `lastr1.configs`, never `lastr1.cli` back.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from lastr1.configs.loader import load, require_set

if TYPE_CHECKING:
    from lastr1.configs.schema import Config


def add_config_argument(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    """`--config NAME_OR_PATH`; any further `--section.key value` pairs override the file."""
    parser.add_argument(
        "--config",
        default=default,
        required=default is None,
        help="a YAML file, or the name of one in configs/ (overrides: --section.key value)",
    )


def load_config(args: argparse.Namespace, skip: tuple[str, ...] = ()) -> Config:
    """The config named by `args.config` with the leftover `--section.key value` pairs (`args.overrides`),
    refused while a key the command reads (all but those under `skip`) still holds a SET-ME placeholder."""
    cfg = load(args.config, list(getattr(args, "overrides", None) or []))
    require_set(cfg, args.config, skip)
    return cfg
