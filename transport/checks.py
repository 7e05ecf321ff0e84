"""`lastr1 doctor`'s transport checks: the CURVE key files a role needs (secrets 0600), and the learner
answering an actor's CurveZMQ handshake."""

from __future__ import annotations

import stat
import tempfile
import time
from typing import TYPE_CHECKING

from lastr1.check import Check
from lastr1.transport.curve_keys import LEARNER

if TYPE_CHECKING:
    from lastr1.configs.schema import Config


def key_files(cfg: Config, role: str) -> Check:
    """The files `lastr1 keys` made that this role reads: present, and each secret readable by its owner only."""
    if cfg.transport.insecure:
        return Check("CURVE keys", "warn", "transport.insecure: plain TCP, no keys",
                     "only for a trusted loopback; unset transport.insecure between hosts")
    kd = cfg.path(cfg.transport.keys_dir)
    if role == "actor":
        need = [kd / f"{LEARNER}.key", kd / "actors" / f"{cfg.actor.actor_id}.key_secret"]
    else:
        actors = sorted((kd / "actors").glob("*.key")) or [kd / "actors" / "<actor id>.key"]
        need = [kd / f"{LEARNER}.key_secret", *actors]
    missing = [p for p in need if not p.is_file()]
    if missing:
        return Check("CURVE keys", "FAIL", f"missing {', '.join(map(str, missing))}",
                     f"run `lastr1 keys --dir {kd} --actors {cfg.actor.actor_id}` on the learner host and copy "
                     "learner.key + actors/<id>.key_secret to each actor host")
    open_ = [p for p in need if p.name.endswith("_secret") and stat.S_IMODE(p.stat().st_mode) & 0o077]
    if open_:
        return Check("CURVE keys", "FAIL", f"{', '.join(map(str, open_))} readable by other users",
                     "chmod 600 " + " ".join(map(str, open_)))
    return Check("CURVE keys", "ok", ", ".join(str(p.relative_to(kd)) for p in need) + f" in {kd}")


def learner_handshake(cfg: Config, timeout_s: float = 5.0) -> Check:
    """An actor link (its own throw-away spool) to the configured learner: the CurveZMQ handshake completes
    and the learner answers a heartbeat within `timeout_s`."""
    from lastr1.errors import Lastr1Error
    from lastr1.transport.actor_link import ActorLink

    t = cfg.transport
    name = f"learner {t.learner_host}:{t.port}"
    with tempfile.TemporaryDirectory() as spool:
        try:
            link = ActorLink(t, cfg.actor.actor_id, spool_dir=spool, keys_dir=cfg.path(t.keys_dir))
        except Lastr1Error as e:
            return Check(name, "FAIL", str(e).splitlines()[0], e.hint)
        try:
            end = time.monotonic() + timeout_s
            while time.monotonic() < end and not link.connected and link.auth_error is None:
                time.sleep(0.05)
            if link.connected:
                return Check(name, "ok", "CurveZMQ handshake done, heartbeat answered")
            if link.auth_error:
                return Check(name, "FAIL", link.auth_error,
                             f"copy actors/{cfg.actor.actor_id}.key from the learner's keys (or rerun "
                             "`lastr1 keys --add`) and restart the learner")
            return Check(name, "FAIL", f"no answer in {timeout_s:.0f} s",
                         "start `lastr1 learner` there; check transport.learner_host/port, the firewall, and that "
                         "both hosts use the same learner.key")
        finally:
            link.close(timeout_s=0.5)
