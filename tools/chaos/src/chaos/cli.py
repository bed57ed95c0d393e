"""Command line: `chaos --seed N --cycles K [--tenants T] [--port-offset P] [--keep]`;
`--print-schedule` prints the schedule only (no stack). Exit status: 0 when the audit found
no violation, 1 when it found some, 2 when the run itself could not be carried out."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from chaos import run, stack
from chaos.schedule import schedule


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="chaos", description=__doc__)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--cycles", type=int, default=20)
    p.add_argument("--tenants", type=int, default=6)
    p.add_argument(
        "--port-offset",
        default="auto",
        help="added to every port of deploy/fleet.toml; default 'auto': the first of "
        "$GPUCLOUD_DEVSTACK_PORT_OFFSET + 1000, + 1100, ... at which no port answers",
    )
    p.add_argument("--home", type=Path, default=None, help="state folder (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the home (logs) afterwards")
    p.add_argument("--recovery-s", type=float, default=120.0, help="bounded wait to rest")
    p.add_argument(
        "--wait-ready",
        action="store_true",
        help="wait until a restarted process is ready before the next fault (slower)",
    )
    p.add_argument("--print-schedule", action="store_true", help="print the schedule and exit")
    return p


def _terminate(_signum, _frame) -> None:
    # SIGTERM takes the same way out as Ctrl-C: the finally blocks tear the stack down.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.print_schedule:
        for fault in schedule(args.seed, args.cycles):
            print(fault.describe())
        return 0
    signal.signal(signal.SIGTERM, _terminate)
    options = run.Options(
        seed=args.seed,
        cycles=args.cycles,
        tenants=args.tenants,
        port_offset=(
            stack.free_port_offset() if args.port_offset == "auto" else int(args.port_offset)
        ),
        home=args.home,
        keep=args.keep,
        recovery_s=args.recovery_s,
        wait_ready=args.wait_ready,
    )
    try:
        outcome = run.execute(options)
    except KeyboardInterrupt:
        print("chaos: interrupted; the stack was torn down", file=sys.stderr)
        return 2
    except Exception as exc:
        print(f"chaos: the run failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    print(run.summary(options, outcome), flush=True)
    return 1 if outcome.violations else 0
