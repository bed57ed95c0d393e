"""`python -m bench all [--quick]`: every registered benchmark, one report.

Each benchmark runs in a process of its own (`python -m bench <name> [--quick]`: its own GC
tuning, event loop and child processes, nothing left over for the next one), one after the
other, with the whole stack up and idle (`devstack up`, idempotent: started if it was not).
Its detailed JSON goes where `GPUCLOUD_BENCH_RESULT_FILE` says (as well as under
bench/results/); its module's `headlines()` maps it onto the common schema
(bench/report.py). A benchmark that fails is reported as failed and the others still run.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from bench.common import RESULTS_DIR, environment
from bench.report import Outcome, headline_line, write_report

RESULT_FILE_ENV = "GPUCLOUD_BENCH_RESULT_FILE"


def add_arguments(parser: argparse.ArgumentParser, names: list[str]) -> None:
    parser.add_argument("--quick", action="store_true", help="every benchmark's smoke size")
    parser.add_argument("--only", default="", help=f"comma-separated subset of {', '.join(names)}")
    parser.add_argument("--skip", default="", help="comma-separated benchmarks to leave out")
    parser.add_argument(
        "--no-up", action="store_true", help="do not start the stack (benches that need it fail)"
    )
    parser.add_argument(
        "--timeout", type=float, default=None, help="seconds per benchmark (1200; 150 quick)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="report directory")


def main(args: argparse.Namespace, benchmarks: dict[str, ModuleType]) -> int:
    chosen = _chosen(args, list(benchmarks))
    started, load_before = time.monotonic(), os.getloadavg()[0]
    command = "just bench all" + (" --quick" if args.quick else "")
    run: dict[str, Any] = {
        "command": command,
        "quick": args.quick,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "environment": environment(),
        "load_average_1m_before": load_before,
    }
    if not args.no_up:
        _stack_up()
    timeout = args.timeout or (150.0 if args.quick else 1200.0)
    outcomes = [_run_one(name, benchmarks[name], args.quick, timeout) for name in chosen]
    run["seconds"] = round(time.monotonic() - started, 1)
    run["load_average_1m_after"] = os.getloadavg()[0]
    paths = write_report(run, outcomes, args.out)
    print("\nheadlines (value, ratio to the same-run baseline, target):")
    for o in outcomes:
        if o.summary is None:
            print(f"{o.benchmark}: {o.status}: {o.error}")
            continue
        for h in o.summary.headlines:
            print(f"  {headline_line(o.benchmark, h)}")
    print(
        f"\nload average {load_before:.2f} before, {run['load_average_1m_after']:.2f} after;"
        f" {run['seconds']:.0f} s"
    )
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0 if all(o.status == "ok" for o in outcomes) else 1


def _chosen(args: argparse.Namespace, names: list[str]) -> list[str]:
    only = [n.strip() for n in args.only.split(",") if n.strip()]
    skip = {n.strip() for n in args.skip.split(",") if n.strip()}
    unknown = (set(only) | skip) - set(names)
    if unknown:
        raise SystemExit(f"unknown benchmarks: {', '.join(sorted(unknown))}")
    return [n for n in (only or names) if n not in skip]


def _stack_up() -> None:
    from devstack import stack

    print("bench all: devstack up (the whole stack, idle, as the benchmarks expect) ...")
    stack.up(log=lambda m: print(f"  devstack: {m}", flush=True))


def _run_one(name: str, module: ModuleType, quick: bool, timeout: float) -> Outcome:
    argv = [name, *(["--quick"] if quick else [])]
    command = "just bench " + " ".join(argv)
    with tempfile.TemporaryDirectory(prefix="bench-") as scratch:
        result_file = Path(scratch) / "result.json"
        env = {**os.environ, RESULT_FILE_ENV: str(result_file)}
        print(f"\n=== {command}", flush=True)
        load_before, started = os.getloadavg()[0], time.monotonic()
        try:
            proc = subprocess.run(  # our own interpreter and module
                [sys.executable, "-m", "bench", *argv], env=env, timeout=timeout, check=False
            )
            rc, error = proc.returncode, None if proc.returncode == 0 else f"exit {proc.returncode}"
        except subprocess.TimeoutExpired:
            rc, error = -1, f"timed out after {timeout:.0f} s"
        outcome = Outcome(
            benchmark=name,
            command=command,
            status="ok" if rc == 0 else "failed",
            seconds=time.monotonic() - started,
            load_before=load_before,
            load_after=os.getloadavg()[0],
            error=error,
        )
        if rc != 0 or not result_file.exists():
            outcome.status = "failed"
            outcome.error = error or "no results written"
            return outcome
        results = json.loads(result_file.read_text())
    outcome.results_file = results.get("_saved_as")
    try:
        outcome.summary = module.headlines(results)
    except Exception as exc:  # a broken adapter fails its benchmark, not the report
        outcome.status, outcome.error = "failed", f"headlines(): {exc!r}"
    return outcome
