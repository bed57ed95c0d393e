"""node_agent: runs on each GPU node; discovers GPUs (NVML or a declared inventory),
registers with gpuaas, heartbeats, pulls desired allocations and reconciles local
workloads."""

__version__ = "0.1.0"
