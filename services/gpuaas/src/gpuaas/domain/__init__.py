"""gpuaas's pure rules: SKU catalog, MIG geometry, placement, quotas and state machines.
Nothing here does I/O; everything is fast to test."""
