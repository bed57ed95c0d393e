from appplatform.bootstrap import DEFINITION
from platformkit.service import run


def main() -> int:
    return run(DEFINITION)
