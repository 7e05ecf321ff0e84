"""`FrankyArm.close()` against a franky-sim server that stops answering mid-motion (its own server: the test
freezes it with SIGSTOP). franky's destructor joins the motion's control thread with the GIL held: a close()
that waited on a control thread that never ends froze a whole CI run for 30 minutes, beyond pytest-timeout's
reach (its control thread waited for a Move response from a live server that never sent it; a frozen server
instead makes libfranka give up after ~1 s, which this checks close() survives within its bound)."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest
from sim_helpers import overrides, require_sim

require_sim()

from lastr1 import configs  # noqa: E402
from lastr1.robot.errors import RobotError  # noqa: E402
from lastr1.robot.franky_arm import FrankyArm  # noqa: E402
from lastr1.robot.sim.client import SimServer  # noqa: E402


@pytest.mark.timeout(120)
def test_closing_while_the_server_is_frozen_returns_within_its_bound():
    cfg = configs.load("sim_insert_hex", overrides(7, 1))
    cfg.robot.arms[0].close_timeout_s = 2.0
    with SimServer(cfg) as server:
        arm = FrankyArm(cfg.robot.arms[0], host=server.hosts[0])
        arm.connect()
        s = arm.state()[0]
        far = s.position + [0, 0.15, 0]
        arm.move_to(far[None], s.quaternion[None], np.array([0.0]))
        time.sleep(0.2)
        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGSTOP)  # mid-motion: no more states, no answers
        try:
            t0 = time.monotonic()
            arm.close()
            took = time.monotonic() - t0
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        assert took < 2.0 + 5.0 + 3.0  # the motion's wait, the hand thread's join, slack on a loaded machine
        with pytest.raises(RobotError, match="not connected"):
            arm.state()
