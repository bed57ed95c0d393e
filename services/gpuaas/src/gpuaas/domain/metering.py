"""Usage intervals: closed, non-overlapping slices of an allocation's running time.

Every `period` a running allocation closes the interval [cursor, cursor + period); on
leaving running it closes [cursor, now) as the final one. Interval ids are UUIDv5 of
(allocation id, sequence), so a re-emitted interval is the same event downstream.
"""

import dataclasses
import datetime as dt
import uuid

USAGE_TYPE = "metering.usage.recorded"
# A fixed namespace: interval ids must be the same on every replica and every retry.
INTERVAL_NAMESPACE = uuid.UUID("6f1d1c2e-5b0a-4c39-9a52-4d0b8e7f3a10")


@dataclasses.dataclass(frozen=True, slots=True)
class UsageInterval:
    interval_id: uuid.UUID
    sequence: int
    started_at: dt.datetime
    ended_at: dt.datetime
    final: bool

    @property
    def duration_ms(self) -> int:
        return int((self.ended_at - self.started_at) / dt.timedelta(milliseconds=1))


def interval_id(allocation_id: uuid.UUID, sequence: int) -> uuid.UUID:
    return uuid.uuid5(INTERVAL_NAMESPACE, f"{allocation_id}:{sequence}")


def due_intervals(
    allocation_id: uuid.UUID,
    cursor: dt.datetime,
    sequence: int,
    now: dt.datetime,
    period: dt.timedelta,
    *,
    final: bool = False,
) -> list[UsageInterval]:
    """Closed periods since `cursor`; with `final`, the remainder up to `now` as well."""
    out: list[UsageInterval] = []
    while cursor + period <= now:
        end = cursor + period
        out.append(
            UsageInterval(interval_id(allocation_id, sequence), sequence, cursor, end, False)
        )
        cursor, sequence = end, sequence + 1
    if final:
        out.append(UsageInterval(interval_id(allocation_id, sequence), sequence, cursor, now, True))
    return out
