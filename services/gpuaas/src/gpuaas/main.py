from platformkit.service import run

from gpuaas.bootstrap import DEFINITION


def main() -> int:
    return run(DEFINITION)
