"""Operator keys through a pseudo-terminal: the reader sees a real tty in cbreak mode; we type on the master side."""

from __future__ import annotations

import os
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pytest

from lastr1.configs.robot import KeysConfig
from lastr1.errors import ConfigError
from lastr1.robot.errors import ConnectionLost, DeviceNotFound
from lastr1.robot.keys import Key
from lastr1.robot.terminal_keys import TerminalKeys

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def pty_pair():
    master, slave = os.openpty()
    yield master, slave
    for fd in (master, slave):
        try:
            os.close(fd)
        except OSError:
            pass


def collect(keys: TerminalKeys, n: int, timeout: float = 2.0) -> list[Key]:
    got: list[Key] = []
    end = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < end:
        got += keys.poll()
        time.sleep(0.005)
    return got


def test_default_keys_in_order(pty_pair):
    master, slave = pty_pair
    with TerminalKeys(fd=slave) as keys:
        os.write(master, b"sfr e")
        assert collect(keys, 5) == [Key.SUCCESS, Key.FAILURE, Key.RESET, Key.PAUSE, Key.ESTOP]
        os.write(master, b"xS?")  # unbound keys are ignored; caps lock still works
        assert collect(keys, 1) == [Key.SUCCESS]
        assert keys.poll() == []


def test_escape_key_versus_arrow_keys(pty_pair):
    master, slave = pty_pair
    with TerminalKeys(fd=slave) as keys:
        os.write(master, b"\x1b[A\x1b[1;5C\x1bOP")  # up, ctrl-right, F1: not the Esc key
        time.sleep(0.1)
        assert keys.poll() == []
        os.write(master, b"\x1b")  # a lone Esc, after the escape-sequence grace period
        assert collect(keys, 1) == [Key.ESTOP]
        os.write(master, b"\x1b[Bs")
        assert collect(keys, 1) == [Key.SUCCESS]


def test_cbreak_while_open_and_settings_restored_on_close(pty_pair):
    master, slave = pty_pair
    before = termios.tcgetattr(slave)
    assert before[3] & termios.ICANON and before[3] & termios.ECHO
    keys = TerminalKeys(fd=slave)
    during = termios.tcgetattr(slave)
    assert not during[3] & termios.ICANON and not during[3] & termios.ECHO  # one key at a time, not echoed
    assert during[3] & termios.ISIG  # Ctrl-C still stops the program
    thread = keys._thread
    keys.close()
    assert not thread.is_alive()
    assert termios.tcgetattr(slave) == before
    keys.close()  # idempotent
    os.fstat(slave)  # a caller's fd is not closed for it


def test_poll_never_blocks(pty_pair):
    _, slave = pty_pair
    with TerminalKeys(fd=slave) as keys:
        t = time.perf_counter()
        for _ in range(1000):
            keys.poll()
        assert time.perf_counter() - t < 0.5


def test_configurable_bindings(pty_pair):
    master, slave = pty_pair
    cfg = KeysConfig(success=["y"], failure=["n"], reset=["enter"], pause=["p"], estop=["q", "space"])
    with TerminalKeys(cfg, fd=slave) as keys:
        os.write(master, b"s yn\rpq")  # 's' no longer means anything; space is now the e-stop
        assert collect(keys, 6) == [Key.ESTOP, Key.SUCCESS, Key.FAILURE, Key.RESET, Key.PAUSE, Key.ESTOP]


@pytest.mark.parametrize(
    "cfg, match",
    [(KeysConfig(pause=["spacebar"]), "'spacebar' is not a key"), (KeysConfig(reset=["s"]), "bound to both")],
)
def test_bad_bindings_are_named(pty_pair, cfg, match):
    with pytest.raises(ConfigError, match=match):
        TerminalKeys(cfg, fd=pty_pair[1])


def test_terminal_gone_is_reported(pty_pair):
    master, slave = pty_pair
    keys = TerminalKeys(fd=slave)
    os.write(master, b"s")
    assert collect(keys, 1) == [Key.SUCCESS]
    os.close(master)  # the terminal window closed
    end = time.monotonic() + 2
    while keys._thread.is_alive() and time.monotonic() < end:
        time.sleep(0.01)
    with pytest.raises(ConnectionLost, match="operator keys"):
        keys.poll()
    keys.close()


def test_not_a_terminal(tmp_path):
    f = tmp_path / "plain.txt"
    f.write_text("")
    with pytest.raises(DeviceNotFound, match="is not a terminal") as e:
        TerminalKeys(KeysConfig(tty=str(f)))
    assert "scripted keys" in e.value.hint


def test_no_terminal_at_all_under_ci():
    # A new session has no controlling terminal, and stdin is /dev/null: exactly CI.
    code = "from lastr1.robot.terminal_keys import TerminalKeys\nTerminalKeys()"
    p = subprocess.run([sys.executable, "-c", code], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       start_new_session=True, cwd=ROOT, timeout=30)
    assert p.returncode != 0
    assert "DeviceNotFound: no terminal to read operator keys from (/dev/tty" in p.stderr
    assert "run in a terminal" in p.stderr


def test_reader_is_a_daemon_thread_named_for_debugging(pty_pair):
    with TerminalKeys(fd=pty_pair[1]) as keys:
        assert keys._thread.daemon and keys._thread.name == "terminal-keys"
        assert keys._thread in threading.enumerate()
