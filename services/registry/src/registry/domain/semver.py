"""Semantic Versioning 2.0.0: parsing and precedence (semver.org, section 11).

Precedence compares major, minor, patch numerically; a pre-release sorts before its release;
pre-release identifiers compare left to right, numeric ones numerically and below
alphanumeric ones (ASCII order), and a longer list wins when all shared identifiers are equal.
Build metadata never affects precedence, so two versions differing only in it are equal: the
catalog refuses the second (a version's place in the order must be unique).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import total_ordering

# The official regular expression from semver.org (numeric identifiers without leading zeros).
_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
MAX_LENGTH = 128


class InvalidVersion(ValueError):
    pass


@total_ordering
@dataclass(frozen=True)
class Version:
    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()
    build: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def parse(cls, text: str) -> Version:
        if not isinstance(text, str) or len(text) > MAX_LENGTH:
            raise InvalidVersion(f"a version is a SemVer 2.0 string of at most {MAX_LENGTH} chars")
        match = _SEMVER.match(text)
        if match is None:
            raise InvalidVersion(f"{text!r} is not a SemVer 2.0 version (MAJOR.MINOR.PATCH)")
        major, minor, patch, pre, build = match.groups()
        return cls(
            int(major),
            int(minor),
            int(patch),
            tuple(pre.split(".")) if pre else (),
            tuple(build.split(".")) if build else (),
        )

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            text += "-" + ".".join(self.prerelease)
        if self.build:
            text += "+" + ".".join(self.build)
        return text

    @property
    def is_prerelease(self) -> bool:
        return bool(self.prerelease)

    def _key(self) -> tuple:
        # A release (no pre-release) sorts after every pre-release of the same core.
        pre = tuple(_identifier_key(i) for i in self.prerelease)
        return (self.major, self.minor, self.patch, not self.prerelease, pre)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() < other._key()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())


def _identifier_key(identifier: str) -> tuple[int, int, str]:
    """Numeric identifiers sort numerically and before alphanumeric ones."""
    if identifier.isdigit():
        return (0, int(identifier), "")
    return (1, 0, identifier)
