"""gpuaas: GPU runtime: SKUs, MIG profiles, providers, nodes, allocations, quotas, metering."""

SERVICE = "gpuaas"
__version__ = "0.1.0"
