"""`lastr1 doctor [--role actor|learner] --config CONFIG`: one table of what is wrong on this machine, with a fix
for each failure, before a run finds it the hard way.

Local checks come first (the config's placeholders, Python/torch/CUDA and free GPU memory against the memory
plan, the model and teacher folders, key files, disk, the real-time kernel, cameras by serial, the SpaceMouse's
permission); only then does it open a connection — each arm's FCI, the learner's CurveZMQ handshake — and only
to an address the config sets (a SET-ME placeholder is never dialled). Exit status 1 when any check fails.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lastr1.check import Check
from lastr1.configs import add_config_argument
from lastr1.configs.loader import load, unset_keys

if TYPE_CHECKING:
    from lastr1.configs.schema import Config

# What each role does not read (as `load_config(skip=...)` in its commands).
SKIP = {"actor": (), "learner": ("robot", "transport.learner_host")}
# Free disk a run needs beyond what is written already: the actor's spool; the learner's buffers + checkpoints.
LEARNER_DISK_GB = 20.0


def add_doctor_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--role", choices=["actor", "learner"], default="actor",
                        help="the robot PC (actor: arms, cameras, SpaceMouse, learner link) or the GPU box (learner)")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the learner's answer")


def doctor_main(args: argparse.Namespace) -> int:
    cfg = load(args.config, list(getattr(args, "overrides", None) or []))
    checks = run_checks(cfg, args.role, timeout_s=args.timeout)
    print(table(checks))
    failed = [c for c in checks if c.failed]
    print(f"\n{len(failed)} of {len(checks)} checks failed" if failed else f"\nall {len(checks)} checks passed",
          file=sys.stderr if failed else sys.stdout)
    return 1 if failed else 0


def disk(cfg: Config, role: str) -> Check:
    where = Path(cfg.run_dir).resolve()
    probe = next(p for p in [where, *where.parents] if p.exists())
    free = shutil.disk_usage(probe).free / 2**30
    need = cfg.transport.spool_max_bytes / 2**30 + 1 if role == "actor" else LEARNER_DISK_GB
    detail = f"{free:.1f} GiB free at {probe} (run_dir {cfg.run_dir}); the {role} needs ≥ {need:.1f} GiB"
    if free < need:
        what = "transport.spool_max_bytes" if role == "actor" else "learner.rollout_capacity"
        return Check("disk", "FAIL", detail, f"free space there, point run_dir elsewhere, or lower {what}")
    return Check("disk", "ok", detail)


def run_checks(cfg: Config, role: str, *, timeout_s: float = 5.0, camera_context: Any = None,
               arm_hosts: list[str] | None = None, rt_flag: Path | None = None) -> list[Check]:
    """Every check of `role`, local ones first. `camera_context`, `arm_hosts`, `rt_flag`: stand-ins for the
    machine's (a pyrealsense2 software context, the simulator's FCI addresses, a kernel flag file)."""
    from lastr1.policy import checks as policy_checks
    from lastr1.robot import checks as robot_checks
    from lastr1.transport import checks as transport_checks

    unset = unset_keys(cfg, SKIP[role])
    out = [Check("config", "FAIL", "still SET-ME: " + ", ".join(unset),
                 "set each in your copy of the config (the comment beside it says where to find it)")
           if unset else Check("config", "ok", f"no placeholders among what the {role} reads")]
    out += policy_checks.torch_cuda(cfg, role)
    out.append(policy_checks.model_folder(cfg))
    if role == "learner":
        out.append(policy_checks.teacher_folder(cfg))
    out.append(transport_checks.key_files(cfg, role))
    out.append(disk(cfg, role))
    if role == "actor":
        kw = {} if rt_flag is None else {"flag": rt_flag}
        out.append(robot_checks.realtime_kernel(cfg, **kw))
        out += robot_checks.cameras(cfg, camera_context)
        out.append(robot_checks.spacemouse(cfg))
        # Connections last, and only to addresses the config sets.
        if cfg.robot.kind == "real" or arm_hosts:
            if any(k.startswith("robot.arms") for k in unset) and not arm_hosts:
                out.append(Check("arm", "skip", "robot.arms[].host not set: not dialled"))
            else:
                out += robot_checks.arms(cfg, arm_hosts)
        else:
            out.append(Check("arm", "skip", f"robot.kind is {cfg.robot.kind}"))
        if "transport.learner_host" in unset:
            out.append(Check("learner", "skip", "transport.learner_host not set: not dialled"))
        else:
            out.append(transport_checks.learner_handshake(cfg, timeout_s))
    return out


def table(checks: list[Check]) -> str:
    w = max(len(c.name) for c in checks)
    lines = [f"{'check':<{w}}  status  detail", f"{'-' * w}  ------  ------"]
    for c in checks:
        lines.append(f"{c.name:<{w}}  {c.status:<6}  {c.detail}")
        if c.fix and c.status in ("FAIL", "warn"):
            lines.append(f"{'':<{w}}  {'':<6}  fix: {c.fix}")
    return "\n".join(lines)
