"""C2SP transparency-log checkpoints (https://c2sp.org/tlog-checkpoint), signed as notes.

The body is the note text::

    <origin>\\n
    <tree size, decimal, no leading zeroes>\\n
    <root hash, standard base64>\\n
    [<extension line>\\n ...]

Time is carried in one extension line, ``time <RFC 3339 UTC>``, formatted exactly as
``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (always six fractional digits, always ``Z``), so every
tz-aware datetime round-trips and a checkpoint has exactly one text. Why an extension line:
the issue asks the log to sign the time with the tree head, and a note's Ed25519
signature covers its whole text, extensions included; tlog-checkpoint allows opaque
extension lines (and discourages them only because generic monitors cannot audit them; a
witness cosignature, c2sp.org/tlog-cosignature, timestamps a checkpoint without changing
it, and can be added later without changing this format). The time line comes first among
the extensions; other extension lines are kept opaque, in order.
"""

import base64
import binascii
import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass

from gpucloud_trust.merkle import HASH_SIZE
from gpucloud_trust.note import Signer, Verifier, open_note, sign_note

TIME_EXTENSION = "time "
_SIZE = re.compile(r"0|[1-9][0-9]*")
_TIME = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\.(\d{6})Z")
MAX_TREE_SIZE = (1 << 64) - 1


class CheckpointError(ValueError):
    """A checkpoint body that does not parse, or one from another log."""


class WrongOrigin(CheckpointError):
    """A well-formed checkpoint of another log."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    time: dt.datetime | None = None
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin:
            raise CheckpointError("origin must be one non-empty line")
        if not 0 <= self.size <= MAX_TREE_SIZE:
            raise CheckpointError("tree size must fit in 64 bits")
        if len(self.root) != HASH_SIZE:
            raise CheckpointError("root hash must be 32 bytes")
        if self.time is not None and self.time.utcoffset() is None:
            raise CheckpointError("checkpoint time must be timezone-aware")
        for line in self.extensions:
            if not line or "\n" in line or line.startswith(TIME_EXTENSION):
                raise CheckpointError("extension lines are non-empty single lines, not time")

    def body(self) -> str:
        """The note text: origin, size, base64 root, then the extension lines."""
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode()]
        if self.time is not None:
            lines.append(TIME_EXTENSION + format_time(self.time))
        lines.extend(self.extensions)
        return "".join(line + "\n" for line in lines)

    def sign(self, *signers: Signer) -> bytes:
        """The signed checkpoint note."""
        return sign_note(self.body(), *signers)


def format_time(value: dt.datetime) -> str:
    if value.utcoffset() is None:
        raise CheckpointError("checkpoint time must be timezone-aware")
    u = value.astimezone(dt.UTC)  # strftime would not zero-pad years below 1000
    return (
        f"{u.year:04d}-{u.month:02d}-{u.day:02d}T"
        f"{u.hour:02d}:{u.minute:02d}:{u.second:02d}.{u.microsecond:06d}Z"
    )


def parse_time(text: str) -> dt.datetime:
    match = _TIME.fullmatch(text)
    if not match:
        raise CheckpointError("time is not YYYY-MM-DDTHH:MM:SS.ffffffZ")
    try:
        return dt.datetime(*(int(g) for g in match.groups()), tzinfo=dt.UTC)
    except ValueError as e:
        raise CheckpointError(f"time is not a valid date: {e}") from None


def parse_body(text: str) -> Checkpoint:
    """Parse a checkpoint note text (as `note.open_note` returns it)."""
    if not text.endswith("\n"):
        raise CheckpointError("checkpoint text must end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise CheckpointError("checkpoint needs origin, size and root hash lines")
    origin, size, root, *rest = lines
    if not _SIZE.fullmatch(size):
        raise CheckpointError("tree size is not a decimal number without leading zeroes")
    try:
        root_hash = base64.b64decode(root.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise CheckpointError("root hash is not base64") from None
    if base64.b64encode(root_hash).decode() != root:
        raise CheckpointError("root hash is not canonical base64")
    time = None
    if rest and rest[0].startswith(TIME_EXTENSION):
        time = parse_time(rest[0][len(TIME_EXTENSION) :])
        rest = rest[1:]
    checkpoint = Checkpoint(origin, int(size), root_hash, time, tuple(rest))
    if checkpoint.body() != text:  # e.g. a second time line, an empty extension line
        raise CheckpointError("checkpoint text is not in canonical form")
    return checkpoint


def open_checkpoint(message: bytes, log_keys: Iterable[Verifier], origin: str) -> Checkpoint:
    """Verify a signed checkpoint note against the log's keys and parse its body, which must
    name ``origin``. Signatures by other keys (witnesses, a rotated-out key) are ignored, as
    the note spec requires. Raises `NoteError` subclasses for the note (no signature by a log
    key, a bad one, a malformed note) and `CheckpointError` for the body."""
    checkpoint = parse_body(open_note(message, log_keys).text)
    if checkpoint.origin != origin:
        raise WrongOrigin(f"checkpoint is from {checkpoint.origin!r}, not {origin!r}")
    return checkpoint
