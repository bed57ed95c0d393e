from platformkit.service import run

from billing.bootstrap import DEFINITION


def main() -> int:
    return run(DEFINITION)
