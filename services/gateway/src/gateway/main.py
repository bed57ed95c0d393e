from platformkit.service import run

from gateway.bootstrap import DEFINITION


def main() -> int:
    return run(DEFINITION)
