"""`lastr1 doctor`'s robot-PC checks: the real-time kernel, cameras by serial and their USB link, the
SpaceMouse's HID permission, and each arm's FCI. Only the last opens a connection (an FCI session)."""

from __future__ import annotations

import grp
import os
import platform
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lastr1.check import Check

if TYPE_CHECKING:
    from lastr1.configs.schema import Config

RT_FLAG = Path("/sys/kernel/realtime")
UDEV_RULE = ('/etc/udev/rules.d/99-spacemouse.rules: KERNEL=="hidraw*", ATTRS{idVendor}=="256f", MODE="0666" '
             '(046d for older Logitech-made ones), then `sudo udevadm control --reload && sudo udevadm trigger` '
             "and replug")


def realtime_kernel(cfg: Config, flag: Path = RT_FLAG) -> Check:
    """franky with realtime: enforce needs a PREEMPT_RT kernel (/sys/kernel/realtime reads 1)."""
    if not any(a.realtime == "enforce" for a in cfg.robot.arms[: cfg.task.n_arms]):
        return Check("real-time kernel", "skip", "no arm has realtime: enforce")
    rt = flag.is_file() and flag.read_text().strip() == "1"
    if rt:
        return Check("real-time kernel", "ok", f"PREEMPT_RT ({platform.release()})")
    return Check("real-time kernel", "FAIL", f"{platform.release()} is not a PREEMPT_RT kernel ({flag} != 1)",
                 "install and boot a PREEMPT_RT kernel (Franka's 'Setting up the real-time kernel' guide)")


def cameras(cfg: Config, context: Any = None) -> list[Check]:
    """Each configured camera found by its serial, on a USB 3 link (a D4xx on USB 2 drops to low modes)."""
    if cfg.robot.kind != "real" or not cfg.robot.cameras:
        return [Check("cameras", "skip", f"robot.kind is {cfg.robot.kind}")]
    try:
        import pyrealsense2 as rs
    except ImportError as e:
        return [Check("cameras", "FAIL", f"pyrealsense2 is not importable: {e}", "pip install 'lastr1[robot]'")]
    ctx = context if context is not None else rs.context()
    info = rs.camera_info
    found = {}
    for d in ctx.query_devices():
        usb = d.get_info(info.usb_type_descriptor) if d.supports(info.usb_type_descriptor) else ""
        found[d.get_info(info.serial_number)] = (d.get_info(info.name), usb)
    out = []
    for c in cfg.robot.cameras:
        name = f"camera {c.name}"
        if c.serial not in found:
            out.append(Check(name, "FAIL", f"serial {c.serial} not connected (found: "
                             f"{', '.join(found) or 'no RealSense'})",
                             "plug it into a USB 3 port, or set robot.cameras[].serial to one found "
                             "(`rs-enumerate-devices -s`); none found at all: install librealsense's udev rules"))
            continue
        model, usb = found[c.serial]
        if usb.startswith("2"):
            out.append(Check(name, "FAIL", f"{model} {c.serial} on USB {usb}",
                             "use a USB 3 port and cable (blue port; a USB 2 hub or extension caps the modes)"))
        else:
            out.append(Check(name, "ok", f"{model} {c.serial}, USB {usb or 'type not reported'}"))
    return out


def _usable(path: str) -> bool:
    """Whether a non-root operator may open the node: read+write for others, or for a group they are in."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o006 == 0o006:
        return True
    groups = set(os.getgroups())
    try:
        groups |= {g.gr_gid for g in grp.getgrall() if os.environ.get("USER", "") in g.gr_mem}
    except KeyError:
        pass
    return mode & 0o060 == 0o060 and st.st_gid in groups and st.st_gid != 0


def spacemouse(cfg: Config) -> Check:
    """The configured number of SpaceMice present, their HID nodes usable without root (the udev rule)."""
    if cfg.robot.kind != "real" or not cfg.robot.teleop:
        return Check("SpaceMouse", "skip", f"robot.kind is {cfg.robot.kind}")
    from lastr1.errors import Lastr1Error
    from lastr1.robot.spacemouse import find_spacemice

    try:
        found = find_spacemice()
    except Lastr1Error as e:
        return Check("SpaceMouse", "FAIL", str(e).splitlines()[0], e.hint)
    want = len(cfg.robot.teleop)
    if len(found) < want:
        return Check("SpaceMouse", "FAIL", f"{len(found)} SpaceMouse(s) found, {want} configured",
                     "plug the SpaceMouse (its receiver) in; if it is plugged: " + UDEV_RULE)
    closed = [p for p in found if not _usable(p)]
    if closed:
        return Check("SpaceMouse", "FAIL", f"{', '.join(closed)} not readable and writable by a non-root user",
                     UDEV_RULE)
    return Check("SpaceMouse", "ok", ", ".join(f"{m} at {p}" for p, m in list(found.items())[:want]))


def arms(cfg: Config, hosts: list[str] | None = None) -> list[Check]:
    """Each arm's FCI answers: a franky session opens (real-time not enforced: that is its own check) and its
    state reads. `hosts`: the arms' addresses when not their configured ones (the simulator's)."""
    try:
        import franky
    except ImportError as e:
        return [Check("arm", "FAIL", f"franky is not importable: {e}", "pip install 'lastr1[robot]'")]
    out = []
    for i, a in enumerate(cfg.robot.arms[: cfg.task.n_arms]):
        host = hosts[i] if hosts else a.host
        name = f"arm {a.name} (FCI {host})"
        try:
            robot = franky.Robot(host, realtime_config=franky.RealtimeConfig.Ignore)
            state = robot.state
            out.append(Check(name, "ok", f"FCI answers; robot mode {state.robot_mode}"))
            del robot
        except Exception as e:  # franky's NetworkException, IncompatibleVersionException, ...
            out.append(Check(name, "FAIL", f"{type(e).__name__}: {e}",
                             "check the cable and robot.arms[].host (Desk → Settings → Network), unlock the joints "
                             "and activate FCI in Desk"))
    return out
