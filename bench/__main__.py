"""`python -m bench <name> [options]`: run one benchmark, print a table, save JSON results.
`python -m bench all [--quick]`: run every benchmark, write one report (bench/suite.py).

A benchmark is a module registered in BENCHMARKS with SUMMARY, add_arguments(parser),
main(args) -> exit code (saving its results with `common.save_results`) and
headlines(results) -> report.Summary, its figures in the common schema (bench/report.py).
"""

import argparse
import sys

from bench import (
    audit,
    audit_tree,
    auth,
    cli,
    launch,
    outbox,
    portal,
    rating,
    registry,
    scheduler,
    suite,
    terminal,
)

BENCHMARKS = {
    "outbox": outbox,
    "auth": auth,
    "scheduler": scheduler,
    "launch": launch,
    "rating": rating,
    "registry": registry,
    "audit": audit,
    "audit-tree": audit_tree,
    "cli": cli,
    "portal": portal,
    "terminal": terminal,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    names = parser.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    for name, module in BENCHMARKS.items():
        sub = names.add_parser(name, help=module.SUMMARY, description=module.SUMMARY)
        module.add_arguments(sub)
    every = names.add_parser("all", help="every benchmark, one JSON + Markdown + PNG report")
    suite.add_arguments(every, list(BENCHMARKS))
    args = parser.parse_args(argv)
    if args.benchmark == "all":
        return suite.main(args, BENCHMARKS)
    return BENCHMARKS[args.benchmark].main(args)


if __name__ == "__main__":  # guarded: multiprocessing's spawn re-imports this module
    sys.exit(main())
