"""The one atomic write every small state file goes through (lastr1/files.py)."""

from __future__ import annotations

import json
import os

import pytest

from lastr1 import files


def test_contents_reach_the_disk_before_the_rename_and_the_rename_before_the_return(tmp_path, monkeypatch):
    calls: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        calls.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(a, b):
        calls.append(("replace", str(b)))
        real_replace(a, b)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    target = tmp_path / "state.json"
    files.save_json(target, {"next_seq": 7})
    assert json.loads(target.read_text()) == {"next_seq": 7}
    tmp_file = str(tmp_path / ".state.json.tmp")
    assert calls == [("fsync", tmp_file), ("replace", str(target)), ("fsync", str(tmp_path))]
    calls.clear()
    files.save_json(target, {"next_seq": 8}, fsync=False)  # the spool's default: a process crash, not power
    assert calls == [("replace", str(target))]


def test_a_write_cut_short_leaves_the_old_version(tmp_path, monkeypatch):
    target = tmp_path / "meta.json"
    files.save_json(target, {"total": 1})

    def crash(a, b):
        raise OSError("power cut")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        files.save_json(target, {"total": 2})
    assert json.loads(target.read_text()) == {"total": 1}
