"""The numbers and pictures the pages show, as pure functions (stdlib and the CLI's pure
pricing rule only): money, burn rate, runway, cost so far, the usage chart and the MIG slice
picture. Money stays integer micro-units until it is formatted."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from gpucloud_cli.pricing import in_effect

MICROS = 1_000_000
LIVE_STATES = ("requested", "scheduled", "provisioning", "running", "releasing")
# What burns money now or as soon as it runs (gpuaas's runway check counts the same).
BURNING_STATES = ("scheduled", "provisioning", "running")
TERMINAL_STATES = ("released", "rejected", "release_failed")
MEMORY_SLICES, COMPUTE_SLICES = 8, 7


def parse_time(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def money(micros: int | None, currency: str = "USD") -> str:
    """1234567 -> "$1.23" (cents, rounded half away from zero; sub-cent amounts keep 4
    decimals so a slice's price per hour is not shown as $0.00)."""
    if micros is None:
        return "-"
    sign = "-" if micros < 0 else ""
    value = abs(micros)
    places = 2 if value >= 10_000 or value == 0 else 4
    step = 10 ** (6 - places)
    rounded = (value + step // 2) // step
    whole, frac = divmod(rounded, 10**places)
    symbol = "$" if currency == "USD" else ""
    suffix = "" if currency == "USD" else f" {currency}"
    return f"{sign}{symbol}{whole:,}.{frac:0{places}d}{suffix}"


def parse_money(text: str) -> int:
    """ "12.50" -> 12_500_000 micro-units; ValueError for anything else (at most 2 decimals,
    positive)."""
    cleaned = text.strip().lstrip("$").replace(",", "")
    whole, _, frac = cleaned.partition(".")
    if not whole.isdigit() or (frac and (not frac.isdigit() or len(frac) > 2)):
        raise ValueError("an amount like 25 or 25.50")
    micros = int(whole) * MICROS + int((frac or "0").ljust(2, "0")) * 10_000
    if micros <= 0:
        raise ValueError("more than 0")
    return micros


def when(text: str | None) -> str:
    """An API timestamp as "YYYY-MM-DD HH:MM:SS UTC". The services write UTC ISO 8601
    (`...+00:00` or `Z`): sliced without parsing (a list of 1,000 rows formats 2,000)."""
    if not text:
        return "-"
    if len(text) >= 19 and text[10] == "T" and (text.endswith(("+00:00", "Z"))):
        return f"{text[:10]} {text[11:19]} UTC"
    moment = parse_time(text)
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "-"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def ago(text: str | None, now: dt.datetime | None = None) -> str:
    moment = parse_time(text)
    if moment is None:
        return "-"
    now = now or dt.datetime.now(dt.UTC)
    return duration((now - moment).total_seconds()) + " ago"


def _prices(prices: Iterable[Mapping[str, Any]]) -> list[SimpleNamespace]:
    return [
        SimpleNamespace(
            price_key=p["price_key"],
            currency=p["currency"],
            micros_per_gpu_hour=p["micros_per_gpu_hour"],
            effective_from=p["effective_from"],
            tenant_id=p.get("tenant_id"),
        )
        for p in prices
    ]


@dataclass(frozen=True)
class PriceBook:
    """billing's price book as the caller sees it, with billing's rule for the version in
    effect (gpucloud_cli.pricing: the tenant's own version wins, then the latest)."""

    versions: tuple[SimpleNamespace, ...]
    tenant_id: str | None
    currency: str | None = None

    @classmethod
    def of(cls, prices: Iterable[Mapping[str, Any]], tenant_id: str | None, currency=None):
        return cls(tuple(_prices(prices)), tenant_id, currency)

    def hourly(self, price_key: str, now: dt.datetime | None = None) -> int | None:
        found = in_effect(
            self.versions, price_key, self.tenant_id, now or dt.datetime.now(dt.UTC), self.currency
        )
        return found.micros_per_gpu_hour if found else None


def allocation_hourly(allocation: Mapping[str, Any], book: PriceBook) -> int | None:
    per_unit = book.hourly(allocation["price_key"])
    return None if per_unit is None else per_unit * int(allocation.get("count") or 1)


def burn_per_hour(allocations: Iterable[Mapping[str, Any]], book: PriceBook) -> int:
    return sum(allocation_hourly(a, book) or 0 for a in allocations if a["state"] in BURNING_STATES)


def runway_seconds(available_micros: int, burn_micros_per_hour: int) -> float | None:
    """How long the balance lasts at the current burn; None when nothing burns."""
    if burn_micros_per_hour <= 0:
        return None
    return max(0.0, available_micros / burn_micros_per_hour * 3600)


def ran_seconds(allocation: Mapping[str, Any], now: dt.datetime | None = None) -> float:
    """Seconds the allocation has run (usage accrues only while running)."""
    started = parse_time(allocation.get("running_since"))
    if started is None:
        return 0.0
    if allocation["state"] == "running":
        end = now or dt.datetime.now(dt.UTC)
    else:
        end = parse_time(allocation.get("updated_at")) or started
    return max(0.0, (end - started).total_seconds())


def cost_so_far(allocation: Mapping[str, Any], book: PriceBook, now=None) -> int | None:
    """Price x count x time run, rounded up to the micro-unit as billing rates. An
    estimate: billing's rated charges (per closed interval) are on the billing page."""
    hourly = allocation_hourly(allocation, book)
    if hourly is None:
        return None
    return math.ceil(hourly * ran_seconds(allocation, now) / 3600)


# The MIG picture: a GPU's 8 memory slices and 7 compute slices, this allocation's
# instance highlighted. gpuaas tells only this allocation's instances, not its neighbours'.


@dataclass(frozen=True)
class Slice:
    index: int
    x: int
    mine: bool


@dataclass(frozen=True)
class GpuPicture:
    gpu_index: int
    memory: tuple[Slice, ...]
    compute: tuple[Slice, ...]
    label: str
    whole: bool


SLICE_W, SLICE_GAP = 40, 4


def gpu_pictures(instances: Sequence[Mapping[str, Any]]) -> list[GpuPicture]:
    by_gpu: dict[int, list[Mapping[str, Any]]] = {}
    for instance in instances:
        by_gpu.setdefault(int(instance["gpu_index"]), []).append(instance)
    pictures = []
    for gpu_index, mine in sorted(by_gpu.items()):
        memory_used: set[int] = set()
        compute_used: set[int] = set()
        for instance in mine:
            start, size = int(instance["start"]), int(instance["memory_slices"])
            memory_used |= set(range(start, start + size))
            # Compute slices drawn under the instance's memory (NVIDIA's pictures do the
            # same); a 7g or a whole GPU takes all 7.
            compute = int(instance["compute_slices"])
            first = min(start, COMPUTE_SLICES - compute)
            compute_used |= set(range(first, first + compute))
        whole = any(int(i["memory_slices"]) == MEMORY_SLICES for i in mine)
        parts = ", ".join(
            f"memory slices {int(i['start'])}-{int(i['start']) + int(i['memory_slices']) - 1}, "
            f"{int(i['compute_slices'])} compute"
            for i in mine
        )
        pictures.append(
            GpuPicture(
                gpu_index=gpu_index,
                memory=tuple(
                    Slice(i, i * (SLICE_W + SLICE_GAP), i in memory_used)
                    for i in range(MEMORY_SLICES)
                ),
                compute=tuple(
                    Slice(i, i * (SLICE_W + SLICE_GAP), i in compute_used)
                    for i in range(COMPUTE_SLICES)
                ),
                label=f"GPU {gpu_index}: this allocation holds {parts}",
                whole=whole,
            )
        )
    return pictures


# The usage chart: one stacked bar per day, one colour per price key.

PALETTE = ("#1f5fbf", "#b35900", "#2e7d32", "#8e24aa", "#c62828", "#00695c", "#5d4037")


@dataclass(frozen=True)
class Bar:
    day: str
    x: int
    segments: tuple[tuple[str, int, int, int], ...]  # (colour, y, height, micros)
    total: int


@dataclass(frozen=True)
class UsageChart:
    bars: tuple[Bar, ...]
    keys: tuple[tuple[str, str], ...]  # (price key, colour)
    peak: int
    width: int
    height: int

    @property
    def empty(self) -> bool:
        return self.peak == 0


def usage_chart(days: Sequence[tuple[str, Mapping[str, int]]], height: int = 160) -> UsageChart:
    """`days`: (YYYY-MM-DD, {price key: charged micros}) in order."""
    keys = sorted({k for _, per_key in days for k, v in per_key.items() if v})
    colours = {k: PALETTE[i % len(PALETTE)] for i, k in enumerate(keys)}
    peak = max((sum(per_key.values()) for _, per_key in days), default=0)
    bar_w, gap = 28, 8
    bars = []
    for i, (day, per_key) in enumerate(days):
        y = height
        segments = []
        for key in keys:
            value = per_key.get(key, 0)
            if value <= 0 or peak <= 0:
                continue
            h = max(1, round(value / peak * (height - 10)))
            y -= h
            segments.append((colours[key], y, h, value))
        bars.append(Bar(day, i * (bar_w + gap), tuple(segments), sum(per_key.values())))
    return UsageChart(
        tuple(bars),
        tuple((k, colours[k]) for k in keys),
        peak,
        max(1, len(days)) * (bar_w + gap),
        height,
    )


def month_of(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m")


def recent_months(now: dt.datetime, count: int = 6) -> list[str]:
    months, year, month = [], now.year, now.month
    for _ in range(count):
        months.append(f"{year:04d}-{month:02d}")
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    return months


def day_windows(now: dt.datetime, days: int) -> list[tuple[str, dt.datetime, dt.datetime]]:
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    windows = []
    for back in range(days - 1, -1, -1):
        start = today - dt.timedelta(days=back)
        windows.append((start.strftime("%Y-%m-%d"), start, start + dt.timedelta(days=1)))
    return windows
