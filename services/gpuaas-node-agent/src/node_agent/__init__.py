"""node_agent: runs on each GPU node; discovers GPUs, reconciles desired allocations
from gpuaas, serves the PTY stream. A placeholder until the GPU runtime issue: it serves
health and identity only."""

__version__ = "0.1.0"
