"""Typed config schema (one module per section) and the YAML instances beside it.

`configs.load("sim_insert_hex", ["--learner.batch_size", "4"])` returns a `configs.schema.Config`.
"""

from lastr1.configs.loader import CONFIG_DIR, ConfigError, build, load, parse_overrides, resolve_config_path, to_dict

__all__ = ["CONFIG_DIR", "ConfigError", "build", "load", "parse_overrides", "resolve_config_path", "to_dict"]
