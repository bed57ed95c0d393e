import datetime as dt

from gpucloud_cli.pricing import in_effect, quote
from gpucloud_cli.sdk.models import Price

NOW = dt.datetime(2026, 12, 3, 12, tzinfo=dt.UTC)
KEY = "mig:h100-80gb:1g.10gb"


def _price(micros: int, since: str, tenant: str | None = None, currency: str = "USD", key=KEY):
    return Price(f"p{micros}", key, currency, micros, 1, since, tenant)


def test_the_latest_version_in_effect_wins() -> None:
    prices = [
        _price(100, "2020-01-01T00:00:00Z"),
        _price(200, "2026-06-01T00:00:00+00:00"),
        _price(300, "2027-01-01T00:00:00Z"),  # not yet
        _price(999, "2020-01-01T00:00:00Z", key="gpu:h100-80gb"),
    ]
    assert in_effect(prices, KEY, "t1", NOW).micros_per_gpu_hour == 200


def test_the_tenants_own_price_beats_the_public_one() -> None:
    prices = [
        _price(200, "2026-06-01T00:00:00Z"),
        _price(150, "2025-01-01T00:00:00Z", tenant="t1"),
        _price(50, "2025-01-01T00:00:00Z", tenant="t2"),
    ]
    assert in_effect(prices, KEY, "t1", NOW).micros_per_gpu_hour == 150
    assert in_effect(prices, KEY, "t3", NOW).micros_per_gpu_hour == 200


def test_usd_is_chosen_among_several_currencies_unless_told() -> None:
    prices = [
        _price(90, "2025-01-01T00:00:00Z", currency="EUR"),
        _price(100, "2025-01-01T00:00:00Z"),
    ]
    assert in_effect(prices, KEY, "t1", NOW).currency == "USD"
    assert in_effect(prices, KEY, "t1", NOW, currency="EUR").micros_per_gpu_hour == 90


def test_a_quote_multiplies_by_the_count_and_nothing_is_a_missing_price() -> None:
    found = quote([_price(514_286, "2020-01-01T00:00:00Z")], KEY, 3, "t1", NOW)
    assert found is not None and found.hourly_micros == 1_542_858
    assert found.to_json()["tenant_override"] is False
    assert quote([], KEY, 1, "t1", NOW) is None
