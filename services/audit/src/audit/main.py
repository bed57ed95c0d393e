from platformkit.service import run

from audit.bootstrap import DEFINITION


def main() -> int:
    return run(DEFINITION)
