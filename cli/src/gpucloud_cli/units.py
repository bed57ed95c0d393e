"""Pure parsing and formatting of what users type and read: durations (`30m`, `1h30m`),
amounts of money (`25`, `12.50`, kept as integer micro-units, never floats), months and
points in time (`2026-12`, `2026-12-01`, `7d` ago)."""

import datetime as dt
import re
from decimal import Decimal, InvalidOperation

MICROS = 1_000_000
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_PART = re.compile(r"(\d+)\s*([smhdw])")
_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def parse_duration(text: str) -> int:
    """Seconds in `90`, `90s`, `30m`, `1h30m`, `2d`, `1w 2d` (units s m h d w, largest
    first, each at most once). ValueError with a message for anything else."""
    raw = text.strip().lower()
    if not raw:
        raise ValueError("empty duration")
    if raw.isdigit():
        return int(raw)
    position, total, seen = 0, 0, []
    for match in _PART.finditer(raw):
        if raw[position : match.start()].strip():
            break
        unit = match.group(2)
        if seen and _UNITS[unit] >= _UNITS[seen[-1]]:
            raise ValueError(f"{text!r}: units must go from largest to smallest, once each")
        seen.append(unit)
        total += int(match.group(1)) * _UNITS[unit]
        position = match.end()
    if not seen or raw[position:].strip():
        raise ValueError(f"{text!r} is not a duration: use e.g. 90s, 30m, 1h30m, 2d")
    return total


def format_duration(seconds: int | float) -> str:
    """`3h05m`, `30m`, `45s`, `2d04h` (two largest units)."""
    s = int(seconds)
    if s < 0:
        return "-" + format_duration(-s)
    if s < 60:
        return f"{s}s"
    days, rest = divmod(s, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h{minutes:02d}m" if minutes else f"{hours}h"
    return f"{minutes}m{secs:02d}s" if secs else f"{minutes}m"


def parse_amount(text: str) -> int:
    """Micro-units in `25`, `25.5`, `1,000.50`, `$25`: positive, at most 6 decimals."""
    raw = text.strip().lstrip("$").replace(",", "").replace("_", "")
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise ValueError(f"{text!r} is not an amount: use e.g. 25 or 12.50") from None
    if not value.is_finite() or value <= 0:
        raise ValueError(f"{text!r}: the amount must be more than 0")
    micros = value * MICROS
    if micros != micros.to_integral_value():
        raise ValueError(f"{text!r}: at most 6 decimal places")
    return int(micros)


def format_money(micros: int, currency: str | None = None) -> str:
    """`12.50 USD`, `0.514286 USD`, `-3.60`: cents always, more digits only when they count."""
    sign = "-" if micros < 0 else ""
    whole, fraction = divmod(abs(micros), MICROS)
    digits = f"{fraction:06d}".rstrip("0").ljust(2, "0")
    text = f"{sign}{whole:,}.{digits}"
    return f"{text} {currency}" if currency else text


def parse_month(text: str) -> str:
    """`YYYY-MM`, as billing's statement route takes it."""
    if not _MONTH.match(text.strip()):
        raise ValueError(f"{text!r} is not a month: use YYYY-MM, e.g. 2026-12")
    return text.strip()


def parse_since(text: str, now: dt.datetime) -> dt.datetime:
    """A point in time: an ISO date or date-time (UTC when no offset), or a duration ago
    (`7d`, `24h`). `now` must be tz-aware."""
    raw = text.strip()
    try:
        return now - dt.timedelta(seconds=parse_duration(raw))
    except ValueError:
        pass
    try:
        moment = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: use 2026-12-01, 2026-12-01T08:00:00Z or 7d (ago)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def short_id(identifier: str) -> str:
    """A UUID's last 8 hex digits, its random part: UUIDv7s start with a timestamp, so ids
    made the same minute share their first digits."""
    return identifier.replace("-", "")[-8:]
