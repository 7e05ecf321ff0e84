"""Shared by the tests: skip only when the simulator is genuinely absent; unique addresses and ports, so several
suites may run at once on one machine. Every test takes its hosts and ports from here, never fixed ones."""

from __future__ import annotations

import ctypes.util
import os
import socket

import pytest


def require_sim() -> None:
    for module in ("franky", "franky_sim", "mujoco"):
        pytest.importorskip(module, reason=f"{module} is not installed (pip install 'lastr1[sim]')")
    if os.environ.get("MUJOCO_GL", "egl") == "egl" and ctypes.util.find_library("EGL") is None:
        pytest.skip("no EGL library: MuJoCo cannot render headless (apt install libegl1 libgl1-mesa-dri)")


def loopback(slot: int, n: int = 1) -> list[str]:
    """n loopback FCI addresses no other test process uses (several suites may run at once on one machine)."""
    a = os.getpid() % 200 + 20
    return [f"127.{a}.{slot}.{i + 2}" for i in range(n)]


def overrides(slot: int, n: int = 1, *extra: str) -> list[str]:
    return ["--robot.sim.hosts", "[" + ", ".join(loopback(slot, n)) + "]", *extra]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
