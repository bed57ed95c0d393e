"""terminal_gateway: Workload access: browser terminal sessions relayed to node-agent PTYs."""

__version__ = "0.1.0"
