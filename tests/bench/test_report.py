"""The benchmarks' common result schema and the `bench all` report (pure: no infra)."""

import json

from bench.__main__ import BENCHMARKS
from bench.report import Headline, Outcome, Summary, headline_line, markdown, write_report


def test_ratio_and_pass_follow_the_direction_and_both_goals() -> None:
    rating = Headline(
        "end to end", 26_000, "events/s", baseline=30_000, target=25_000, ratio_target=0.8
    )
    assert rating.ratio == 0.867
    assert rating.passed is True
    short_of_ceiling = Headline(
        "end to end", 26_000, "events/s", baseline=40_000, target=25_000, ratio_target=0.8
    )
    assert short_of_ceiling.passed is False  # the rate alone is not enough
    latency = Headline("p99", 70.0, "ms", better="lower", target=60.0)
    assert latency.passed is False
    assert Headline("p99", 59.0, "ms", better="lower", target=60.0).passed is True
    assert Headline("no goal", 1.0, "x").passed is None
    assert Headline("not measured", None, "ms", target=1.0).passed is False
    assert Headline("no baseline", 3.0, "x", baseline=0).ratio is None


def test_headline_line_names_ratio_baseline_and_target() -> None:
    h = Headline(
        "end to end",
        20_000,
        "events/s",
        baseline=25_000,
        baseline_name="ceiling",
        target=25_000,
        ratio_target=0.8,
    )
    line = headline_line("rating", h)
    assert line == (
        "rating: end to end 20,000 events/s = 0.8 x ceiling (25,000);"
        " target >= 25,000 events/s and ratio >= 0.8: NOT met"
    )


def _outcomes() -> list[Outcome]:
    ok = Outcome(
        "launch",
        "just bench launch",
        "ok",
        10.0,
        1.0,
        1.5,
        summary=Summary(
            [
                Headline(
                    "p99",
                    50.0,
                    "ms",
                    better="lower",
                    baseline=25.0,
                    baseline_name="POST answered",
                    target=60.0,
                )
            ],
            latencies={
                "POST -> running": {
                    "count": 3,
                    "p50_ms": 20.0,
                    "p90_ms": 40.0,
                    "p99_ms": 50.0,
                    "max_ms": 50.0,
                }
            },
        ),
    )
    failed = Outcome("auth", "just bench auth", "failed", 1.0, 1.5, 1.4, error="exit 1")
    return [ok, failed]


def _run() -> dict:
    return {
        "command": "just bench all",
        "started_at": "2026-01-01T00:00:00+0000",
        "environment": {"cpus": 2, "git_sha": "abc", "git_dirty": False, "python": "3.11"},
        "load_average_1m_before": 1.0,
        "load_average_1m_after": 1.4,
        "seconds": 11.0,
    }


def test_markdown_has_a_row_per_headline_and_per_failure() -> None:
    text = markdown(_run(), _outcomes())
    assert (
        "| launch | p99 | 50.0 ms | 25.0 (POST answered) | 2 | <= 60.0 | yes | 1.00 / 1.50 |"
        in text
    )
    assert "| auth | failed: exit 1 |" in text
    assert "- auth: `just bench auth`" in text


def test_write_report_writes_json_markdown_and_plots(tmp_path) -> None:
    paths = write_report(_run(), _outcomes(), tmp_path)
    assert set(paths) == {"json", "markdown", "ratios_png", "latency_png"}
    document = json.loads(paths["json"].read_text())
    (launch, auth) = document["benchmarks"]
    assert launch["headlines"][0] == {
        "name": "p99",
        "value": 50.0,
        "unit": "ms",
        "better": "lower",
        "baseline": 25.0,
        "baseline_name": "POST answered",
        "ratio": 2.0,
        "target": 60.0,
        "ratio_target": None,
        "passed": True,
    }
    assert auth["status"] == "failed" and auth["headlines"] == []
    for png in ("ratios_png", "latency_png"):
        assert paths[png].read_bytes().startswith(b"\x89PNG")


def test_every_registered_benchmark_has_the_interface() -> None:
    for name, module in BENCHMARKS.items():
        for attribute in ("SUMMARY", "add_arguments", "main", "headlines"):
            assert hasattr(module, attribute), f"{name} lacks {attribute}"
