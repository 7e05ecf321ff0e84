"""`lastr1 keys`, the actor's spool and the learner's duplicate detection, each on its own."""

import os
import stat

import pytest
import zmq.auth
from hypothesis import given, settings
from hypothesis import strategies as st

from lastr1.cli import main as cli
from lastr1.transport import curve_keys
from lastr1.transport.dedup import Dedup, SeqSet
from lastr1.transport.errors import KeyFileMissing, SpoolFull
from lastr1.transport.spool import Spool


def mode(p):
    return stat.S_IMODE(os.stat(p).st_mode)


def test_lastr1_keys_writes_the_documented_layout_with_private_secrets(tmp_path, capsys):
    d = tmp_path / "keys"
    assert cli(["keys", "--dir", str(d), "-n", "2"]) == 0
    assert mode(d) == 0o700 and mode(d / "actors") == 0o700
    for name in ("learner", "actors/actor0", "actors/actor1"):
        assert mode(d / f"{name}.key_secret") == 0o600 and mode(d / f"{name}.key") == 0o644
        public, secret = zmq.auth.load_certificate(d / f"{name}.key_secret")
        assert zmq.auth.load_certificate(d / f"{name}.key") == (public, None) and len(secret) == 40
        assert zmq.curve_public(secret) == public  # a matching pair
    assert set(curve_keys.allowed_actors(d).values()) == {"actor0", "actor1"}
    assert "learner.key_secret" in capsys.readouterr().out


def test_lastr1_keys_refuses_to_overwrite_without_force(tmp_path, capsys):
    d = tmp_path / "keys"
    assert cli(["keys", "--dir", str(d)]) == 0
    before = (d / "learner.key_secret").read_bytes()
    assert cli(["keys", "--dir", str(d)]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert (d / "learner.key_secret").read_bytes() == before
    assert cli(["keys", "--dir", str(d), "--add", "--actors", "arm2"]) == 0  # adds, keeps the learner key
    assert (d / "learner.key_secret").read_bytes() == before and (d / "actors/arm2.key").is_file()
    assert cli(["keys", "--dir", str(d), "--force"]) == 0
    assert (d / "learner.key_secret").read_bytes() != before


def test_missing_keys_name_the_file_and_the_command(tmp_path):
    with pytest.raises(KeyFileMissing, match="learner.key_secret") as e:
        curve_keys.learner_pair(tmp_path)
    assert "lastr1 keys" in e.value.hint
    (tmp_path / "actors").mkdir()
    with pytest.raises(KeyFileMissing, match="no actor public keys"):
        curve_keys.allowed_actors(tmp_path)


def test_spool_survives_a_restart_and_continues_the_seq_stream(tmp_path):
    s = Spool(tmp_path / "a0", max_bytes=1 << 20, segment_bytes=300)
    for seq in range(10):
        s.append(seq, bytes([seq]) * 100)
    for seq in range(6):
        s.ack(seq)
    s.maintain()
    epoch = s.epoch
    s.close()
    s = Spool(tmp_path / "a0", max_bytes=1 << 20, segment_bytes=300)
    assert s.epoch == epoch and s.next_seq == 10
    assert set(range(6, 10)) <= set(s.seqs())  # unacknowledged ones come back (a few acked ones may too)
    assert s.read(8) == bytes([8]) * 100
    for seq in s.seqs():
        s.ack(seq)
    s.maintain()
    s.close()
    s = Spool(tmp_path / "a0", max_bytes=1 << 20, segment_bytes=300)
    assert s.seqs() == [] and s.next_seq == 10 and s.epoch == epoch  # never reuses a seq, even with nothing left
    s.close()


def test_spool_cuts_a_torn_record_and_keeps_the_rest(tmp_path):
    s = Spool(tmp_path / "a0", max_bytes=1 << 20, segment_bytes=1 << 20)
    for seq in range(3):
        s.append(seq, b"x" * 50)
    s.close()
    seg = sorted((tmp_path / "a0").glob("seg_*.log"))[-1]
    with open(seg, "ab") as f:
        f.write(b"LSP1" + b"\x03" * 20)  # a crash in the middle of the 4th write
    s = Spool(tmp_path / "a0", max_bytes=1 << 20, segment_bytes=1 << 20)
    assert s.seqs() == [0, 1, 2] and s.next_seq == 3
    s.close()


def test_full_spool_refuses_loudly(tmp_path):
    s = Spool(tmp_path / "a0", max_bytes=1000, segment_bytes=1 << 20)
    for seq in range(4):
        s.append(seq, b"x" * 200)
    with pytest.raises(SpoolFull, match="refusing to take more"):
        s.append(4, b"x" * 200)
    for seq in range(4):
        s.ack(seq)
    s.maintain()  # acknowledged data is given back to the disk
    s.append(4, b"x" * 200)
    assert s.seqs() == [4] and s.bytes_used < 300
    s.close()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 60)), max_size=80))
def test_seqset_is_a_set(ops):
    """Watermark + set-above behaves exactly like the plain set of everything added (or advanced past)."""
    s, model = SeqSet(), set()
    for advance, x in ops:
        if advance:
            s.advance(x)
            model |= set(range(x + 1))
        else:
            assert s.add(x) == (x not in model)
            model.add(x)
        assert all((i in s) == (i in model) for i in range(70))
        assert s.watermark + 1 not in s.above and all(a > s.watermark + 1 for a in s.above)


def test_dedup_state_round_trips_and_rejects_other_versions():
    d = Dedup()
    for seq in (0, 1, 2, 5):
        d.add("a0", 7, seq)
    d.add("a1", 3, 0)
    back = Dedup.from_dict(d.to_dict())
    assert ("a0", 7, 2) in back and ("a0", 7, 5) in back and ("a0", 7, 3) not in back and ("a0", 8, 0) not in back
    assert back.watermark("a0", 7) == 2 and back.to_dict() == d.to_dict()
    with pytest.raises(ValueError, match="version"):
        Dedup.from_dict({"version": 99, "streams": []})
