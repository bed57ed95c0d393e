from platformkit.service import run

from node_agent.bootstrap import DEFINITION


def main() -> int:
    return run(DEFINITION)
