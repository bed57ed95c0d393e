import datetime as dt

import pytest

from portal import figures

NOW = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)
PRICES = [
    {"price_key": "mig:h100-80gb:1g.10gb", "currency": "USD", "micros_per_gpu_hour": 514_286,
     "effective_from": "2020-01-01T00:00:00Z", "tenant_id": None},
    {"price_key": "gpu:h100-80gb", "currency": "USD", "micros_per_gpu_hour": 3_600_000,
     "effective_from": "2020-01-01T00:00:00Z", "tenant_id": None},
    {"price_key": "gpu:h100-80gb", "currency": "USD", "micros_per_gpu_hour": 3_000_000,
     "effective_from": "2021-01-01T00:00:00Z", "tenant_id": "t1"},
]  # fmt: skip


def alloc(state, key="gpu:h100-80gb", count=1, since=None, updated=None):
    return {"state": state, "price_key": key, "count": count, "running_since": since,
            "updated_at": updated}  # fmt: skip


class TestMoney:
    @pytest.mark.parametrize(
        ("micros", "text"),
        [(0, "$0.00"), (1_234_567, "$1.23"), (-5_000_000, "-$5.00"), (514_286, "$0.51"),
         (4_286, "$0.0043"), (1_234_567_890_000, "$1,234,567.89")],
    )  # fmt: skip
    def test_formats_micros(self, micros, text):
        assert figures.money(micros) == text

    def test_other_currencies_keep_their_code(self):
        assert figures.money(2_500_000, "EUR") == "2.50 EUR"

    @pytest.mark.parametrize(("text", "micros"), [("25", 25_000_000), ("$12.5", 12_500_000)])
    def test_parses_amounts(self, text, micros):
        assert figures.parse_money(text) == micros

    @pytest.mark.parametrize("bad", ["", "abc", "1.234", "-5", "0", "1e3"])
    def test_refuses_what_is_not_an_amount(self, bad):
        with pytest.raises(ValueError):
            figures.parse_money(bad)


class TestBurnAndRunway:
    def test_the_tenant_override_wins_and_only_burning_states_count(self):
        book = figures.PriceBook.of(PRICES, "t1")
        live = [alloc("running"), alloc("requested"), alloc("provisioning", count=2),
                alloc("released"), alloc("running", key="mig:h100-80gb:1g.10gb")]  # fmt: skip
        assert figures.burn_per_hour(live, book) == 3 * 3_000_000 + 514_286

    def test_another_tenant_pays_the_public_price(self):
        book = figures.PriceBook.of(PRICES, "t2")
        assert figures.burn_per_hour([alloc("running")], book) == 3_600_000

    def test_runway_at_the_current_burn(self):
        assert figures.runway_seconds(1_800_000, 3_600_000) == 1800
        assert figures.runway_seconds(1_000, 0) is None
        assert figures.runway_seconds(-5, 3_600_000) == 0

    def test_cost_so_far_is_price_times_time_run_rounded_up(self):
        book = figures.PriceBook.of(PRICES, "t2")
        ran = alloc("released", since="2026-03-10T11:00:00Z", updated="2026-03-10T11:00:01Z")
        assert figures.cost_so_far(ran, book) == 1_000
        running = alloc("running", since="2026-03-10T11:30:00Z")
        assert figures.cost_so_far(running, book, NOW) == 1_800_000
        assert figures.cost_so_far(alloc("requested"), book) == 0
        assert figures.cost_so_far(alloc("running", key="gpu:none"), book) is None


class TestPictures:
    def test_a_1g_slice_lights_its_memory_slice_and_one_compute_slice(self):
        (gpu,) = figures.gpu_pictures(
            [{"gpu_index": 3, "start": 4, "memory_slices": 1, "compute_slices": 1}]
        )
        assert [s.index for s in gpu.memory if s.mine] == [4]
        assert [s.index for s in gpu.compute if s.mine] == [4]
        assert gpu.gpu_index == 3 and not gpu.whole and "memory slices 4-4" in gpu.label

    def test_a_whole_gpu_lights_everything(self):
        (gpu,) = figures.gpu_pictures(
            [{"gpu_index": 0, "start": 0, "memory_slices": 8, "compute_slices": 7}]
        )
        assert all(s.mine for s in gpu.memory + gpu.compute) and gpu.whole

    def test_a_2g_at_the_last_start_keeps_its_compute_inside_the_gpu(self):
        (gpu,) = figures.gpu_pictures(
            [{"gpu_index": 0, "start": 6, "memory_slices": 2, "compute_slices": 1}]
        )
        assert [s.index for s in gpu.compute if s.mine] == [6]

    def test_the_usage_chart_stacks_price_keys_per_day(self):
        chart = figures.usage_chart(
            [("2026-03-01", {"a": 100, "b": 300}), ("2026-03-02", {}), ("2026-03-03", {"a": 50})]
        )
        assert chart.peak == 400 and [k for k, _ in chart.keys] == ["a", "b"]
        first = chart.bars[0]
        assert sum(h for _, _, h, _ in first.segments) == chart.height - 10
        assert chart.bars[1].segments == () and not chart.empty
        assert figures.usage_chart([("d", {})]).empty

    def test_months_and_days(self):
        assert figures.recent_months(NOW, 3) == ["2026-03", "2026-02", "2026-01"]
        assert figures.recent_months(dt.datetime(2026, 1, 5, tzinfo=dt.UTC), 2)[1] == "2025-12"
        windows = figures.day_windows(NOW, 2)
        assert [w[0] for w in windows] == ["2026-03-09", "2026-03-10"]
        assert windows[1][2] - windows[1][1] == dt.timedelta(days=1)


class TestTables:
    def test_allocation_rows_escape_every_value(self):
        from portal.tables import allocation_rows

        row = {"id": "a1<b>", "project_id": 'p"1', "count": 2, "sku": "h100-80gb",
               "mig_profile": None, "state": "rejected", "reason": "<script>x</script>",
               "created_at": "2026-03-10T11:00:00.5+00:00", "running_since": None}  # fmt: skip
        html = str(allocation_rows([row]))
        assert "<script>" not in html and "&lt;script&gt;" in html
        assert 'href="/projects/p&quot;1/allocations/a1&lt;b&gt;"' in html
        assert "2 &times; h100-80gb</td>" in html and "2026-03-10 11:00:00 UTC" in html

    @pytest.mark.parametrize(
        ("text", "shown"),
        [("2026-03-10T11:00:00.123456+00:00", "2026-03-10 11:00:00 UTC"),
         ("2026-03-10T11:00:00Z", "2026-03-10 11:00:00 UTC"),
         ("2026-03-10T13:00:00+02:00", "2026-03-10 11:00:00 UTC"), (None, "-")],
    )  # fmt: skip
    def test_timestamps_are_shown_in_utc(self, text, shown):
        assert figures.when(text) == shown
