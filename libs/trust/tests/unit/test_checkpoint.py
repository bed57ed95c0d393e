"""tlog-checkpoint bodies, the time extension, and signed checkpoints.

The sum.golang.org checkpoint and its verifier key are the ones transparency-dev/formats
log/note_test.go parses (commit 5242c17862d31acd165afafa140ecc973a621469): a real
checkpoint signed by the Go checksum database; the invalid bodies follow its
log/checkpoint_test.go (commit 7a6ef700ee5660b2580c9da92063af300820fdee).
"""

import base64
import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpucloud_trust.checkpoint import (
    Checkpoint,
    CheckpointError,
    WrongOrigin,
    open_checkpoint,
    parse_body,
)
from gpucloud_trust.merkle import leaf_hash
from gpucloud_trust.note import BadSignature, Signer, UnverifiedNote, Verifier, sign_note

SUMDB_VKEY = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8"
SUMDB_CHECKPOINT = (
    "go.sum database tree\n"
    "6476701\n"
    "mb8QLQIs0Z0yP5Cstq6guj87oXWeC9gEM8oVikmm9Wk=\n"
    "\n"
    "— sum.golang.org Az3grsLX85Gz+s1SiTbgkuqxgItqFq7gsMUEyVnrsa9LM7Us9S+1xbFIGu95949rj4nPRYfvim"
    "WEPWL+o3GeoWwOoAw=\n"
).encode()
ORIGIN = "audit.gpucloud.example/fleet"
ROOT = leaf_hash(b"a root")
ROOT64 = base64.b64encode(ROOT).decode()
T = dt.datetime(2026, 3, 1, 12, 30, 5, 123456, tzinfo=dt.UTC)


class TestBody:
    def test_the_go_checksum_database_checkpoint(self):
        checkpoint = open_checkpoint(
            SUMDB_CHECKPOINT, [Verifier.from_vkey(SUMDB_VKEY)], "go.sum database tree"
        )
        assert checkpoint.size == 6476701
        assert checkpoint.root == base64.b64decode("mb8QLQIs0Z0yP5Cstq6guj87oXWeC9gEM8oVikmm9Wk=")
        assert checkpoint.time is None and checkpoint.extensions == ()

    def test_format_with_time_and_extensions(self):
        checkpoint = Checkpoint(ORIGIN, 42, ROOT, T, ("other extension",))
        body = f"{ORIGIN}\n42\n{ROOT64}\ntime 2026-03-01T12:30:05.123456Z\nother extension\n"
        assert checkpoint.body() == body
        assert parse_body(body) == checkpoint
        assert Checkpoint(ORIGIN, 0, ROOT).body() == f"{ORIGIN}\n0\n{ROOT64}\n"

    @given(
        st.datetimes(timezones=st.timezones()),
        st.integers(min_value=0, max_value=2**64 - 1),
        st.lists(
            st.text(alphabet="abcdefghij =+/.-", min_size=1).filter(
                lambda s: not s.startswith("time ")
            ),
            max_size=3,
        ),
    )
    def test_round_trip(self, when, size, extensions):
        checkpoint = Checkpoint(ORIGIN, size, ROOT, when, tuple(extensions))
        parsed = parse_body(checkpoint.body())
        assert parsed == Checkpoint(ORIGIN, size, ROOT, when.astimezone(dt.UTC), tuple(extensions))

    @pytest.mark.parametrize(
        "body",
        [
            "Head\n9944\n",
            f"\n9944\n{ROOT64}\n",
            f"Log\n123\n{ROOT64}",
            f"Log\nbananas\n{ROOT64}\n",
            f"Log\n-34\n{ROOT64}\n",
            f"Log\n0123\n{ROOT64}\n",
            f"Log\n+5\n{ROOT64}\n",
            f"Log\n3438945738945739845734895735\n{ROOT64}\n",
            "Log\n123\nThisIsn'tBase64\n",
            "Log\n123\nYmFuYW5hcw==\n",  # 7 bytes, not a SHA-256 root
            f"Log\n123\n{ROOT64[:-2]}\n",
            f"Log\n123\n{ROOT64}\n\n",  # empty extension line
            f"Log\n123\n{ROOT64}\ntime 2026-03-01T12:30:05Z\n",  # not six fraction digits
            f"Log\n123\n{ROOT64}\ntime 2026-02-30T12:30:05.000000Z\n",
            f"Log\n123\n{ROOT64}\ntime 2026-03-01T12:30:05.000000+01:00\n",
            f"Log\n123\n{ROOT64}\ntime 2026-03-01T12:30:05.000000Z\n"
            "time 2026-03-01T12:30:06.000000Z\n",
            f"Log\n123\n{ROOT64}\nx\ntime 2026-03-01T12:30:05.000000Z\n",  # time comes first
        ],
    )
    def test_invalid_bodies(self, body):
        with pytest.raises(CheckpointError):
            parse_body(body)

    def test_naive_time_is_refused(self):
        with pytest.raises(CheckpointError):
            Checkpoint(ORIGIN, 1, ROOT, dt.datetime(2026, 3, 1))


class TestSigned:
    def test_sign_and_open(self):
        log = Signer.generate(ORIGIN)
        checkpoint = Checkpoint(ORIGIN, 7, ROOT, T)
        assert open_checkpoint(checkpoint.sign(log), [log.verifier], ORIGIN) == checkpoint

    def test_witness_cosignatures_are_ignored_and_a_witness_alone_is_not_enough(self):
        log, witness = Signer.generate(ORIGIN), Signer.generate("witness.example/w1")
        signed = Checkpoint(ORIGIN, 7, ROOT, T).sign(log, witness)
        assert open_checkpoint(signed, [log.verifier], ORIGIN).size == 7
        with pytest.raises(UnverifiedNote):
            open_checkpoint(Checkpoint(ORIGIN, 7, ROOT).sign(witness), [log.verifier], ORIGIN)

    def test_another_logs_checkpoint_and_a_changed_one_are_refused(self):
        log = Signer.generate(ORIGIN)
        with pytest.raises(WrongOrigin):
            open_checkpoint(Checkpoint(ORIGIN, 7, ROOT).sign(log), [log.verifier], "other/log")
        signed = Checkpoint(ORIGIN, 7, ROOT, T).sign(log)
        with pytest.raises(BadSignature):
            open_checkpoint(signed.replace(b"\n7\n", b"\n8\n"), [log.verifier], ORIGIN)

    def test_a_signed_note_that_is_not_a_checkpoint(self):
        log = Signer.generate(ORIGIN)
        with pytest.raises(CheckpointError):
            open_checkpoint(
                sign_note("if this is a checkpoint I eat my hat\n", log), [log.verifier], ORIGIN
            )
