"""Typed config schema (one module per section) and the YAML instances beside it.

`configs.load("sim_insert_hex", ["--learner.batch_size", "4"])` returns a `configs.schema.Config`; a command
adds `--config` with `add_config_argument(parser)` and reads it back with `load_config(args)`.
"""

from lastr1.configs.cli_args import add_config_argument, load_config
from lastr1.configs.loader import CONFIG_DIR, ConfigError, build, load, parse_overrides, resolve_config_path, to_dict

__all__ = [
    "CONFIG_DIR",
    "ConfigError",
    "add_config_argument",
    "build",
    "load",
    "load_config",
    "parse_overrides",
    "resolve_config_path",
    "to_dict",
]
