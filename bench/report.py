"""The common result schema of every benchmark, and the whole-platform report.

Each benchmark module keeps its own detailed JSON (`bench/results/<name>-<time>.json`) and
adds one adapter, `headlines(results) -> Summary`, that maps it onto this schema:

- a `Headline` is one figure the issue sets a goal for: its value and unit, the same-run
  baseline it is compared with (what the value would be without the thing measured, or
  the raw ceiling underneath it), the ratio value / baseline, the target (and, where the
  goal is a share of the baseline, a ratio target) and whether it passed;
- `latencies` are the latency summaries (`common.summarize_ms`) to plot as distributions.

`python -m bench all` runs every registered benchmark and writes, under bench/results/,
`report-<time>.json`, `report-<time>.md` and `report-<time>-*.png` (see `write_report`).
"""

import dataclasses
import datetime as dt
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

Better = Literal["higher", "lower"]
PERCENTILES = ("p50_ms", "p90_ms", "p99_ms", "max_ms")


@dataclasses.dataclass(frozen=True)
class Headline:
    """One headline figure of a benchmark, against its same-run baseline and its target."""

    name: str
    value: float | None
    unit: str
    better: Better = "higher"
    baseline: float | None = None
    baseline_name: str | None = None
    target: float | None = None
    ratio_target: float | None = None  # the goal as a share of the baseline (e.g. >= 0.8)

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.baseline:
            return None
        return round(self.value / self.baseline, 3)

    @property
    def passed(self) -> bool | None:
        """None when the figure has no goal (or was not measured: then False)."""
        if self.target is None and self.ratio_target is None:
            return None
        if self.value is None:
            return False
        checks = []
        if self.target is not None:
            checks.append(_meets(self.value, self.target, self.better))
        if self.ratio_target is not None:
            ratio = self.ratio
            checks.append(ratio is not None and _meets(ratio, self.ratio_target, self.better))
        return all(checks)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "unit": self.unit,
            "better": self.better,
            "baseline": self.baseline,
            "baseline_name": self.baseline_name,
            "ratio": self.ratio,
            "target": self.target,
            "ratio_target": self.ratio_target,
            "passed": self.passed,
        }


def _meets(value: float, goal: float, better: Better) -> bool:
    return value >= goal if better == "higher" else value <= goal


@dataclasses.dataclass(frozen=True)
class Summary:
    """What a benchmark's adapter returns: its headlines and its latency summaries."""

    headlines: Sequence[Headline]
    latencies: Mapping[str, Mapping[str, float | int]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Outcome:
    """One benchmark's run inside `bench all`."""

    benchmark: str
    command: str
    status: Literal["ok", "failed", "skipped"]
    seconds: float
    load_before: float
    load_after: float
    summary: Summary | None = None
    results_file: str | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "benchmark": self.benchmark,
            "command": self.command,
            "status": self.status,
            "seconds": round(self.seconds, 1),
            "load_average_1m_before": round(self.load_before, 2),
            "load_average_1m_after": round(self.load_after, 2),
            "results_file": self.results_file,
            "error": self.error,
            "headlines": [h.as_dict() for h in self.summary.headlines] if self.summary else [],
            "latencies": dict(self.summary.latencies) if self.summary else {},
        }


def headline_line(benchmark: str, h: Headline) -> str:
    """`rating: end to end 26,100 events/s = 0.84 x insert-only ceiling; target >= 25,000: met`"""
    text = f"{benchmark}: {h.name} {_num(h.value)}{_unit(h.unit)}"
    if h.baseline is not None:
        text += f" = {_num(h.ratio)} x {h.baseline_name or 'baseline'} ({_num(h.baseline)})"
    goals = []
    sign = ">=" if h.better == "higher" else "<="
    if h.target is not None:
        goals.append(f"{sign} {_num(h.target)}{_unit(h.unit)}")
    if h.ratio_target is not None:
        goals.append(f"ratio {sign} {_num(h.ratio_target)}")
    if goals:
        text += f"; target {' and '.join(goals)}: {'met' if h.passed else 'NOT met'}"
    return text


def _unit(unit: str) -> str:
    return f" {unit}" if unit else ""


def _num(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}".rstrip("0").rstrip(".") if value != int(value) else f"{value:.0f}"


