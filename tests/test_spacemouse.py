"""SpaceMouseTeleop with only the HID device faked: a stand-in for the hidapi C library under easyhid, so
easyhid's enumeration/device code and pyspacemouse's own report parsing run on crafted HID reports."""

from __future__ import annotations

import struct
import threading
import time
from collections import deque

import numpy as np
import pytest

from lastr1.configs.robot import TeleopConfig
from lastr1.errors import ConfigError
from lastr1.robot.errors import ConnectionLost, DeviceNotFound

easyhid = pytest.importorskip("easyhid.easyhid", reason="pyspacemouse (lastr1[robot]) is not installed")
pytest.importorskip("pyspacemouse")
from lastr1.robot.spacemouse import DualTeleop, SpaceMouseCalibration, SpaceMouseTeleop, spacemouse_teleop  # noqa: E402

COMPACT = (0x256F, 0xC635)  # SpaceMouse Compact: translation report 1, rotation report 2, buttons report 3
PRO_WIRELESS = (0x256F, 0xC632)  # one 13-byte report 1 with all six axes


class FakeHidDevice:
    def __init__(self, path: str, vid: int, pid: int, serial: str):
        self.path, self.vid, self.pid, self.serial = path, vid, pid, serial
        self.reports: deque[bytes] = deque()
        self.opened = False
        self.unplugged = False
        self.refuse_open = False

    # crafted HID input reports (report id first, little-endian int16 values, as the device sends them)
    def translate(self, x=0, y=0, z=0):
        self.reports.append(struct.pack("<Bhhh", 1, x, y, z))

    def rotate(self, rx=0, ry=0, rz=0):
        self.reports.append(struct.pack("<Bhhh", 2, rx, ry, rz))

    def six(self, x=0, y=0, z=0, rx=0, ry=0, rz=0):
        self.reports.append(struct.pack("<Bhhhhhh", 1, x, y, z, rx, ry, rz))

    def buttons(self, bits: int):
        self.reports.append(bytes([3, bits & 0xFF, 0, 0, 0, 0, 0]))


class FakeHidapi:
    """Replaces `easyhid.easyhid.hidapi` (the dlopen'ed libhidapi-hidraw) with the same C-level functions."""

    def __init__(self, ffi):
        self.ffi = ffi
        self.devices: list[FakeHidDevice] = []
        self._keep: list = []  # C buffers the enumeration points into

    def add(self, path, ids=COMPACT, serial="") -> FakeHidDevice:
        d = FakeHidDevice(str(path), *ids, serial)
        self.devices.append(d)
        return d

    def hid_enumerate(self, vid, pid):
        ffi, head = self.ffi, self.ffi.NULL
        for d in reversed([d for d in self.devices if not d.unplugged]):
            info = ffi.new("struct hid_device_info *")
            bufs = [ffi.new("char[]", d.path.encode()), ffi.new("wchar_t[]", d.serial),
                    ffi.new("wchar_t[]", "3Dconnexion"), ffi.new("wchar_t[]", "SpaceMouse")]
            info.path, info.serial_number, info.manufacturer_string, info.product_string = bufs
            info.vendor_id, info.product_id, info.release_number = d.vid, d.pid, 0x0437
            info.next = head
            self._keep += [info, *bufs]
            head = info
        return head

    def hid_free_enumeration(self, head):
        pass

    def hid_open_path(self, path):
        for d in self.devices:
            if d.path.encode() == bytes(path) and not d.unplugged and not d.refuse_open:
                d.opened = True
                return d
        return self.ffi.NULL

    def hid_set_nonblocking(self, dev, flag):
        dev.nonblocking = bool(flag)
        return 0

    def hid_read(self, dev, buf, length):
        if dev.unplugged:
            return -1
        if not dev.reports:
            return 0
        data = dev.reports.popleft()[:length]
        self.ffi.memmove(buf, data, len(data))
        return len(data)

    def hid_read_timeout(self, dev, buf, length, ms):
        return self.hid_read(dev, buf, length)

    def hid_write(self, dev, data, length):
        return length

    def hid_close(self, dev):
        dev.opened = False


@pytest.fixture
def hid(monkeypatch, tmp_path):
    fake = FakeHidapi(easyhid.ffi)
    monkeypatch.setattr(easyhid, "hidapi", fake)
    # pyspacemouse.open_by_path checks that the path exists on disk: give each fake device a file.
    fake.path = lambda name: (tmp_path / name).touch() or str(tmp_path / name)
    return fake


