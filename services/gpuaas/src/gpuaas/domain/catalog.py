"""gpuaas's view of the GPU catalog: the one in libs/contracts (`gpucloud_contracts.gpus`),
shared with billing and the node agent. Pure data."""

from gpucloud_contracts.gpus import (
    COMPUTE_SLICES,
    MEMORY_SLICES,
    SHAPES,
    SKUS,
    MigProfile,
    ProfileShape,
    Sku,
    sku,
)

__all__ = [
    "COMPUTE_SLICES",
    "MEMORY_SLICES",
    "SHAPES",
    "SKUS",
    "MigProfile",
    "ProfileShape",
    "Sku",
    "sku",
]
