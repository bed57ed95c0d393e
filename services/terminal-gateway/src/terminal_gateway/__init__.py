"""terminal_gateway: Workload access: browser terminal sessions relayed to node-agent PTYs."""

SERVICE = "terminal-gateway"
__version__ = "0.1.0"