def markdown(run: Mapping[str, Any], outcomes: Sequence[Outcome]) -> str:
    env = run["environment"]
    lines = [
        f"# Benchmark report {run['started_at']}",
        "",
        f"`{run['command']}` on {env['cpus']} CPUs, commit {env['git_sha']}"
        f"{' (dirty)' if env['git_dirty'] else ''}, Python {env['python']};"
        f" load average (1 min) {run['load_average_1m_before']:.2f} before,"
        f" {run['load_average_1m_after']:.2f} after; {run['seconds']:.0f} s in all.",
        "",
        "| benchmark | headline | value | baseline | ratio | target | passed | load before/after |",
        "|---|---|---:|---:|---:|---|---|---|",
    ]
    for o in outcomes:
        load = f"{o.load_before:.2f} / {o.load_after:.2f}"
        if o.summary is None or not o.summary.headlines:
            why = o.error or o.status
            lines.append(f"| {o.benchmark} | {o.status}: {_cell(why)} | | | | | | {load} |")
            continue
        for h in o.summary.headlines:
            baseline = f"{_num(h.baseline)} ({h.baseline_name})" if h.baseline is not None else "-"
            sign = ">=" if h.better == "higher" else "<="
            goals = []
            if h.target is not None:
                goals.append(f"{sign} {_num(h.target)}")
            if h.ratio_target is not None:
                goals.append(f"ratio {sign} {_num(h.ratio_target)}")
            passed = {True: "yes", False: "**no**", None: "-"}[h.passed]
            lines.append(
                f"| {o.benchmark} | {h.name} | {_num(h.value)}{_unit(h.unit)} | {baseline}"
                f" | {_num(h.ratio)} | {' and '.join(goals) or '-'} | {passed} | {load} |"
            )
    lines += ["", "Reproduce each figure:", ""]
    lines += [f"- {o.benchmark}: `{o.command}`" for o in outcomes]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "/").replace("\n", " ")[:160]


def write_report(
    run: Mapping[str, Any], outcomes: Sequence[Outcome], directory: Path
) -> dict[str, Path]:
    """report-<time>.json (the run and every outcome in the common schema), .md (the table)
    and the PNG plots; returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    base = directory / f"report-{stamp}"
    paths = {"json": base.with_suffix(".json"), "markdown": base.with_suffix(".md")}
    document = {**run, "benchmarks": [o.as_dict() for o in outcomes]}
    paths["json"].write_text(json.dumps(document, indent=2) + "\n")
    paths["markdown"].write_text(markdown(run, outcomes))
    paths.update(plot(outcomes, base))
    return paths


def plot(outcomes: Sequence[Outcome], base: Path) -> dict[str, Path]:
    """Two figures: every headline's ratio to its baseline (against its ratio target, when
    it has one), and every latency summary as a distribution (p50, p90, p99, max)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    paths: dict[str, Path] = {}
    rated = [
        (o.benchmark, h)
        for o in outcomes
        if o.summary
        for h in o.summary.headlines
        if h.ratio is not None
    ]
    if rated:
        fig, ax = plt.subplots(figsize=(9, 0.5 * len(rated) + 1.5))
        labels = [f"{b}: {h.name}\n(vs {h.baseline_name})" for b, h in rated]
        ratios = [h.ratio or 0.0 for _, h in rated]
        palette = {True: "tab:green", False: "tab:red", None: "tab:blue"}
        colors = [palette[h.passed] for _, h in rated]
        y = range(len(rated))
        ax.barh(y, ratios, color=colors)
        for i, (_, h) in enumerate(rated):
            if h.ratio_target is not None:
                ax.plot([h.ratio_target] * 2, [i - 0.4, i + 0.4], color="black", linewidth=2)
            ax.text(ratios[i], i, f" {ratios[i]:.2f}", va="center", fontsize=8)
        ax.axvline(1.0, color="grey", linestyle="--", linewidth=1)
        ax.set_yticks(list(y), labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("value / same-run baseline (black tick: ratio target; green met, red not)")
        ax.set_title("headlines against their baselines")
        fig.tight_layout()
        paths["ratios_png"] = base.with_name(base.name + "-ratios.png")
        fig.savefig(paths["ratios_png"], dpi=110)
        plt.close(fig)
    series = [
        (f"{o.benchmark}: {label}", summary)
        for o in outcomes
        if o.summary
        for label, summary in o.summary.latencies.items()
        if summary.get("count")
    ]
    if series:
        fig, ax = plt.subplots(figsize=(9, 5))
        x = range(len(PERCENTILES))
        for label, summary in series:
            values = [summary.get(p) for p in PERCENTILES]
            ax.plot(x, values, marker="o", label=f"{label} (n={summary['count']})")
        ax.set_xticks(list(x), [p.removesuffix("_ms") for p in PERCENTILES])
        ax.set_yscale("log")
        ax.set_ylabel("ms (log)")
        ax.set_title("latency distributions")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        paths["latency_png"] = base.with_name(base.name + "-latency.png")
        fig.savefig(paths["latency_png"], dpi=110)
        plt.close(fig)
    return paths
