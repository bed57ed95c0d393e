from platformkit.service import run

from appplatform.bootstrap import DEFINITION


def main() -> int:
    return run(DEFINITION)
