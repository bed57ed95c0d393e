"""`python -m bench <name> [options]`: run one benchmark, print a table, save JSON results."""

import argparse
import sys

from bench import audit_tree, auth, cli, launch, outbox, portal, rating, registry, scheduler

BENCHMARKS = {
    "outbox": outbox,
    "auth": auth,
    "scheduler": scheduler,
    "launch": launch,
    "rating": rating,
    "registry": registry,
    "audit-tree": audit_tree,
    "cli": cli,
    "portal": portal,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    names = parser.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    for name, module in BENCHMARKS.items():
        sub = names.add_parser(name, help=module.SUMMARY, description=module.SUMMARY)
        module.add_arguments(sub)
    args = parser.parse_args(argv)
    return BENCHMARKS[args.benchmark].main(args)


if __name__ == "__main__":  # guarded: multiprocessing's spawn re-imports this module
    sys.exit(main())
