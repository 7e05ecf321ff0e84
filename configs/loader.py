"""YAML → typed dataclass configs.

A config file is a YAML mapping whose top-level keys are the sections of `configs.schema.Config`. A file may
name other files under `base:` (paths relative to the file, or to this folder); they are merged first, in
order, and the file's own keys win. Command-line overrides (`--learner.batch_size 4`) are applied last.
Every value is checked against the dataclass field type, so a typo fails at load time with the key and the
file named, not an hour into a run.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from lastr1.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parent


def resolve_config_path(name: str | Path, relative_to: Path | None = None) -> Path:
    """A config may be named by path, or by its name inside configs/ (with or without `.yaml`)."""
    raw = Path(name)
    candidates = [raw]
    if relative_to is not None and not raw.is_absolute():
        candidates.append(relative_to / raw)
    if not raw.is_absolute():
        candidates.append(CONFIG_DIR / raw)
    candidates += [c.with_suffix(".yaml") for c in list(candidates) if c.suffix != ".yaml"]
    for c in candidates:
        if c.is_file():
            return c.resolve()
    shipped = sorted(str(p.relative_to(CONFIG_DIR).with_suffix("")) for p in CONFIG_DIR.rglob("*.yaml"))
    raise ConfigError(
        f"config file {str(name)!r} not found (looked in {', '.join(str(c) for c in candidates)})",
        hint="pass a path to a YAML file, or one of the shipped configs: " + ", ".join(shipped),
    )


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(data).__name__}")
    return data


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def read_raw(path: str | Path, _seen: tuple[Path, ...] = ()) -> tuple[dict, dict[str, Path]]:
    """The merged mapping of a config file and its bases, and for each dotted key the file that set it."""
    path = resolve_config_path(path)
    if path in _seen:
        raise ConfigError(f"{path}: `base` includes itself through {' -> '.join(map(str, _seen))}")
    data = _read_yaml(path)
    bases = data.pop("base", []) or []
    if isinstance(bases, str):
        bases = [bases]
    merged: dict = {}
    origin: dict[str, Path] = {}
    for b in bases:
        sub, sub_origin = read_raw(resolve_config_path(b, relative_to=path.parent), _seen + (path,))
        merged = _merge(merged, sub)
        origin.update(sub_origin)
    merged = _merge(merged, data)
    for key in _dotted_keys(data):
        origin[key] = path
    return merged, origin


def _dotted_keys(d: dict, prefix: str = "") -> list[str]:
    keys = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        keys.append(key)
        if isinstance(v, dict):
            keys += _dotted_keys(v, key + ".")
    return keys


def parse_overrides(args: list[str]) -> dict:
    """`--a.b value`, `--a.b=value` → nested dict; values are parsed as YAML scalars (4, 1e-4, true, [1, 2])."""
    out: dict = {}
    i = 0
    while i < len(args):
        a = args[i]
        if not a.startswith("--") or len(a) <= 2:
            raise ConfigError(f"unexpected argument {a!r}", hint="overrides look like `--section.key value`")
        key = a[2:]
        if "=" in key:
            key, text = key.split("=", 1)
            i += 1
        else:
            if i + 1 >= len(args):
                raise ConfigError(f"override {a} has no value", hint=f"write `{a} VALUE`")
            text = args[i + 1]
            i += 2
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = text
        node = out
        parts = key.replace("-", "_").split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


T = typing.TypeVar("T")


def build(cls: type[T], data: Any, where: str = "", origin: dict[str, Path] | None = None) -> T:
    """Construct dataclass `cls` from plain data, checking every key and type."""
    return _convert(cls, data, where, origin or {})


def _src(where: str, origin: dict[str, Path]) -> str:
    key = where
    while key:
        if key in origin:
            return f" (set in {origin[key]})"
        key = key.rpartition(".")[0]
    return ""


def _fail(where: str, origin: dict[str, Path], msg: str, hint: str = "") -> typing.NoReturn:
    raise ConfigError(f"config key {where or '<root>'!r}{_src(where, origin)}: {msg}", hint=hint)


def _convert(tp: Any, value: Any, where: str, origin: dict[str, Path]) -> Any:
    origin_tp = get_origin(tp)
    if tp is Any:
        return value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if value is None:
            value = {}
        if not isinstance(value, dict):
            _fail(where, origin, f"expected a mapping for {tp.__name__}, got {value!r}")
        hints = get_type_hints(tp)
        fields = {f.name: f for f in dataclasses.fields(tp) if f.init}
        unknown = [k for k in value if k not in fields]
        if unknown:
            k = unknown[0]
            key = f"{where}.{k}" if where else str(k)
            _fail(key, origin, "unknown key", hint=f"known keys here: {', '.join(sorted(fields))}")
        kwargs = {}
        for name, f in fields.items():
            key = f"{where}.{name}" if where else name
            if name in value:
                kwargs[name] = _convert(hints[name], value[name], key, origin)
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                _fail(key, origin, "required key is missing")
        try:
            return tp(**kwargs)
        except (ValueError, TypeError) as e:
            _fail(where, origin, str(e))
    if origin_tp in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(a, value, where, origin)
            except ConfigError as e:
                errors.append(str(e))
        _fail(where, origin, f"{value!r} does not match {_name(tp)}")
    if origin_tp is Literal:
        if isinstance(value, bool):  # YAML 1.1 reads off/on/no/yes as booleans: take the option so spelled
            spelled = [a for a in get_args(tp) if isinstance(a, str)
                       and a.lower() in (("off", "no", "false") if not value else ("on", "yes", "true"))]
            if len(spelled) == 1:
                return spelled[0]
        if value not in get_args(tp):
            _fail(where, origin, f"{value!r} is not one of {list(get_args(tp))}")
        return value
    if origin_tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            _fail(where, origin, f"expected a list, got {value!r}")
        args = get_args(tp)
        if origin_tp is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                _fail(where, origin, f"expected {len(args)} items, got {len(value)}")
            return tuple(_convert(a, v, f"{where}[{i}]", origin) for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else Any
        items = [_convert(item, v, f"{where}[{i}]", origin) for i, v in enumerate(value)]
        return tuple(items) if origin_tp is tuple else items
    if origin_tp is dict:
        if not isinstance(value, dict):
            _fail(where, origin, f"expected a mapping, got {value!r}")
        kt, vt = get_args(tp) or (Any, Any)
        return {_convert(kt, k, where, origin): _convert(vt, v, f"{where}.{k}", origin) for k, v in value.items()}
    if tp is float:
        if isinstance(value, str):
            # YAML 1.1 reads `1e-4` (no dot) as a string; accept what is plainly a number.
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _fail(where, origin, f"expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(where, origin, f"expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            _fail(where, origin, f"expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            _fail(where, origin, f"expected a string, got {value!r}")
        return str(value)
    if tp is Path:
        if not isinstance(value, (str, Path)):
            _fail(where, origin, f"expected a path, got {value!r}")
        return Path(value)
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    _fail(where, origin, f"cannot read {value!r} as {_name(tp)}")


def _name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def to_dict(cfg: Any) -> Any:
    """Plain data (for saving beside a checkpoint or printing); the inverse of `build`."""
    if dataclasses.is_dataclass(cfg):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, dict):
        return {k: to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, Path):
        return str(cfg)
    return cfg


def load(path: str | Path, overrides: list[str] | dict | None = None):
    """Load a run config (`configs.schema.Config`) from a YAML file plus command-line overrides."""
    from lastr1.configs.schema import Config

    data, origin = read_raw(path)
    if overrides:
        over = parse_overrides(overrides) if isinstance(overrides, list) else overrides
        data = _merge(data, over)
        for key in _dotted_keys(over):
            origin[key] = Path("<command line>")
    return build(Config, data, "", origin)


# What a shipped config writes where only the lab knows the value (an address, a serial): it can never be
# dialled or matched, and every command that reads such a key stops first, naming it (`unset_keys`).
UNSET = "SET-ME"


def unset_keys(cfg: Any, skip: tuple[str, ...] = (), where: str = "") -> list[str]:
    """Dotted keys (list items as `[i]`) of `cfg` still holding a `SET-ME…` placeholder, except those under a
    prefix in `skip` (keys the command does not read)."""
    if any(where == s or where.startswith(s + ".") or where.startswith(s + "[") for s in skip if where):
        return []
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return [k for f in dataclasses.fields(cfg)
                for k in unset_keys(getattr(cfg, f.name), skip, f"{where}.{f.name}" if where else f.name)]
    if isinstance(cfg, (list, tuple)):
        return [k for i, v in enumerate(cfg) for k in unset_keys(v, skip, f"{where}[{i}]")]
    if isinstance(cfg, dict):
        return [k for n, v in cfg.items() for k in unset_keys(v, skip, f"{where}.{n}")]
    return [where] if isinstance(cfg, str) and cfg.startswith(UNSET) else []


def require_set(cfg: Any, name: str, skip: tuple[str, ...] = ()) -> None:
    """ConfigError naming every placeholder `cfg` still holds (outside `skip`), before anything connects."""
    keys = unset_keys(cfg, skip)
    if keys:
        raise ConfigError(
            f"config {name!r} still holds {len(keys)} placeholder value(s) ({UNSET}…) this command needs: "
            + ", ".join(keys),
            hint="edit a copy of the config and set each one (the comment beside it says where to find the value); "
            "`lastr1 doctor --config YOURS` then checks the rest",
        )
