"""Price book resolution and rating arithmetic."""

import datetime as dt
import uuid

import pytest

from billing.domain.pricing import PriceBook, PriceVersion, billable_seconds, charge_micros

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
TENANT = uuid.uuid4()


def _v(micros: int, at: dt.datetime, tenant: uuid.UUID | None = None, inc: int = 1):
    return PriceVersion("gpu:h100", "USD", micros, at, tenant, inc)


class TestPriceAt:
    def test_usage_is_priced_at_the_version_in_effect_when_it_started(self):
        book = PriceBook([_v(2_000_000, T0), _v(3_000_000, T0 + dt.timedelta(days=1))])
        late = book.price_at("gpu:h100", "USD", TENANT, T0 + dt.timedelta(hours=5))
        assert late is not None and late.micros_per_gpu_hour == 2_000_000
        after = book.price_at("gpu:h100", "USD", TENANT, T0 + dt.timedelta(days=2))
        assert after is not None and after.micros_per_gpu_hour == 3_000_000

    def test_tenant_override_wins_only_once_in_effect(self):
        override_from = T0 + dt.timedelta(days=1)
        book = PriceBook([_v(2_000_000, T0), _v(1_000_000, override_from, TENANT)])
        before = book.price_at("gpu:h100", "USD", TENANT, T0 + dt.timedelta(hours=1))
        assert before is not None and before.micros_per_gpu_hour == 2_000_000
        after = book.price_at("gpu:h100", "USD", TENANT, override_from)
        assert after is not None and after.micros_per_gpu_hour == 1_000_000
        other = book.price_at("gpu:h100", "USD", uuid.uuid4(), override_from)
        assert other is not None and other.micros_per_gpu_hour == 2_000_000

    def test_nothing_before_the_first_version_or_in_another_currency(self):
        book = PriceBook([_v(2_000_000, T0)])
        assert book.price_at("gpu:h100", "USD", TENANT, T0 - dt.timedelta(seconds=1)) is None
        assert book.price_at("gpu:h100", "EUR", TENANT, T0) is None


class TestCharge:
    @pytest.mark.parametrize(
        ("ms", "inc", "seconds"),
        [(0, 1, 0), (1, 1, 1), (1000, 1, 1), (1001, 1, 2), (59_000, 60, 60), (61_000, 60, 120)],
    )
    def test_rated_to_the_second_then_to_the_minimum_increment(self, ms, inc, seconds):
        assert billable_seconds(ms, inc) == seconds

    def test_amount_is_price_times_quantity_times_hours_rounded_up_to_the_micro(self):
        # 3.60 per GPU-hour = 1000 micros per GPU-second; 2 GPUs for 60 s
        assert charge_micros(_v(3_600_000, T0), 2, 60_000) == (60, 120_000)
        # 1 micro per hour for 1 s rounds up to 1 micro
        assert charge_micros(_v(1, T0), 1, 1000) == (1, 1)
