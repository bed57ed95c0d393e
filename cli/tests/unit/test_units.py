import datetime as dt

import pytest

from gpucloud_cli.units import (
    format_duration,
    format_money,
    parse_amount,
    parse_duration,
    parse_month,
    parse_since,
    short_id,
)


class TestParseDuration:
    @pytest.mark.parametrize(
        ("text", "seconds"),
        [
            ("90", 90),
            ("90s", 90),
            ("30m", 1800),
            ("1h30m", 5400),
            ("1h 30m", 5400),
            ("2d", 172_800),
            ("1w2d3h4m5s", 604_800 + 172_800 + 3 * 3600 + 4 * 60 + 5),
            (" 45M ", 2700),
        ],
    )
    def test_accepts(self, text: str, seconds: int) -> None:
        assert parse_duration(text) == seconds

    @pytest.mark.parametrize(
        "text", ["", "m", "30x", "1h30", "30m1h", "1m1m", "-5m", "1.5h", "h1", "30 minutes"]
    )
    def test_refuses(self, text: str) -> None:
        with pytest.raises(ValueError):
            parse_duration(text)

    @pytest.mark.parametrize("seconds", [0, 59, 60, 61, 3599, 3600, 5400, 86_400, 90_061])
    def test_formatting_round_trips_to_the_minute(self, seconds: int) -> None:
        text = format_duration(seconds)
        assert abs(parse_duration(text) - seconds) < (3600 if seconds >= 86_400 else 60)

    def test_formats_the_two_largest_units(self) -> None:
        assert [format_duration(s) for s in (45, 1800, 1830, 5400, 3600, 90_061)] == [
            "45s",
            "30m",
            "30m30s",
            "1h30m",
            "1h",
            "1d01h",
        ]


class TestMoney:
    @pytest.mark.parametrize(
        ("text", "micros"),
        [("25", 25_000_000), ("12.50", 12_500_000), ("0.000001", 1), ("$1,000.5", 1_000_500_000)],
    )
    def test_parses_to_integer_micro_units(self, text: str, micros: int) -> None:
        assert parse_amount(text) == micros

    @pytest.mark.parametrize("text", ["0", "-5", "abc", "1.0000001", "nan", "inf", ""])
    def test_refuses(self, text: str) -> None:
        with pytest.raises(ValueError):
            parse_amount(text)

    def test_formats_cents_and_the_digits_that_count(self) -> None:
        assert format_money(12_500_000, "USD") == "12.50 USD"
        assert format_money(514_286) == "0.514286"
        assert format_money(-6_001) == "-0.006001"
        assert format_money(1_234_000_000_000) == "1,234,000.00"


class TestTimes:
    def test_month(self) -> None:
        assert parse_month("2026-12") == "2026-12"
        for bad in ("2026-13", "2026-1", "26-12", "2026-12-01", "../x"):
            with pytest.raises(ValueError):
                parse_month(bad)

    def test_since_takes_dates_times_and_durations_ago(self) -> None:
        now = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)
        assert parse_since("7d", now) == now - dt.timedelta(days=7)
        assert parse_since("2026-12-01", now) == dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
        assert parse_since("2026-12-01T08:00:00Z", now) == dt.datetime(
            2026, 12, 1, 8, tzinfo=dt.UTC
        )
        offset = parse_since("2026-12-01T08:00:00+02:00", now)
        assert offset == dt.datetime(2026, 12, 1, 6, tzinfo=dt.UTC)
        with pytest.raises(ValueError):
            parse_since("yesterday", now)

    def test_short_id_is_the_random_tail_of_a_uuid7(self) -> None:
        assert short_id("01a23c0d-0fc7-76f5-8022-a3bd30157174") == "30157174"
