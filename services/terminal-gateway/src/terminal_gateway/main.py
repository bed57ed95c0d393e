from platformkit.service import run
from terminal_gateway.bootstrap import DEFINITION


def main() -> int:
    return run(DEFINITION)
