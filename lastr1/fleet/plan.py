"""What each member of a fleet runs: per-actor configs (own id, sim hosts, scene seed), paths made absolute,
and the CurveZMQ keys of every identity."""

from __future__ import annotations

import copy
import ipaddress
from pathlib import Path
from typing import TYPE_CHECKING

from lastr1.errors import Lastr1Error

if TYPE_CHECKING:
    from lastr1.configs.schema import Config


class FleetError(Lastr1Error):
    pass


def actor_hosts(hosts: list[str], index: int, n_arms: int) -> list[str]:
    """Actor `index`'s sim host addresses: the configured ones moved up by index · n_arms on the last octet."""
    out = []
    for h in hosts[:n_arms]:
        try:
            ip = ipaddress.IPv4Address(h)
        except ValueError:
            raise FleetError(f"robot.sim.hosts entry {h!r} is not an IPv4 address",
                             hint="a fleet derives one loopback address per actor: give 127.x.y.z addresses") from None
        last = int(ip) % 256 + index * n_arms
        if not 1 <= last <= 254:
            raise FleetError(f"actor {index} would need sim host {ip}+{index * n_arms}, past the last octet",
                             hint="start robot.sim.hosts lower (e.g. [127.0.1.2]) or run fewer actors per node")
        out.append(str(ipaddress.IPv4Address(int(ip) + index * n_arms)))
    return out


def actor_config(cfg: Config, index: int) -> Config:
    """The config actor `index` runs: its id, sim hosts and scene seed."""
    c = copy.deepcopy(cfg)
    c.actor.actor_id = f"actor{index}"
    c.robot.sim.hosts = actor_hosts(cfg.robot.sim.hosts, index, cfg.task.n_arms)
    c.robot.sim.seed = cfg.robot.sim.seed + index
    return c


def make_absolute(cfg: Config) -> None:
    """Paths resolved here, where the user runs the command: workers may start in another folder."""
    cfg.run_dir = str(Path(cfg.run_dir).resolve())
    t = cfg.transport
    t.spool_dir = str(cfg.path(t.spool_dir).resolve())
    t.keys_dir = str(cfg.path(t.keys_dir).resolve())
    if cfg.policy.checkpoint:
        cfg.policy.checkpoint = str(cfg.path(cfg.policy.checkpoint).resolve())


def ensure_keys(keys_dir: Path, actor_ids: list[str]) -> None:
    """The learner key and one per actor, as `lastr1 keys` makes them; existing ones are kept."""
    from lastr1.transport.curve_keys import LEARNER, generate

    if not (keys_dir / f"{LEARNER}.key_secret").is_file():
        if (keys_dir / "actors").is_dir() and any((keys_dir / "actors").iterdir()):
            raise FleetError(f"{keys_dir} holds actor keys but no learner key",
                             hint="point transport.keys_dir at a complete `lastr1 keys` folder or an empty one")
        generate(keys_dir, actor_ids)
        return
    missing = [a for a in actor_ids if not (keys_dir / "actors" / f"{a}.key_secret").is_file()]
    if missing:
        generate(keys_dir, missing, add=True)
