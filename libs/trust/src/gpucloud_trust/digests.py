"""Content digests: ``sha256:<64 lowercase hex>``, computed while bytes stream.

Hashing reads into one reused 1 MiB buffer (no copy per chunk, no allocation per chunk), so
verifying a file costs what SHA-256 of it costs (bench/registry.py measures the gap).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import BinaryIO

CHUNK = 1 << 20
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class InvalidDigest(ValueError):
    """Not a ``sha256:<hex>`` digest."""


def is_digest(value: object) -> bool:
    return isinstance(value, str) and _DIGEST.match(value) is not None


def check_digest(value: object) -> str:
    if not is_digest(value):
        raise InvalidDigest(f"expected sha256:<64 lowercase hex>, got {value!r:.80}")
    return value  # type: ignore[return-value]


def digest_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Digester:
    """SHA-256 and byte count of a stream fed chunk by chunk."""

    __slots__ = ("_hash", "size")

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.size = 0

    def update(self, chunk: bytes | memoryview) -> None:
        self._hash.update(chunk)
        self.size += len(chunk)

    @property
    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()


def digest_stream(stream: BinaryIO) -> tuple[str, int]:
    """(digest, size) of everything left in `stream`, read in 1 MiB chunks."""
    digester = Digester()
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    readinto = getattr(stream, "readinto", None)
    if readinto is None:
        while chunk := stream.read(CHUNK):
            digester.update(chunk)
        return digester.digest, digester.size
    while n := readinto(view):
        digester.update(view[:n])
    return digester.digest, digester.size


def digest_file(path: Path) -> tuple[str, int]:
    with path.open("rb", buffering=0) as f:
        return digest_stream(f)  # type: ignore[arg-type]
