from platformkit.service import run

from iam.bootstrap import DEFINITION


def main() -> int:
    return run(DEFINITION)
