"""Release promotion: the state machine of a published version (docs/state-machines.md).

    published -> dev -> staging -> stable          (promotions, one channel at a time)
    published | dev | staging | stable -> yanked   (withdrawn from every channel; terminal)

A version is promoted to the next channel only: never skipping one, never twice to the same.
A yanked version is never promoted again. Promotions and yanks are append-only records; the
state is derived from them.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass


class Channel(enum.StrEnum):
    DEV = "dev"
    STAGING = "staging"
    STABLE = "stable"


ORDER = (Channel.DEV, Channel.STAGING, Channel.STABLE)


class IllegalTransition(Exception):
    """A promotion or yank the state machine does not allow; `reason` is a stable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ReleaseState:
    channels: tuple[Channel, ...] = ()
    yanked: bool = False

    @classmethod
    def of(cls, promoted: Iterable[str], yanked: bool) -> ReleaseState:
        got = {Channel(c) for c in promoted}
        return cls(tuple(c for c in ORDER if c in got), yanked)

    @property
    def highest(self) -> Channel | None:
        return self.channels[-1] if self.channels else None

    @property
    def next_channel(self) -> Channel | None:
        if self.yanked:
            return None
        index = ORDER.index(self.highest) + 1 if self.highest else 0
        return ORDER[index] if index < len(ORDER) else None

    @property
    def live_channels(self) -> tuple[Channel, ...]:
        """Channels a launch may use: none once yanked."""
        return () if self.yanked else self.channels

    def promote(self, target: Channel) -> ReleaseState:
        if self.yanked:
            raise IllegalTransition("yanked", "a yanked version is never promoted again")
        if target in self.channels:
            raise IllegalTransition("already-promoted", f"already promoted to {target}")
        expected = self.next_channel
        if target != expected:
            raise IllegalTransition(
                "skipped-channel",
                f"promote to {expected} first: channels are {' -> '.join(ORDER)}, none skipped",
            )
        return ReleaseState((*self.channels, target), False)

    def yank(self) -> ReleaseState:
        if self.yanked:
            raise IllegalTransition("already-yanked", "the version is already yanked")
        return ReleaseState(self.channels, True)
