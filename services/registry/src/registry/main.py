from platformkit.service import run
from registry.bootstrap import DEFINITION


def main() -> int:
    return run(DEFINITION)