@pytest.fixture
def teleops():
    made = []
    yield made
    for t in made:
        t.close()


def open_teleop(teleops, **cfg) -> SpaceMouseTeleop:
    t = SpaceMouseTeleop(TeleopConfig(**cfg))
    teleops.append(t)
    t.connect()
    return t


def settle(t, pred, timeout=2.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        c = t.read()
        if pred(c):
            return c
        time.sleep(0.003)
    raise AssertionError(f"condition not met; last command {t.read()}")


def test_axes_deadzone_and_conventions(hid, teleops):
    dev = hid.add(hid.path("hidraw0"))
    t = open_teleop(teleops, deadzone=0.1)
    assert t.model == "SpaceMouseCompact" and dev.opened
    c = t.read()
    assert not c.intervening and np.all(c.action == 0)
    # HID reports: +x right, +y toward the user, +z down; rotations about them. 350 counts = full scale.
    dev.translate(x=175, y=-70, z=20)  # 0.5, toward the robot 0.2, down by 0.057 (inside the deadzone)
    dev.rotate(rx=350, ry=0, rz=-35)  # roll 1.0, yaw 0.1 (at the deadzone edge: 0)
    c = settle(t, lambda c: c.action[3] != 0)
    dz = lambda v: np.sign(v) * max(abs(v) - 0.1, 0) / 0.9  # noqa: E731
    # HID_Z_UP: x = x, y = -y, z = -z, roll = rx, pitch = -ry, yaw = -rz
    np.testing.assert_allclose(c.action[:6], [dz(0.5), dz(0.2), 0, 1.0, 0, 0], atol=1e-6)
    assert c.intervening and c.action[6] == 0.0  # no button yet: leave the gripper alone
    dev.translate(0, 0, 0)
    dev.rotate(0, 0, 0)
    c = settle(t, lambda c: not c.intervening)
    assert np.all(c.action[:6] == 0)


def test_signs_scales_and_map_from_calibration_file(hid, teleops, tmp_path):
    dev = hid.add(hid.path("hidraw0"), ids=PRO_WIRELESS, serial="ABC")
    cal = SpaceMouseCalibration(axis_map=[1, 0, 2, 3, 4, 5], axis_scale=[-1, 0.5, 2, 1, 1, -1], deadzone=0.0,
                                device_name="SpaceMouseProWireless")
    path = tmp_path / "spacemouse.yaml"
    cal.save(path)
    loaded = SpaceMouseCalibration.load(path)
    assert loaded.axis_map == [1, 0, 2, 3, 4, 5] and loaded.created  # a timestamp is written
    t = open_teleop(teleops, calibration_file=str(path), axis_scale=[9] * 6, deadzone=0.9)  # the file wins
    dev.six(x=35, y=-70, z=-105, rx=0, ry=-140, rz=175)  # device x .1, y .2, z .3, pitch .4, yaw -.5
    c = settle(t, lambda c: c.intervening)
    # action x = -1 · device y, action y = 0.5 · device x, z = 2 · z (clipped below 1), yaw = -1 · yaw
    np.testing.assert_allclose(c.action[:6], [-0.2, 0.05, 0.6, 0.0, 0.4, 0.5], atol=1e-6)
    dev.six(z=-350)
    c = settle(t, lambda c: c.action[2] == 1.0)  # 2 × 1.0, clipped to 1


def test_calibration_file_errors_are_named(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("axis_map: [0, 0, 1, 2, 3, 4]\n")
    with pytest.raises(ConfigError, match="permutation"):
        SpaceMouseCalibration.load(p)
    p.write_text("axis_mapp: [0, 1, 2, 3, 4, 5]\n")
    with pytest.raises(ConfigError, match="axis_mapp"):
        SpaceMouseCalibration.load(p)
    with pytest.raises(ConfigError, match="does not exist"):
        SpaceMouseTeleop(TeleopConfig(calibration_file=str(tmp_path / "none.yaml")))


def test_gripper_buttons_latch_and_intervening_while_held(hid, teleops):
    dev = hid.add(hid.path("hidraw0"))
    t = open_teleop(teleops)
    dev.buttons(0b01)  # LEFT held: close
    c = settle(t, lambda c: c.action[6] == 1.0)
    assert c.intervening
    dev.buttons(0)  # released: still closed, no longer intervening
    c = settle(t, lambda c: not c.intervening)
    assert c.action[6] == 1.0
    dev.buttons(0b10)  # RIGHT: open
    assert settle(t, lambda c: c.action[6] == -1.0).intervening
    dev.buttons(0)
    settle(t, lambda c: not c.intervening)
    t.sync_gripper(1.0)  # the actor takes over mid-grasp
    assert t.read().action[6] == 1.0


def test_toggle_mode_counts_every_press(hid, teleops):
    dev = hid.add(hid.path("hidraw0"))
    t = open_teleop(teleops, gripper_mode="toggle")
    for _ in range(3):  # three presses queued before the reader sees any: no edge may be lost
        dev.buttons(0b01)
        dev.buttons(0)
    c = settle(t, lambda c: len(dev.reports) == 0 and not c.intervening)
    assert c.action[6] == 1.0  # close, open, close


def test_two_devices_two_arms(hid, teleops):
    left = hid.add(hid.path("hidraw1"))
    right = hid.add(hid.path("hidraw0"))
    dual = spacemouse_teleop([TeleopConfig(name="left", device_index=1), TeleopConfig(name="right", device_index=0)])
    assert isinstance(dual, DualTeleop)
    teleops.append(dual)
    dual.connect()
    assert [t.path for t in dual.teleops] == [left.path, right.path]  # index counts in sorted path order
    left.translate(x=350)
    right.buttons(0b01)
    c = settle(dual, lambda c: c.action[0] > 0 and c.action[13] == 1.0)
    assert c.action.shape == (14,) and c.intervening
    assert c.action[7] == 0 and c.action[6] == 0.0  # each arm's numbers come from its own device


def test_the_same_device_twice_is_refused(hid, teleops):
    hid.add(hid.path("hidraw0"))
    hid.add(hid.path("hidraw1"))
    p = hid.devices[0].path
    dual = DualTeleop([SpaceMouseTeleop(TeleopConfig(device_index=0)), SpaceMouseTeleop(TeleopConfig(device_path=p))])
    teleops.append(dual)
    with pytest.raises(ConfigError, match="same SpaceMouse"):
        dual.connect()


def test_missing_device_errors(hid, teleops):
    with pytest.raises(DeviceNotFound, match="No connected or supported SpaceMouse") as e:
        open_teleop(teleops)
    assert "udev" in e.value.hint
    hid.add(hid.path("hidraw0"))
    hid.add(hid.path("hidraw9"), ids=(0x046D, 0xC077))  # a Logitech mouse: not a SpaceMouse
    with pytest.raises(DeviceNotFound, match=r"#1 but only 1 are connected: .*hidraw0 \(SpaceMouseCompact\)"):
        open_teleop(teleops, device_index=1)
    with pytest.raises(DeviceNotFound, match="not found; connected"):
        open_teleop(teleops, device_path="/dev/hidraw7")
    hid.devices[0].refuse_open = True  # present but not readable (udev permissions)
    with pytest.raises(DeviceNotFound, match="could not be opened") as e:
        open_teleop(teleops)
    assert "MODE=" in e.value.hint


def test_unplugged_device_raises_in_read_and_close_joins(hid, teleops):
    dev = hid.add(hid.path("hidraw0"))
    t = open_teleop(teleops)
    thread = t._thread
    dev.unplugged = True
    end = time.monotonic() + 2
    while thread.is_alive() and time.monotonic() < end:
        time.sleep(0.005)
    with pytest.raises(ConnectionLost, match="stopped answering"):
        t.read()
    t.close()
    assert not thread.is_alive() and not dev.opened
    t.close()  # idempotent


def test_reader_thread_is_not_a_busy_loop(hid, teleops):
    hid.add(hid.path("hidraw0"))
    t = open_teleop(teleops)
    cpu0 = time.process_time()
    time.sleep(0.3)
    # an idle reader sleeps between polls: far below one core while nothing arrives
    assert time.process_time() - cpu0 < 0.2
    t.close()
    assert not any(th.name.startswith("spacemouse-") for th in threading.enumerate())


def test_unknown_button_name_is_named_and_the_device_released(hid, teleops):
    dev = hid.add(hid.path("hidraw0"))
    with pytest.raises(ConfigError, match=r"has no button 'BTN_9'; it has \['LEFT', 'RIGHT'\]"):
        open_teleop(teleops, close_button="BTN_9")
    assert not dev.opened
